package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ClosureSpec describes a closure for BuildClosure.
type ClosureSpec struct {
	// Name prefixes the derivation names: Name-0 (the leaf) to Name-(N-1)
	// (the top). Default "testenv".
	Name string
	// N is the number of derivations (at least 1; default 3).
	N int
	// Outputs are the outputs of the top derivation; default {"out"}. An
	// output other than "out" refers to "out".
	Outputs []string
	// Blob is a number of random bytes written into every path, for tests
	// that need NARs that do not compress.
	Blob int
	// Root keeps a GC root (an out-link in a temporary directory) until the
	// test ends. Without it nothing roots the paths: a test may delete them
	// with nix-store --delete and substitute them back.
	Root bool
}

// Closure is what BuildClosure built.
type Closure struct {
	// Top is the "out" output of the top derivation.
	Top string
	// Outputs are the top derivation's outputs by name.
	Outputs map[string]string
	// Drv is the top derivation's .drv.
	Drv string
	// Link is the out-link to Top when ClosureSpec.Root is set (other
	// outputs have Link-NAME), else "".
	Link string
	// Paths is the closure of all the top's outputs as nix-store -qR lists
	// it: dependencies before the paths that refer to them, so the top's
	// outputs come last.
	Paths []string
}

// closureExpr writes spec as a Nix expression with no nixpkgs (/bin/sh and
// coreutils only). Path i is a directory holding a nonce unique to this
// build, an executable, a symlink, its own path (a self-reference), spec.Blob
// random bytes and the paths of i-1 and 0, so Nix records real references: a
// chain, and every path but the first two also refers to the leaf directly.
// The leaf also holds a compressible file. The expression's value is the top
// derivation, or with all an attribute set of every derivation.
func closureExpr(spec ClosureSpec, nonce string, all bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `let
  nonce = %q;
  blob = "%d";
  mk = name: deps: outputs: extra: derivation {
    inherit name nonce outputs;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      set -e
      mkdir -p $out/bin $out/share/doc
      echo ${nonce} > $out/id
      echo $out > $out/self
      ${builtins.concatStringsSep "\n" (map (d: "echo ${d} >> $out/deps") deps)}
      printf '#!/bin/sh\necho hello from %%s\n' ${name} > $out/bin/run
      chmod +x $out/bin/run
      ln -s ../../id $out/share/doc/id-link
      head -c ${blob} /dev/urandom > $out/share/blob
      ${extra}
    '' ];
  };
`, nonce, spec.Blob)
	for i := range spec.N {
		var deps []string
		if i > 0 {
			deps = append(deps, fmt.Sprintf("p%d", i-1))
		}
		if i > 1 {
			deps = append(deps, "p0")
		}
		outputs := []string{"out"}
		var extra []string
		if i == 0 {
			extra = append(extra, "seq 1 20000 > $out/share/doc/numbers")
		}
		if i == spec.N-1 {
			outputs = spec.Outputs
			for _, o := range outputs {
				if o != "out" {
					extra = append(extra, fmt.Sprintf("mkdir -p $%s; echo $out > $%s/out", o, o))
				}
			}
		}
		fmt.Fprintf(&b, "  p%d = mk \"%s-%d\" [ %s ] [ %s ] %q;\n", i, spec.Name, i,
			strings.Join(deps, " "), quoteAll(outputs), strings.Join(extra, "\n"))
	}
	if !all {
		fmt.Fprintf(&b, "in p%d\n", spec.N-1)
		return b.String()
	}
	b.WriteString("in {")
	for i := range spec.N {
		fmt.Fprintf(&b, " inherit p%d;", i)
	}
	b.WriteString(" }\n")
	return b.String()
}

func (spec ClosureSpec) withDefaults() ClosureSpec {
	if spec.Name == "" {
		spec.Name = "testenv"
	}
	if spec.N <= 0 {
		spec.N = 3
	}
	if len(spec.Outputs) == 0 {
		spec.Outputs = []string{"out"}
	}
	return spec
}

// Nonce returns a fresh random string for a test's derivations, so that
// every run (and every concurrent run of the same test on the machine)
// builds its own store paths. A test's temporary directory is no nonce:
// its base name is the same ("001") in every run.
func Nonce() string {
	var r [12]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// WriteClosureExpr writes the derivations BuildClosure would build for spec,
// with a fresh nonce, to a new file in dir and returns the file's path. The
// file's value is an attribute set of all the derivations, so that nix-build
// builds each one (running a post-build hook for each) and prints every
// output; nothing is built here.
func WriteClosureExpr(dir string, spec ClosureSpec) (string, error) {
	f, err := os.CreateTemp(dir, "closure-*.nix")
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	_, err = f.WriteString(closureExpr(spec.withDefaults(), Nonce(), true))
	if err == nil {
		err = f.Chmod(0o644) // readable by a build user or a test's other user
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	return f.Name(), nil
}

func quoteAll(s []string) string {
	q := make([]string, len(s))
	for i, e := range s {
		q[i] = fmt.Sprintf("%q", e)
	}
	return strings.Join(q, " ")
}

// BuildClosure builds a fresh closure of spec.N input-addressed paths with
// real references through real Nix (nix-build, no substituters), unique to
// this call, and deletes it from the store when the test ends. It calls
// RequireNix first.
func BuildClosure(t TB, spec ClosureSpec) Closure {
	t.Helper()
	RequireNix(t)
	spec = spec.withDefaults()
	if !slices.Contains(spec.Outputs, "out") {
		t.Fatalf("testenv: ClosureSpec.Outputs %v lacks \"out\"", spec.Outputs)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "closure.nix")
	if err := os.WriteFile(file, []byte(closureExpr(spec, Nonce(), false)), 0o644); err != nil {
		t.Fatalf("%v", err)
	}
	args := []string{"--option", "substituters", "", file}
	link := filepath.Join(dir, "result")
	var c Closure
	if spec.Root {
		args = append(args, "--out-link", link)
		c.Link = link
	} else {
		args = append(args, "--no-out-link")
	}
	printed := strings.Fields(string(Nix(t, "nix-build", args...)))
	c.Drv = strings.TrimSpace(string(Nix(t, "nix-store", "--query", "--deriver", printed[0])))
	// An output's path is named after the derivation, with "-NAME" added
	// for outputs other than out.
	top := fmt.Sprintf("%s-%d", spec.Name, spec.N-1)
	outs := strings.Fields(string(Nix(t, "nix-store", "--query", "--outputs", c.Drv)))
	c.Outputs = map[string]string{}
	for _, p := range outs {
		_, name, _ := strings.Cut(filepath.Base(p), "-")
		if name == top {
			c.Outputs["out"] = p
		} else if o, ok := strings.CutPrefix(name, top+"-"); ok {
			c.Outputs[o] = p
		}
	}
	for _, o := range spec.Outputs {
		if c.Outputs[o] == "" || len(outs) != len(spec.Outputs) {
			t.Fatalf("testenv: %s has outputs %v, want %v", c.Drv, outs, spec.Outputs)
		}
	}
	c.Top = c.Outputs["out"]
	c.Paths = strings.Fields(string(Nix(t, "nix-store", append([]string{"--query", "--requisites"}, outs...)...)))
	if want := spec.N + len(spec.Outputs) - 1; len(c.Paths) != want {
		t.Fatalf("testenv: the closure of %v has %d paths, want %d: %v", outs, len(c.Paths), want, c.Paths)
	}
	t.Cleanup(func() {
		if spec.Root {
			for _, name := range spec.Outputs {
				l := link
				if name != "out" {
					l += "-" + name
				}
				_ = os.Remove(l)
			}
		}
		// Referrers first: nix-store --delete refuses a path that a live
		// path refers to. A test may have deleted some already.
		del := []string{"--delete"}
		for _, p := range slices.Backward(c.Paths) {
			if _, err := os.Lstat(p); err == nil {
				del = append(del, p)
			}
		}
		if len(del) > 1 {
			if _, err := NixCmd("nix-store", del...); err != nil {
				t.Logf("testenv: cleanup: %v", err)
			}
		}
	})
	return c
}
