package storepath

import (
	"errors"
	"os/exec"
	"path"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
)

const netTools = "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools-1.60_p20170221182432"

func TestParse(t *testing.T) {
	p, err := Parse(netTools)
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir() != DefaultDir || p.HashPart() != "00bgd045z0d4icpbc2yyz4gx48ak44la" ||
		p.Name() != "net-tools-1.60_p20170221182432" || p.Base() != netTools[len("/nix/store/"):] || p.IsDerivation() {
		t.Errorf("accessors: %q %q %q %q", p.Dir(), p.HashPart(), p.Name(), p.Base())
	}
	if got := len(p.Digest()); got != 20 {
		t.Errorf("Digest length %d", got)
	}
	if _, err := DefaultDir.Parse(netTools); err != nil {
		t.Error(err)
	}
	if _, err := Dir("/other/store").Parse(netTools); !errors.Is(err, ErrInvalid) {
		t.Errorf("wrong dir accepted: %v", err)
	}
	drv, _ := Parse("/nix/store/1bih4j3vfip689mf1s374ijxw69b6mj3-y.drv")
	if !drv.IsDerivation() {
		t.Error("IsDerivation false for .drv")
	}
}

func TestParseRejects(t *testing.T) {
	h := "00bgd045z0d4icpbc2yyz4gx48ak44la"
	for _, s := range []string{
		"",
		"nix/store/" + h + "-x",
		"/" + h + "-x",
		"/nix/store/" + h,
		"/nix/store/" + h + "-",
		"/nix/store/" + h + "_x",
		"/nix/store/" + h[:31] + "-x",
		"/nix/store/" + strings.Replace(h, "0", "e", 1) + "-x",
		"/nix/store/" + strings.Replace(h, "0", "A", 1) + "-x",
		"/nix/store/" + h + "-x/sub",
		"/nix/store//" + h + "-x",
		"/nix/store/" + h + "-" + strings.Repeat("a", 212),
		"/nix/store/" + h + "-a b",
		"/nix/store/" + h + "-.",
		"/nix/store/" + h + "-..",
		"/nix/store/" + h + "-.-x",
		"/nix/store/" + h + "-..-x",
		"/nix/store/" + h + "-caf\xc3\xa9",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) error = %v, want ErrInvalid", s, err)
		}
	}
	if _, err := Parse("/nix/store/" + h + "-" + strings.Repeat("a", 211)); err != nil {
		t.Errorf("211-char name rejected: %v", err)
	}
	if _, err := Parse("/nix/store/" + h + "-.foo"); err != nil {
		t.Errorf(".foo rejected: %v", err)
	}
}

func TestDirFromEnv(t *testing.T) {
	t.Setenv("NIX_STORE_DIR", "/tmp/store/")
	if d := DirFromEnv(); d != "/tmp/store" {
		t.Errorf("DirFromEnv = %q", d)
	}
	t.Setenv("NIX_STORE_DIR", "")
	if d := DirFromEnv(); d != DefaultDir {
		t.Errorf("DirFromEnv = %q", d)
	}
}

// TestNamesAgainstNix asks Nix to compute a store path for each name
// (builtins.toFile in read-only mode) and checks that we accept exactly the
// names Nix accepts and parse the path it prints. The ".", "..", ".-x" rule
// is newer than Nix 2.8, so those names are checked in TestParseRejects.
func TestNamesAgainstNix(t *testing.T) {
	testenv.RequireNix(t)
	names := []string{
		"a", "hello-2.12", "A+B=c?d_e.f", "x.drv", ".foo", "-x", "--", "a..b",
		strings.Repeat("n", 211), strings.Repeat("n", 212),
		"a b", "a/b", "caf\u00e9", "a:b", "a@b", "a~b", "a%b", "a$b", "a!b", "a,b",
	}
	for _, name := range names {
		expr := `builtins.toFile "` + strings.ReplaceAll(name, "$", `\$`) + `" "x"`
		out, err := exec.Command("nix-instantiate", "--eval", "--readonly-mode", "-E", expr).Output()
		nixOK := err == nil
		ourErr := ValidateName(name)
		if nixOK != (ourErr == nil) {
			t.Errorf("name %q: nix accepts=%v, we say %v", name, nixOK, ourErr)
			continue
		}
		if nixOK {
			abs := strings.Trim(strings.TrimSpace(string(out)), `"`)
			p, err := DefaultDir.Parse(abs)
			if err != nil || p.Name() != name {
				t.Errorf("Parse(%q) = %q, %v", abs, p, err)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(netTools)
	f.Add("/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-.-x")
	f.Add("/x/00bgd045z0d4icpbc2yyz4gx48ak44la-a.drv")
	f.Add("/nix/store\nSig: k:AAAA\n/00bgd045z0d4icpbc2yyz4gx48ak44la-a")
	f.Add("/nix;store/00bgd045z0d4icpbc2yyz4gx48ak44la-a")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		if err := p.Dir().Validate(); err != nil {
			t.Fatalf("accepted %q in an invalid store directory: %v", s, err)
		}
		if p.String() != s || len(p.Digest()) != 20 || p.Name() == "" {
			t.Fatalf("accepted %q but accessors are off", s)
		}
		if _, err := p.Dir().FromBase(p.Base()); err != nil {
			t.Fatalf("FromBase(%q): %v", p.Base(), err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse(netTools); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStoreDirRule is the regression test for a store directory carrying a
// line break or ';' (issue 8.8): Parse took any parent directory, and a
// narinfo written from such a path held forged lines.
func TestStoreDirRule(t *testing.T) {
	base := "00bgd045z0d4icpbc2yyz4gx48ak44la-net-tools"
	for _, dir := range []string{"/nix/store", "/gnu/store", "/a", "/home/u/.nix/store", "/nix/store-2.8", "/x:y"} {
		if err := ValidateDir(dir); err != nil {
			t.Errorf("ValidateDir(%q) = %v", dir, err)
		}
		if p, err := Parse(dir + "/" + base); err != nil || p.Dir() != Dir(dir) {
			t.Errorf("Parse(%q) = %v, %v", dir+"/"+base, p, err)
		}
		if _, err := Dir(dir).FromBase(base); err != nil {
			t.Errorf("FromBase in %q: %v", dir, err)
		}
	}
	for _, dir := range []string{
		"/nix/store\nSig: k:AAAA\n",
		"/nix/store\r",
		"/nix;store",
		"/nix,store",
		"/nix store",
		"/nix\tstore",
		"/nix/\x00store",
		"/nix/\x7fstore",
		"nix/store",
		"",
		"/",
		"/nix/store/",
		"/nix//store",
		"/nix/./store",
	} {
		if err := ValidateDir(dir); !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateDir(%q) = %v, want ErrInvalid", dir, err)
		}
		if _, err := Dir(dir).FromBase(base); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromBase in %q = %v, want ErrInvalid", dir, err)
		}
		if dir == "" || dir == "/" || dir[len(dir)-1] == '/' {
			continue
		}
		if _, err := Parse(dir + "/" + base); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", dir+"/"+base, err)
		}
	}
	t.Setenv("NIX_STORE_DIR", "/x;y")
	if d := DirFromEnv(); d != DefaultDir {
		t.Errorf("DirFromEnv with an invalid NIX_STORE_DIR = %q", d)
	}
}

// TestSplitClean checks the one-pass cleanness test Parse and ValidateDir
// use against path.Clean, on the paths FuzzSplitClean starts from.
func TestSplitClean(t *testing.T) {
	for _, p := range splitCleanSeeds {
		checkSplitClean(t, p)
	}
}

var splitCleanSeeds = []string{"/", "//", "/a", "/a/", "/a//b", "/a/./b", "/a/../b", "/.", "/..", "/...", "/.a", "/a.",
	"/a/.", "/a/..", "/a/b/", "/nix/store", "/nix/store/00bgd045z0d4icpbc2yyz4gx48ak44la-a", "/./a", "/../a", "/a/.../b", "/a/..b/c"}

func checkSplitClean(t *testing.T, p string) {
	t.Helper()
	if !strings.HasPrefix(p, "/") {
		return
	}
	slash, clean := splitClean(p)
	if want := path.Clean(p) == p; clean != want {
		t.Fatalf("splitClean(%q) clean = %v, path.Clean gives %q", p, clean, path.Clean(p))
	}
	if clean && slash != strings.LastIndexByte(p, '/') {
		t.Fatalf("splitClean(%q) last slash = %d, want %d", p, slash, strings.LastIndexByte(p, '/'))
	}
}

func FuzzSplitClean(f *testing.F) {
	for _, p := range splitCleanSeeds {
		f.Add(p)
	}
	f.Fuzz(checkSplitClean)
}
