package nar

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestGolden checks the Reader, Writer, List, Restore and both walkers
// against NARs and listings written by Nix 2.8 (testdata/golden, see its
// README), so that they are compared with Nix byte for byte even where Nix
// is not installed.
func TestGolden(t *testing.T) {
	for _, name := range []string{"tree", "file", "link"} {
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "golden", name+".nar"))
			if err != nil {
				t.Fatal(err)
			}
			if got := rewrite(t, want); !bytes.Equal(got, want) {
				t.Errorf("Reader->Writer differs from Nix's NAR at byte %d", firstDiff(got, want))
			}
			// Restore, then dump with each walker: Nix's NAR again.
			dest := filepath.Join(t.TempDir(), "r")
			if err := Restore(bytes.NewReader(want), dest); err != nil {
				t.Fatal(err)
			}
			for _, w := range walkers {
				var b bytes.Buffer
				if err := w.dump(&b, dest); err != nil || !bytes.Equal(b.Bytes(), want) {
					t.Errorf("%s walker on the restored tree differs from Nix's NAR at byte %d (%v)", w.name, firstDiff(b.Bytes(), want), err)
				}
			}
			ls, err := os.ReadFile(filepath.Join("testdata", "golden", name+".ls"))
			if os.IsNotExist(err) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			compareListings(t, want, dest, ls)
		})
	}
}

// TestGoldenCaseHack checks the case hack against Nix 2.8's own output
// (testdata/golden/casehack*.nar): RestoreOptions{CaseHack: true} puts the
// names on disk that nix-store --option use-case-hack true --restore put
// there, and both walkers with the hack dump that tree back to Nix's NAR.
func TestGoldenCaseHack(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "golden", "casehack.nar"))
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join("testdata", "golden", "casehack-restored.nar"))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "r")
	if err := (RestoreOptions{CaseHack: true}).Restore(bytes.NewReader(want), dest); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	if err := (DumpOptions{}).DumpPath(&raw, dest); err != nil || !bytes.Equal(raw.Bytes(), onDisk) {
		t.Errorf("restored names differ from Nix's at byte %d of the plain dump (%v)", firstDiff(raw.Bytes(), onDisk), err)
	}
	for _, w := range hackWalkers {
		var b bytes.Buffer
		if err := w.dump(&b, dest); err != nil || !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s walker with the case hack differs from Nix's NAR at byte %d (%v)", w.name, firstDiff(b.Bytes(), want), err)
		}
	}
}
