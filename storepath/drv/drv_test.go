package drv

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nixcache/nixcache/storepath"
)

const (
	outA = "/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi"
	outB = "/nix/store/sjckycqs93xg1s65cidrl4v67pkb41rs-lsx-multi-dev"
)

// TestReadOutputsRecorded parses a .drv written by Nix 2.8 and
// compares with what `nix-store --query --outputs` printed for it.
func TestReadOutputsRecorded(t *testing.T) {
	outs, err := ReadOutputs(filepath.Join("testdata", "lsx-multi.drv"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "lsx-multi.drv.outputs"))
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(maps.Values(outs))
	var gotS []string
	for _, p := range got {
		gotS = append(gotS, string(p))
	}
	if strings.Join(gotS, "\n")+"\n" != string(want) {
		t.Errorf("outputs %v, nix-store --query --outputs says %q", got, want)
	}
	if outs["out"] != outA || outs["dev"] != outB {
		t.Errorf("outputs by name = %v", outs)
	}
}

func TestParseOutputsRules(t *testing.T) {
	tail := `,[],[],"x86_64-linux","/bin/sh",[],[])`
	tests := []struct {
		name, in string
		want     map[string]storepath.Path
	}{
		{"one output", `Derive([("out","` + outA + `","","")]` + tail, map[string]storepath.Path{"out": outA}},
		{"two outputs", `Derive([("dev","` + outB + `","",""),("out","` + outA + `","","")]` + tail, map[string]storepath.Path{"out": outA, "dev": outB}},
		{"fixed output", `Derive([("out","` + outA + `","r:sha256","e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]` + tail, map[string]storepath.Path{"out": outA}},
		{"floating ca output left out", `Derive([("out","","r:sha256","")]` + tail, map[string]storepath.Path{}},
		{"DrvWithVersion", `DrvWithVersion("xp-dyn-drv",[("out","` + outA + `","","")]` + tail, map[string]storepath.Path{"out": outA}},
		{"escapes in hash field", `Derive([("out","` + outA + `","a\"b\\c\n","")]` + tail, map[string]storepath.Path{"out": outA}},
		{"stops after outputs", `Derive([("out","` + outA + `","","")],`, nil},
		{"empty list", `Derive([],[])`, nil},
		{"not a derivation", `Deriv([("out","` + outA + `","","")],`, nil},
		{"other term", `Foo([("out","` + outA + `","","")],`, nil},
		{"truncated", `Derive([("out","` + outA, nil},
		{"missing field", `Derive([("out","` + outA + `","")],`, nil},
		{"extra field", `Derive([("out","` + outA + `","","","")],`, nil},
		{"duplicate output", `Derive([("out","` + outA + `","",""),("out","` + outB + `","","")],`, nil},
		{"bad output name", `Derive([("o ut","` + outA + `","","")],`, nil},
		{"empty output name", `Derive([("","` + outA + `","","")],`, nil},
		{"relative path", `Derive([("out","nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi","","")],`, nil},
		{"bad hash part", `Derive([("out","/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywae-lsx-multi","","")],`, nil},
		{"drv as output", `Derive([("out","/nix/store/4wqibzk3zylscs1br3xn7xcn8x3xywab-lsx-multi.drv","","")],`, nil},
		{"space between", `Derive([ ("out","` + outA + `","","")],`, nil},
		{"unterminated list", `Derive([("out","` + outA + `","","")`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOutputs(strings.NewReader(tt.in))
			if tt.want == nil {
				if tt.name == "stops after outputs" {
					if err != nil || got["out"] != outA {
						t.Fatalf("got %v, %v; want out=%s", got, err, outA)
					}
					return
				}
				if err == nil {
					t.Fatalf("no error; got %v", got)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("error %v does not wrap ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestReadOutputsMissing(t *testing.T) {
	_, err := ReadOutputs(filepath.Join(t.TempDir(), "none.drv"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}

func FuzzParseOutputs(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "lsx-multi.drv"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`DrvWithVersion("xp-dyn-drv",[("out","` + outA + `","","")],`))
	f.Fuzz(func(t *testing.T, data []byte) {
		outs, err := ParseOutputs(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for name, p := range outs {
			if storepath.ValidateName(name) != nil || p.Validate() != nil || p.IsDerivation() {
				t.Fatalf("bad output %q = %q", name, p)
			}
		}
	})
}
