package narinfo

import (
	"errors"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/signature"
	"github.com/nixcache/nixcache/storepath"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// netTools is cache.nixos.org's narinfo for net-tools (a public vector),
// in the form Nix writes it.
const netTools = `StorePath: /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432
URL: nar/1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d.nar.xz
Compression: xz
FileHash: sha256:1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d
FileSize: 114980
NarHash: sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6
NarSize: 464152
References: 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27
Deriver: 10dx1q4ivjb115y3h90mipaaz533nr0d-net-tools-1.60_p20170221182432.drv
Sig: cache.nixos.org-1:sn5s/RrqEI+YG6/PjwdbPjcAC7rcta7sJU4mFOawGvJBLsWkyLtBrT2EuFt/LJjWkTZ+ZWOI9NTtjo/woMdvAg==
Sig: hydra.other.net-1:JXQ3Z/PXf0EZSFkFioa4FbyYpbbTbHlFBtZf4VqU0tuMTWzhMD7p9Q7acJjLn3jofOtilAAwRILKIfVuyrbjAA==
`

const netToolsFP = "1;/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432;sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6;464152;/nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27"

const nixosPublic = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

// curl is the curl-7.82.0 vector signed with the test1 key
// (zombiezen/go-nix, nix-community/go-nix).
const curl = `StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin
URL: nar/05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56.nar.xz
Compression: xz
FileHash: sha256:05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56
FileSize: 68852
NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0
NarSize: 196040
References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n
Deriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv
Sig: cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==
Sig: test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ==
`

const test1Secret = "test1:jbX9NxZp8WB/coK8k7yLf0gNYmBbIbCrOFwgJgI7OV+0sASf4R5oFQlioSlN3bJ56uvshzr7S9Z75pcv+9hSkQ=="

func TestVectors(t *testing.T) {
	ni, err := Unmarshal([]byte(netTools))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ni.MarshalText(); string(got) != netTools {
		t.Errorf("round trip:\n%s", got)
	}
	fp, err := ni.Fingerprint()
	if err != nil || fp != netToolsFP {
		t.Errorf("Fingerprint = %q, %v", fp, err)
	}
	pk, _ := signature.ParsePublicKey(nixosPublic)
	if err := ni.Verify([]signature.PublicKey{pk}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if ni.Deriver != "/nix/store/10dx1q4ivjb115y3h90mipaaz533nr0d-net-tools-1.60_p20170221182432.drv" {
		t.Errorf("Deriver = %q", ni.Deriver)
	}

	c, err := Unmarshal([]byte(curl))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.MarshalText(); string(got) != curl {
		t.Errorf("round trip:\n%s", got)
	}
	sk, _ := signature.ParseSecretKey(test1Secret)
	want := c.Sigs[1]
	c.Sigs = c.Sigs[:1]
	if err := c.Sign(sk); err != nil {
		t.Fatal(err)
	}
	if c.Sigs[1] != want {
		t.Errorf("Sign = %v, want %v", c.Sigs[1], want)
	}
	if err := c.Sign(sk); err != nil || len(c.Sigs) != 2 {
		t.Errorf("re-Sign kept %d sigs, %v", len(c.Sigs), err)
	}
	if err := c.Verify([]signature.PublicKey{sk.PublicKey(), pk}); err != nil {
		t.Error(err)
	}
}

// replace returns netTools with one line (by key prefix) replaced.
func replace(old, new string) string {
	if !strings.Contains(netTools, old) {
		panic(old)
	}
	return strings.Replace(netTools, old, new, 1)
}

func TestParseRules(t *testing.T) {
	nh := "sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6"
	h, _ := nixhash.Parse(nh)
	tests := []struct {
		name  string
		in    string
		err   error  // nil: must parse
		msg   string // substring of the error, including the line number
		check func(*NarInfo) bool
	}{
		{"nix form", netTools, nil, "", nil},
		{"unknown key ignored", replace("URL:", "Provenance: {\"x\":1}\nURL:"), nil, "", nil},
		{"unknown key twice", replace("URL:", "X: 1\nX: 2\nURL:"), nil, "", nil},
		{"unknown-deriver", replace("Deriver: 10dx1q4ivjb115y3h90mipaaz533nr0d-net-tools-1.60_p20170221182432.drv", "Deriver: unknown-deriver"), nil, "",
			func(n *NarInfo) bool { return n.Deriver == "" }},
		{"no Compression = bzip2", replace("Compression: xz\n", ""), nil, "", func(n *NarInfo) bool { return n.Compression == "bzip2" }},
		{"empty Compression = bzip2", replace("Compression: xz", "Compression: "), nil, "", func(n *NarInfo) bool { return n.Compression == "bzip2" }},
		{"base16 NarHash", replace(nh, "sha256:"+h.RawBase16()), nil, "", func(n *NarInfo) bool { return n.NarHash == h }},
		{"base64 NarHash", replace(nh, "sha256:"+h.RawBase64()), nil, "", func(n *NarInfo) bool { return n.NarHash == h }},
		{"SRI NarHash", replace(nh, h.SRI()), nil, "", func(n *NarInfo) bool { return n.NarHash == h }},
		{"base16 FileHash", replace("FileHash: sha256:1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d", "FileHash: sha256:ed34dc8f36047d686dc296b7b2e3f4278488be5b6a94a6f7a3dc929fe0e52481"), nil, "", nil},
		{"no FileHash/FileSize", replace("FileHash: sha256:1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d\nFileSize: 114980\n", ""), nil, "", func(n *NarInfo) bool { return n.FileHash.IsZero() && n.FileSize == 0 }},
		{"empty References", replace("References: 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27", "References: "), nil, "", func(n *NarInfo) bool { return len(n.References) == 0 }},
		{"References double space", replace("References: 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27", "References:  7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27 "), nil, "", func(n *NarInfo) bool { return len(n.References) == 1 }},
		{"no References line", replace("References: 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27\n", ""), nil, "", nil},
		{"System kept", replace("URL:", "System: x86_64-linux\nURL:"), nil, "", func(n *NarInfo) bool { return n.System == "x86_64-linux" }},
		{"CA", netTools + "CA: fixed:r:" + nh + "\n", nil, "", func(n *NarInfo) bool { return n.CA == "fixed:r:"+nh }},
		{"other store dir", strings.ReplaceAll(netTools, "/nix/store/", "/gnu/store/"), nil, "",
			func(n *NarInfo) bool { return n.References[0].Dir() == "/gnu/store" }},
		{"store dir inside /nix/store", strings.ReplaceAll(netTools, "/nix/store/", "/nix/store/sub/"), nil, "",
			func(n *NarInfo) bool { return inStoreDir(n, "/nix/store/sub") }},
		{"store dir /nix/store2", strings.ReplaceAll(netTools, "/nix/store/", "/nix/store2/"), nil, "",
			func(n *NarInfo) bool { return inStoreDir(n, "/nix/store2") }},
		{"store dir /nix", strings.ReplaceAll(netTools, "/nix/store/", "/nix/"), nil, "",
			func(n *NarInfo) bool { return inStoreDir(n, "/nix") }},

		{"empty", "", ErrMissing, "narinfo: missing required field: StorePath", nil},
		{"missing StorePath", replace("StorePath: /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432\n", ""), ErrMissing, "StorePath", nil},
		{"missing URL", replace("URL: nar/1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d.nar.xz\n", ""), ErrMissing, "URL", nil},
		{"empty URL", replace("URL: nar/1094wph9z4nwlgvsd53abfz8i117ykiv5dwnq9nnhz846s7xqd7d.nar.xz", "URL: "), ErrMissing, "line 2: URL", nil},
		{"missing NarHash", replace("NarHash: "+nh+"\n", ""), ErrMissing, "NarHash", nil},
		{"missing NarSize", replace("NarSize: 464152\n", ""), ErrMissing, "NarSize", nil},
		{"NarSize 0", replace("NarSize: 464152", "NarSize: 0"), ErrMissing, "line 7: NarSize", nil},
		{"NarSize junk", replace("NarSize: 464152", "NarSize: 12x"), ErrSyntax, "line 7: NarSize", nil},
		{"NarSize negative", replace("NarSize: 464152", "NarSize: -1"), ErrSyntax, "line 7", nil},
		{"FileSize junk", replace("FileSize: 114980", "FileSize: "), ErrSyntax, "line 5: FileSize", nil},
		{"bad NarHash", replace(nh, "sha256:abc"), nixhash.ErrInvalid, "line 6: NarHash", nil},
		{"NarHash without algo", replace(nh, "0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6"), nixhash.ErrInvalid, "line 6", nil},
		{"bad StorePath", replace("StorePath: /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la", "StorePath: /nix/store/00bgd045z0d4icpbc2yyz4gx48ak44l_"), storepath.ErrInvalid, "line 1: StorePath", nil},
		{"bad reference", replace("7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27", "7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc!"), storepath.ErrInvalid, "line 8: References", nil},
		{"absolute reference", replace("References: 7gx4", "References: /nix/store/7gx4"), storepath.ErrInvalid, "line 8", nil},
		{"bad deriver", replace("Deriver: 10dx", "Deriver: 10d"), storepath.ErrInvalid, "line 9: Deriver", nil},
		{"bad Sig", replace("Sig: cache.nixos.org-1:sn5s", "Sig: cache.nixos.org-1:sn5*"), signature.ErrMalformed, "line 10: Sig", nil},
		{"Sig without data", replace("Sig: cache.nixos.org-1:sn5s/RrqEI+YG6/PjwdbPjcAC7rcta7sJU4mFOawGvJBLsWkyLtBrT2EuFt/LJjWkTZ+ZWOI9NTtjo/woMdvAg==", "Sig: cache.nixos.org-1:"), signature.ErrMalformed, "line 10: Sig", nil},
		{"Sig without name", replace("Sig: cache.nixos.org-1:", "Sig: :"), signature.ErrMalformed, "line 10: Sig", nil},
		{"short Sig kept", replace("Sig: hydra.other.net-1:JXQ3Z/PXf0EZSFkFioa4FbyYpbbTbHlFBtZf4VqU0tuMTWzhMD7p9Q7acJjLn3jofOtilAAwRILKIfVuyrbjAA==", "Sig: hydra.other.net-1:JXQ3Z/PXf0EZSFkF"), nil, "",
			func(n *NarInfo) bool { return len(n.Sigs) == 2 && len(n.Sigs[1].Bytes()) == 12 }},
		{"unpadded SRI NarHash", replace(nh, strings.TrimRight(h.SRI(), "=")), nil, "", func(n *NarInfo) bool { return n.NarHash == h }},
		{"CR inside a line", replace("URL: nar/", "URL: nar/\r"), ErrSyntax, "line 2: syntax error: carriage return", nil},
		{"newline in store dir", strings.ReplaceAll(netTools, "/nix/store/", "/nix/store\nSig: x:eA==\n/"), storepath.ErrInvalid, "line 1: StorePath", nil},
		{"semicolon in store dir", strings.ReplaceAll(netTools, "/nix/store/", "/nix;store/"), storepath.ErrInvalid, "line 1: StorePath", nil},
		{"bad CA", netTools + "CA: sha256:abc\n", ErrSyntax, "line 12: CA", nil},
		{"duplicate URL", replace("Compression:", "URL: x\nCompression:"), ErrDuplicate, "line 3: URL: duplicate key", nil},
		{"duplicate References", replace("Deriver:", "References: \nDeriver:"), ErrDuplicate, "line 9: References", nil},
		{"CRLF", strings.ReplaceAll(netTools, "\n", "\r\n"), ErrSyntax, "line 1: syntax error: CRLF", nil},
		{"missing final newline", strings.TrimSuffix(netTools, "\n"), ErrSyntax, "line 11: syntax error: missing final newline", nil},
		{"trailing blank line", netTools + "\n", ErrSyntax, "line 12: syntax error: blank line", nil},
		{"blank line inside", replace("NarSize:", "\nNarSize:"), ErrSyntax, "line 7: syntax error: blank line", nil},
		{"no colon", replace("NarSize: 464152", "NarSize 464152"), ErrSyntax, "line 7", nil},
		{"no space after colon", replace("NarSize: 464152", "NarSize:464152"), ErrSyntax, "line 7: NarSize", nil},
		{"References: without space", replace("References: 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27", "References:"), ErrSyntax, "line 8: References", nil},
		{"empty key", replace("NarSize: 464152", ": 464152"), ErrSyntax, "line 7", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ni, err := Unmarshal([]byte(tc.in))
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				if tc.check != nil && !tc.check(ni) {
					t.Errorf("check failed: %+v", ni)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("Unmarshal = %v, want %v", err, tc.err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not a *ParseError", err)
			}
		})
	}
}

// inStoreDir reports whether n's StorePath, References and Deriver are
// the paths of netTools in store directory dir.
func inStoreDir(n *NarInfo, dir string) bool {
	return string(n.StorePath) == dir+"/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432" &&
		len(n.References) == 1 && string(n.References[0]) == dir+"/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27" &&
		string(n.Deriver) == dir+"/10dx1q4ivjb115y3h90mipaaz533nr0d-net-tools-1.60_p20170221182432.drv"
}

func TestMarshalRules(t *testing.T) {
	base := func() *NarInfo {
		ni, err := Unmarshal([]byte(netTools))
		if err != nil {
			t.Fatal(err)
		}
		return ni
	}
	md5 := nixhash.Sum(nixhash.MD5, nil)
	tests := []struct {
		name   string
		modify func(*NarInfo)
		want   string // substring of output, or of the error if err
		err    bool
	}{
		{"no refs trailing space", func(n *NarInfo) { n.References = nil }, "NarSize: 464152\nReferences: \nDeriver:", false},
		{"refs sorted, deduplicated", func(n *NarInfo) {
			n.References = []storepath.Path{"/nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27", n.StorePath, n.References[0]}
		}, "References: 00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432 7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27\n", false},
		{"no deriver", func(n *NarInfo) { n.Deriver = "" }, "glibc-2.27\nSig: ", false},
		{"system", func(n *NarInfo) { n.System = "x86_64-linux" }, ".drv\nSystem: x86_64-linux\nSig: ", false},
		{"sigs sorted, deduplicated", func(n *NarInfo) { n.Sigs = append([]signature.Signature{n.Sigs[1]}, n.Sigs...) },
			"\nSig: cache.nixos.org-1:sn5s/RrqEI+YG6/PjwdbPjcAC7rcta7sJU4mFOawGvJBLsWkyLtBrT2EuFt/LJjWkTZ+ZWOI9NTtjo/woMdvAg==\nSig: hydra.other.net-1:JXQ3Z/PXf0EZSFkFioa4FbyYpbbTbHlFBtZf4VqU0tuMTWzhMD7p9Q7acJjLn3jofOtilAAwRILKIfVuyrbjAA==\n", false},
		{"CA last", func(n *NarInfo) { n.CA = "fixed:r:sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6" }, "AA==\nCA: fixed:r:sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6\n", false},
		{"no FileHash", func(n *NarInfo) { n.FileHash = nixhash.Hash{}; n.FileSize = 0 }, "Compression: xz\nNarHash: ", false},
		{"empty Compression", func(n *NarInfo) { n.Compression = "" }, "Compression is empty", true},
		{"empty URL", func(n *NarInfo) { n.URL = "" }, "URL is empty", true},
		{"NarSize 0", func(n *NarInfo) { n.NarSize = 0 }, "NarSize is 0", true},
		{"md5 NarHash", func(n *NarInfo) { n.NarHash = md5 }, "NarHash is \"md5\"", true},
		{"md5 FileHash", func(n *NarInfo) { n.FileHash = md5 }, "FileHash is md5", true},
		{"ref outside store", func(n *NarInfo) {
			n.References = []storepath.Path{"/gnu/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27"}
		}, "not a valid store path in /nix/store", true},
		{"newline in URL", func(n *NarInfo) { n.URL = "a\nb" }, "URL \"a\\nb\" contains a line break", true},
		{"CR in Compression", func(n *NarInfo) { n.Compression = "xz\r" }, "Compression", true},
		{"newline in System", func(n *NarInfo) { n.System = "x\nSig: y" }, "System", true},
		{"newline in CA", func(n *NarInfo) { n.CA = "text:sha256:x\nSig: y" }, "CA", true},
		{"newline in a Sig name", func(n *NarInfo) {
			// A name holds any byte but ':', as in Nix; it cannot be written.
			s, _ := signature.NewSignature("x\nforged line", n.Sigs[0].Bytes())
			n.Sigs = append(n.Sigs, s)
		}, "Sig key name", true},
		{"newline in store dir", func(n *NarInfo) {
			n.StorePath = storepath.Path("/nix/store\nSig: k:AAAA\n/" + n.StorePath.Base())
		}, "StorePath", true},
		{"semicolon in store dir", func(n *NarInfo) {
			n.StorePath = storepath.Path("/nix;store/" + n.StorePath.Base())
			n.References, n.Deriver = nil, ""
		}, "StorePath", true},
		{"no StorePath", func(n *NarInfo) { n.StorePath = "" }, "StorePath", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ni := base()
			tc.modify(ni)
			out, err := ni.MarshalText()
			if tc.err {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("MarshalText error = %v, want ErrInvalid with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			if _, err := Unmarshal(out); err != nil {
				t.Errorf("output does not parse: %v", err)
			}
		})
	}
}

func TestFingerprintRules(t *testing.T) {
	p := storepath.Path("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432")
	glibc := storepath.Path("/nix/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27")
	h, _ := nixhash.Parse("sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6")
	tests := []struct {
		name string
		refs []storepath.Path
		size uint64
		hash nixhash.Hash
		want string
		err  bool
	}{
		{"vector", []storepath.Path{glibc}, 464152, h, netToolsFP, false},
		{"unsorted with duplicates", []storepath.Path{glibc, p, glibc}, 464152, h,
			"1;" + string(p) + ";sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6;464152;" + string(p) + "," + string(glibc), false},
		{"no refs", nil, 1, h, "1;" + string(p) + ";sha256:0lxjvvpr59c2mdram7ympy5ay741f180kv3349hvfc3f8nrmbqf6;1;", false},
		{"NarSize 0", nil, 0, h, "NarSize is 0", true},
		{"sha1", nil, 1, nixhash.Sum(nixhash.SHA1, nil), "want sha256", true},
		{"zero hash", nil, 1, nixhash.Hash{}, "want sha256", true},
		{"ref outside", []storepath.Path{"/gnu/store/7gx4kiv5m0i7d7qkixq2cwzbr10lvxwc-glibc-2.27"}, 1, h, "not a valid store path", true},
	}
	for _, tc := range tests {
		got, err := Fingerprint(p, tc.hash, tc.size, tc.refs)
		if tc.err {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want ErrInvalid with %q", tc.name, err, tc.want)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: Fingerprint = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestVerifyErrors(t *testing.T) {
	ni, _ := Unmarshal([]byte(netTools))
	sk, _ := signature.ParseSecretKey(test1Secret)
	if err := ni.Verify([]signature.PublicKey{sk.PublicKey()}); !errors.Is(err, signature.ErrUntrusted) {
		t.Errorf("Verify(untrusted) = %v", err)
	}
	pk, _ := signature.ParsePublicKey(nixosPublic)
	ni.NarSize++
	if err := ni.Verify([]signature.PublicKey{pk}); !errors.Is(err, signature.ErrInvalidSignature) || !strings.Contains(err.Error(), string(ni.StorePath)) {
		t.Errorf("Verify(tampered) = %v", err)
	}
}

// TestMalformedSigOfOtherKey: a narinfo carrying a malformed signature by
// a key we do not trust reads, writes back byte for byte and verifies
// through its good signature, as in Nix, whose Signature::parse checks no
// length (the length matters only to a trusted key's check).
func TestMalformedSigOfOtherKey(t *testing.T) {
	text := strings.Replace(curl, "Sig: test1:", "Sig: other-cache-1:o1DTsjCz0PofLJ216P2RBuSulI8BAb6zHxWE4N+tzlcELk5Uk/GO2SCxWTRN5wJutLZZ+cHTMdWqOHF8\nSig: test1:", 1)
	ni, err := Unmarshal([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ni.MarshalText(); err != nil || string(out) != text {
		t.Errorf("MarshalText = %v\n%s\nwant\n%s", err, out, text)
	}
	sk, _ := signature.ParseSecretKey(test1Secret)
	if err := ni.Verify([]signature.PublicKey{sk.PublicKey()}); err != nil {
		t.Errorf("Verify through the good signature: %v", err)
	}
	// Trusting the malformed signature's key name instead: invalid, not a
	// parse error.
	other, _ := signature.NewPublicKey("other-cache-1", sk.PublicKey().Key())
	if err := ni.Verify([]signature.PublicKey{other}); !errors.Is(err, signature.ErrInvalidSignature) {
		t.Errorf("Verify by the malformed signature's key = %v, want ErrInvalidSignature", err)
	}
}

func TestCompressionExtension(t *testing.T) {
	for c, want := range map[string]string{"xz": ".xz", "bzip2": ".bz2", "zstd": ".zst", "lzip": ".lzip", "lz4": ".lz4", "br": ".br", "none": "", "gzip": "", "": ""} {
		if got := CompressionExtension(c); got != want {
			t.Errorf("CompressionExtension(%q) = %q, want %q", c, got, want)
		}
	}
}

func TestCacheInfo(t *testing.T) {
	tests := []struct {
		in   string
		want CacheInfo
		out  string
		msg  string
	}{
		{"StoreDir: /nix/store\n", CacheInfo{StoreDir: "/nix/store"}, "StoreDir: /nix/store\n", ""},
		{"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", CacheInfo{"/nix/store", true, 40}, "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n", ""},
		{"StoreDir: /nix/store\r\nWantMassQuery: 0\r\nPriority:  -5 \r\njunk\r\nX: y", CacheInfo{"/nix/store", false, -5}, "StoreDir: /nix/store\nPriority: -5\n", ""},
		{"", CacheInfo{}, "", ""},
		{"StoreDir: /nix/store\nPriority: high\n", CacheInfo{}, "", "nix-cache-info: line 2: Priority: syntax error"},
		{"StoreDir: nix/store\n", CacheInfo{}, "", "line 1: StoreDir"},
		{"StoreDir: /nix;store\n", CacheInfo{}, "", "line 1: StoreDir"},
		{"StoreDir: /nix/store/\n", CacheInfo{}, "", "line 1: StoreDir"},
	}
	for _, tc := range tests {
		ci, err := ParseCacheInfo([]byte(tc.in))
		if tc.msg != "" {
			if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("ParseCacheInfo(%q) = %v, want %q", tc.in, err, tc.msg)
			}
			continue
		}
		if err != nil || *ci != tc.want {
			t.Errorf("ParseCacheInfo(%q) = %+v, %v", tc.in, ci, err)
			continue
		}
		if out, _ := ci.MarshalText(); string(out) != tc.out {
			t.Errorf("MarshalText = %q, want %q", out, tc.out)
		}
	}
}
