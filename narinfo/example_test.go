package narinfo_test

import (
	"fmt"
	"strings"

	"github.com/nixcache/nixcache/narinfo"
	"github.com/nixcache/nixcache/signature"
)

func Example() {
	text := `StorePath: /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432
URL: nar/1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d.nar.xz
Compression: xz
FileHash: sha256:1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d
FileSize: 114980
NarHash: sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6
NarSize: 464152
References: 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27
Deriver: 10dx1q4ivjb115y3h90mipaaz533nr0d-net-tools-1.60_p20170221182432.drv
Sig: cache.nixos.org-1:sn5s/RrqEI+YG6/PjwdbPjcAC7rcta7sJU4mFOawGvJBLsWkyLtBrT2EuFt/LJjWkTZ+ZWOI9NTtjo/woMdvAg==
`
	ni, err := narinfo.Parse(strings.NewReader(text))
	if err != nil {
		panic(err)
	}
	fmt.Println(ni.Key(), ni.References[0])

	// Check the signature as Nix does before substituting.
	nixos, _ := signature.ParsePublicKey("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
	fmt.Println(ni.Verify([]signature.PublicKey{nixos}))

	// Re-sign with our own key and write it back, byte-exact as Nix would.
	sk, _ := signature.ParseSecretKey("test1:jbX9NxZp8WB/coK8k7yLf0gNYmBbIbCrOFwgJgI7OV+0sASf4R5oFQlioSlN3bJ56uvshzr7S9Z75pcv+9hSkQ==")
	if err := ni.Sign(sk); err != nil {
		panic(err)
	}
	out, _ := ni.MarshalText()
	fmt.Println(strings.Count(string(out), "\nSig: "), ni.Verify([]signature.PublicKey{sk.PublicKey()}))

	// A broken narinfo reports the line.
	_, err = narinfo.Unmarshal([]byte("StorePath: /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-x\r\n"))
	fmt.Println(err)
	// Output:
	// 00bgd045z0d4icpbc2yyz4gx48ak44la.narinfo /nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27
	// <nil>
	// 2 <nil>
	// narinfo: line 1: syntax error: CRLF line ending
}

func ExampleCacheInfo() {
	ci, err := narinfo.ParseCacheInfo([]byte("StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%+v\n", *ci)
	out, _ := (&narinfo.CacheInfo{StoreDir: "/nix/store"}).MarshalText()
	fmt.Printf("%q\n", out)
	// Output:
	// {StoreDir:/nix/store WantMassQuery:true Priority:40}
	// "StoreDir: /nix/store\n"
}
