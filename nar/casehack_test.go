package nar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/internal/testenv"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

// hackOpt is the nix-store option that turns Nix's case hack on (Nix 2.8
// honours it on Linux too).
var hackOpt = []string{"--option", "use-case-hack", "true"}

// nixRestore runs `nix-store --option use-case-hack true --restore dir`
// with nar on stdin.
func nixRestore(nar []byte, dir string) error {
	cmd := exec.Command("nix-store", append(hackOpt, "--restore", dir)...)
	cmd.Stdin = bytes.NewReader(nar)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// hackWalkers are the walkers with the case hack on.
var hackWalkers = []struct {
	name string
	dump func(io.Writer, string) error
}{
	{"fast", DumpOptions{CaseHack: true}.DumpPath},
	{"portable", func(w io.Writer, p string) error {
		nw := NewWriter(w)
		nw.portableDump = true
		nw.SetCaseHack(true)
		if err := nw.AddTree("", p); err != nil {
			return err
		}
		return nw.Close()
	}},
}

// caseTrees are directories with names that collide up to case, at several
// levels, as a case-sensitive file system holds them.
var caseTrees = []struct {
	name  string
	build tree
}{
	{"pair", func(t testing.TB, p string) {
		mkdir(t, p)
		mkfile(t, filepath.Join(p, "a"), "lower", 0o644)
		mkfile(t, filepath.Join(p, "A"), "upper", 0o755)
	}},
	{"many", func(t testing.TB, p string) {
		mkdir(t, p)
		for _, n := range []string{"ab", "aB", "Ab", "AB", "abc", "ABC", "b", "ä", "Ä", "x~y", "X~Y"} {
			mkfile(t, filepath.Join(p, n), n, 0o644)
		}
		mklink(t, "ab", filepath.Join(p, "LINK"))
		mklink(t, "AB", filepath.Join(p, "link"))
	}},
	{"nested", func(t testing.TB, p string) {
		for _, d := range []string{"Dir/Sub", "Dir/sub", "dir/SUB/x", "dir/sub", "DIR"} {
			mkdir(t, filepath.Join(p, d))
		}
		mkfile(t, filepath.Join(p, "Dir/Sub/f"), "1", 0o644)
		mkfile(t, filepath.Join(p, "Dir/Sub/F"), "2", 0o644)
		mkfile(t, filepath.Join(p, "dir/SUB/x/y"), "3", 0o644)
		mkfile(t, filepath.Join(p, "dir/SUB/x/Y"), "4", 0o755)
		mkfile(t, filepath.Join(p, "dir/file"), "5", 0o644)
		mkfile(t, filepath.Join(p, "Dir/FILE"), "6", 0o644)
	}},
	{"random", func(t testing.TB, p string) {
		r := rand.New(rand.NewPCG(15, 15))
		var fill func(d string, depth int)
		fill = func(d string, depth int) {
			mkdir(t, d)
			for range 12 {
				n := []byte("abc"[:1+r.IntN(3)])
				for i := range n {
					if r.IntN(2) == 0 {
						n[i] -= 'a' - 'A'
					}
				}
				q := filepath.Join(d, string(n))
				if _, err := os.Lstat(q); err == nil {
					continue
				}
				if depth < 3 && r.IntN(3) == 0 {
					fill(q, depth+1)
				} else {
					mkfile(t, q, q, 0o644)
				}
			}
		}
		fill(p, 0)
	}},
}

// TestCaseHackMatchesNix checks both directions against `nix-store
// --option use-case-hack true`: Nix's NAR of a tree with case collisions
// restores to the same names on disk (suffixes included) through Nix and
// through RestoreOptions{CaseHack: true}, and both walkers with the case
// hack dump that restored tree back to Nix's NAR, as Nix does.
func TestCaseHackMatchesNix(t *testing.T) {
	testenv.RequireNix(t)
	for _, c := range caseTrees {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			c.build(t, src)
			want := nixDump(t, src)
			// Restore: the same tree on disk as Nix's, suffixes and all.
			nixDir, ourDir := filepath.Join(dir, "nix"), filepath.Join(dir, "ours")
			if err := nixRestore(want, nixDir); err != nil {
				t.Fatal(err)
			}
			if err := (RestoreOptions{CaseHack: true}).Restore(bytes.NewReader(want), ourDir); err != nil {
				t.Fatal(err)
			}
			onDisk := nixDump(t, nixDir) // the raw names, no hack
			if !strings.Contains(string(onDisk), CaseHackSuffix) {
				t.Fatalf("Nix restored no case-hacked name: the tree tests nothing")
			}
			if got := nixDump(t, ourDir); !bytes.Equal(got, onDisk) {
				t.Errorf("our restore differs from Nix's on disk at byte %d of the raw dump", firstDiff(got, onDisk))
			}
			compareModes(t, ourDir, nixDir)
			// Dump: Nix's hacked dump of the restored tree is the original.
			if nixHacked := testenv.Nix(t, "nix-store", append(hackOpt, "--dump", nixDir)...); !bytes.Equal(nixHacked, want) {
				t.Fatal("nix-store --dump with the case hack does not give the original NAR back")
			}
			for _, w := range hackWalkers {
				var b bytes.Buffer
				if err := w.dump(&b, nixDir); err != nil || !bytes.Equal(b.Bytes(), want) {
					t.Errorf("%s walker with the case hack differs from Nix at byte %d (%v)", w.name, firstDiff(b.Bytes(), want), err)
				}
			}
			// Without the hack the suffixes stay, as in Nix's plain dump.
			var b bytes.Buffer
			if err := (DumpOptions{}).DumpPath(&b, ourDir); err != nil || !bytes.Equal(b.Bytes(), onDisk) {
				t.Errorf("dump without the case hack differs from nix-store --dump (%v)", err)
			}
			// The hash, as nix-hash computes it with the hack.
			sum, _, err := DumpOptions{CaseHack: true}.DumpPathSum(nil, nixDir)
			if err != nil {
				t.Fatal(err)
			}
			nixHash := strings.TrimSpace(string(testenv.Nix(t, "nix-hash", append(hackOpt, "--type", "sha256", "--base32", nixDir)...)))
			if got := nixbase32.EncodeToString(sum[:]); got != nixHash {
				t.Errorf("DumpPathSum with the case hack = %s, nix-hash = %s", got, nixHash)
			}
		})
	}
}

// TestCaseHackSuffixedNames checks names that already carry the suffix on
// disk, without a collision: Nix's hacked dump cuts the name at the suffix,
// whatever follows it.
func TestCaseHackSuffixedNames(t *testing.T) {
	testenv.RequireNix(t)
	p := filepath.Join(t.TempDir(), "t")
	mkdir(t, filepath.Join(p, "d~nix~case~hack~2"))
	mkfile(t, filepath.Join(p, "d~nix~case~hack~2", "f~nix~case~hack~1"), "f", 0o644)
	mkfile(t, filepath.Join(p, "x~nix~case~hack~7zz"), "x", 0o755)
	mkfile(t, filepath.Join(p, "y~nix~case~hack~"), "y", 0o644)
	mkfile(t, filepath.Join(p, "b"), "b", 0o644)
	mkfile(t, filepath.Join(p, "B~nix~case~hack~1"), "B", 0o644)
	want := testenv.Nix(t, "nix-store", append(hackOpt, "--dump", p)...)
	for _, w := range hackWalkers {
		var b bytes.Buffer
		if err := w.dump(&b, p); err != nil || !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s walker differs from nix-store --dump with the case hack at byte %d (%v)", w.name, firstDiff(b.Bytes(), want), err)
		}
	}
	// And without the hack, as plain nix-store --dump.
	var b bytes.Buffer
	if err := (DumpOptions{}).DumpPath(&b, p); err != nil || !bytes.Equal(b.Bytes(), nixDump(t, p)) {
		t.Errorf("dump without the case hack differs from nix-store --dump (%v)", err)
	}
}

// TestCaseHackRefusals checks the cases Nix refuses: a directory whose
// names collide once the suffixes are removed (dump), a NAR whose hacked
// name collides with an earlier entry (restore), and a hacked name that
// exists already (restore: the file exists).
func TestCaseHackRefusals(t *testing.T) {
	testenv.RequireNix(t)
	tmp := t.TempDir()

	p := filepath.Join(tmp, "collide")
	mkdir(t, filepath.Join(p, "sub"))
	mkfile(t, filepath.Join(p, "sub", "a"), "1", 0o644)
	mkfile(t, filepath.Join(p, "sub", "a~nix~case~hack~1"), "2", 0o644)
	if _, err := testenv.NixCmd("nix-store", append(hackOpt, "--dump", p)...); err == nil || !strings.Contains(err.Error(), "file name collision") {
		t.Fatalf("nix-store --dump of colliding names: %v, want a file name collision", err)
	}
	for _, w := range hackWalkers {
		err := w.dump(io.Discard, p)
		if !errors.Is(err, ErrCaseCollision) || !strings.Contains(err.Error(), "sub") {
			t.Errorf("%s walker: %v, want ErrCaseCollision naming the directory", w.name, err)
		}
	}

	// A, a, a~nix~case~hack~1: "a" is restored as "a~nix~case~hack~1",
	// then the literal name exists. Nix: "creating file ...: File exists".
	exists := narOf(dir(entry("A", file("1")...), entry("a", file("2")...), entry("a~nix~case~hack~1", file("3")...)))
	if err := nixRestore(exists, filepath.Join(tmp, "nix1")); err == nil || !strings.Contains(err.Error(), "File exists") {
		t.Errorf("nix-store --restore: %v, want File exists", err)
	}
	if err := (RestoreOptions{CaseHack: true}).Restore(bytes.NewReader(exists), filepath.Join(tmp, "ours1")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Restore: %v, want fs.ErrExist", err)
	}

	// A, A~nix~case~hack~1, a: "a" would become "a~nix~case~hack~1",
	// the name of an earlier entry up to case. Nix 2.8 on a
	// case-sensitive file system restores three files (on a
	// case-insensitive one the last fails as existing), which its own
	// hacked dump then refuses; Nix since 2.19 refuses the NAR, and so
	// does Restore.
	taken := narOf(dir(entry("A", file("1")...), entry("A~nix~case~hack~1", file("2")...), entry("a", file("3")...)))
	if err := nixRestore(taken, filepath.Join(tmp, "nix2")); err == nil {
		if _, err := testenv.NixCmd("nix-store", append(hackOpt, "--dump", filepath.Join(tmp, "nix2"))...); err == nil {
			t.Error("Nix restores and dumps back a NAR whose hacked name collides: Restore's refusal is wrong")
		}
	}
	err := (RestoreOptions{CaseHack: true}).Restore(bytes.NewReader(taken), filepath.Join(tmp, "ours2"))
	if !errors.Is(err, ErrCaseCollision) || !strings.Contains(err.Error(), `"A~nix~case~hack~1"`) {
		t.Errorf("Restore: %v, want ErrCaseCollision naming the earlier entry", err)
	}

	// Without the hack the same NARs restore as they are.
	for i, nar := range [][]byte{exists, taken} {
		if err := (RestoreOptions{}).Restore(bytes.NewReader(nar), filepath.Join(tmp, fmt.Sprint("plain", i))); err != nil {
			t.Errorf("Restore without the case hack: %v", err)
		}
	}
}

// TestCaseHackDefault checks that the package-level functions follow Nix's
// per-platform default.
func TestCaseHackDefault(t *testing.T) {
	p := filepath.Join(t.TempDir(), "t")
	mkdir(t, p)
	mkfile(t, filepath.Join(p, "a~nix~case~hack~1"), "x", 0o644)
	var plain, def bytes.Buffer
	if err := (DumpOptions{}).DumpPath(&plain, p); err != nil {
		t.Fatal(err)
	}
	if err := DumpPath(&def, p); err != nil {
		t.Fatal(err)
	}
	if got := bytes.Equal(plain.Bytes(), def.Bytes()); got == DefaultCaseHack {
		t.Errorf("DumpPath applied the case hack = %v, want %v (DefaultCaseHack)", !got, DefaultCaseHack)
	}
	restored := filepath.Join(t.TempDir(), "r")
	nar := narOf(dir(entry("A", file("1")...), entry("a", file("2")...)))
	if err := Restore(bytes.NewReader(nar), restored); err != nil {
		t.Fatal(err)
	}
	_, err := os.Lstat(filepath.Join(restored, "a"+CaseHackSuffix+"1"))
	if (err == nil) != DefaultCaseHack {
		t.Errorf("Restore applied the case hack = %v, want %v (DefaultCaseHack)", err == nil, DefaultCaseHack)
	}
}
