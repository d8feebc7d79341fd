package signature_test

import (
	"fmt"

	"github.com/nixcache/nixcache/signature"
)

func Example() {
	// A key pair as written by nix-store --generate-binary-cache-key.
	sk, err := signature.ParseSecretKey("test1:jbX9NxZp8WB/coK8k7yLf0gNYmBbIbCrOFwgJgI7OV+0sASf4R5oFQlioSlN3bJ56uvshzr7S9Z75pcv+9hSkQ==")
	if err != nil {
		panic(err)
	}
	fmt.Println(sk) // never prints the secret
	pk := sk.PublicKey()
	fmt.Println(pk)

	// Sign a narinfo fingerprint (see package narinfo) and verify it.
	fp := "1;/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432;sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6;464152;/nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27"
	sig := sk.Sign(fp)
	fmt.Println(signature.Verify(fp, []signature.Signature{sig}, []signature.PublicKey{pk}))

	// A signature by a key that is not trusted.
	nixos, _ := signature.ParsePublicKey("cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
	fmt.Println(signature.Verify(fp, []signature.Signature{sig}, []signature.PublicKey{nixos}))
	// Output:
	// test1:<redacted>
	// test1:tLAEn+EeaBUJYqEpTd2yeerr7Ic6+0vWe+aXL/vYUpE=
	// <nil>
	// signature: no signature by a trusted key: signed by "test1", trusted keys are "cache.nixos.org-1"
}
