package narinfo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath/nixhash"
)

// TestNixJudgesParseRules feeds variants of a narinfo written by Nix to
// real Nix (nix path-info --store file://...) and to Unmarshal, and checks
// that both accept or both refuse. Cases where we are deliberately stricter
// than Nix are marked.
func TestNixJudgesParseRules(t *testing.T) {
	testenv.RequireNix(t)
	_, closure := buildClosure(t)
	top := closure[len(closure)-1]
	src := filepath.Join(t.TempDir(), "cache")
	testenv.Nix(t, "nix", "copy", "--to", "file://"+src+"?compression=none", string(top))
	raw := string(readNarinfos(t, src, closure)[top])
	ni, err := Unmarshal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	nh := ni.NarHash.String()
	lines := strings.SplitAfter(raw, "\n")
	drop := func(prefix string) string {
		var b strings.Builder
		for _, l := range lines {
			if !strings.HasPrefix(l, prefix) {
				b.WriteString(l)
			}
		}
		return b.String()
	}
	sub := func(old, new string) string {
		if !strings.Contains(raw, old) {
			t.Fatalf("%q not in narinfo", old)
		}
		return strings.Replace(raw, old, new, 1)
	}
	sha, _ := nixhash.Parse(nh)
	tests := []struct {
		name     string
		text     string
		stricter bool // we refuse, Nix accepts
	}{
		{"as written", raw, false},
		{"unknown key", sub("URL:", "Provenance: {}\nURL:"), false},
		{"unknown-deriver", sub("Deriver: "+ni.Deriver.Base(), "Deriver: unknown-deriver"), false},
		{"base16 NarHash", sub(nh, sha.Base16()), false},
		{"SRI NarHash", sub(nh, sha.SRI()), false},
		{"base64 NarHash", sub(nh, sha.Base64()), false},
		{"no FileHash", drop("FileHash:"), false},
		{"no Deriver", drop("Deriver:"), false},
		{"no Compression", drop("Compression:"), false},
		{"System line", sub("References:", "System: x86_64-linux\nReferences:"), false},
		{"CA line", raw + "CA: fixed:r:" + nh + "\n", false},
		{"bad CA", raw + "CA: nonsense\n", false},
		{"no References", drop("References:"), false},
		{"missing StorePath", drop("StorePath:"), false},
		{"missing URL", drop("URL:"), false},
		{"missing NarHash", drop("NarHash:"), false},
		{"missing NarSize", drop("NarSize:"), false},
		{"NarSize 0", sub("NarSize: ", "NarSize: 0"), false},
		{"NarSize junk", sub("NarSize: ", "NarSize: x"), false},
		{"bad NarHash", sub(nh, "sha256:zzz"), false},
		{"CRLF", strings.ReplaceAll(raw, "\n", "\r\n"), false},
		{"missing final newline", strings.TrimSuffix(raw, "\n"), false},
		{"trailing blank line", raw + "\n", false},
		{"bad reference", sub("References: ", "References: !"), false},
		{"unpadded SRI NarHash", sub(nh, strings.TrimRight(sha.SRI(), "=")), false},
		{"SRI NarHash with text after =", sub(nh, sha.SRI()+"= trailer"), false},
		{"short Sig by another key", raw + "Sig: other-1:" + strings.Repeat("AbCd", 20) + "\n", false},
		{"Sig with a space in its name", raw + "Sig: a b:" + strings.Repeat("AbCd", 20) + "\n", false},
		{"duplicate URL", sub("Compression:", "URL: x\nCompression:"), true},
		// Nix 2.8 keeps Sig values as strings; newer Nix's Signature::parse
		// refuses empty data, as we do.
		{"Sig without data", raw + "Sig: other-1:\n", true},
		{"CR inside a line", sub("Compression:", "System: x\ry\nCompression:"), true},
		{"no space after colon", sub("NarSize: ", "NarSize:_"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "c")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			_ = os.WriteFile(filepath.Join(dir, CacheInfoFile), []byte("StoreDir: /nix/store\n"), 0o644)
			if err := os.WriteFile(filepath.Join(dir, top.HashPart()+Extension), []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, nixErr := testenv.NixCmd("nix", "path-info", "--store", "file://"+dir, string(top))
			_, ourErr := Unmarshal([]byte(tc.text))
			nixOK, ourOK := nixErr == nil, ourErr == nil
			if tc.stricter {
				if !nixOK || ourOK {
					t.Errorf("expected Nix to accept (%v) and us to refuse (%v)", nixErr, ourErr)
				}
				return
			}
			if nixOK != ourOK {
				t.Errorf("Nix accepts: %v (%v); we accept: %v (%v)\n%s", nixOK, nixErr, ourOK, ourErr, tc.text)
			}
		})
	}
}
