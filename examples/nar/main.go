// Command nar dumps, hashes, lists and restores Nix Archives.
//
//	nar dump PATH        write the NAR of PATH to stdout (as nix-store --dump)
//	nar hash PATH        print the NAR's sha256 in nix32 (as nix-hash --type sha256 --base32)
//	nar ls FILE          print the .ls listing JSON of a NAR file ("-" for stdin)
//	nar restore FILE DIR unpack a NAR file ("-" for stdin) into DIR (as nix-store --restore)
//
// --case-hack (before or after the command; --case-hack=false to turn it
// off) applies Nix's use-case-hack to dump, hash and restore: on by default
// on macOS, as in Nix, off elsewhere. It must match the setting of the Nix
// that made or will read the tree (nix-store --option use-case-hack true).
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/nar"
	"github.com/nixcache/nixcache/storepath/nixbase32"
)

const synopsis = "nar [--case-hack[=false]] dump PATH | hash PATH | ls FILE | restore FILE DIR"

func main() {
	cli.Main("nar", func(_ context.Context, args []string) error {
		fl := cli.NewFlagSet("nar", synopsis)
		caseHack := fl.Bool("case-hack", nar.DefaultCaseHack, "Nix's use-case-hack for dump, hash and restore (default on macOS only, as in Nix)")
		if err := fl.Parse(args); err != nil {
			return err
		}
		if fl.NArg() < 1 {
			fl.Usage()
			return cli.Usagef("missing arguments")
		}
		cmd := fl.Arg(0)
		if err := fl.Parse(fl.Args()[1:]); err != nil { // flags after the command
			return err
		}
		if fl.NArg() < 1 {
			fl.Usage()
			return cli.Usagef("missing arguments")
		}
		return run(cmd, fl.Args(), *caseHack)
	})
}

func open(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}

func run(cmd string, args []string, caseHack bool) error {
	dumpOpts := nar.DumpOptions{CaseHack: caseHack}
	switch {
	case cmd == "dump" && len(args) == 1:
		// The Writer buffers internally; stdout needs no extra buffer.
		return dumpOpts.DumpPath(os.Stdout, args[0])
	case cmd == "hash" && len(args) == 1:
		sum, _, err := dumpOpts.DumpPathSum(io.Discard, args[0])
		if err != nil {
			return err
		}
		_, err = fmt.Println(nixbase32.EncodeToString(sum[:]))
		return err
	case cmd == "ls" && len(args) == 1:
		f, err := open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		l, err := nar.List(f)
		if err != nil {
			return err
		}
		b, err := l.MarshalJSON()
		if err != nil {
			return err
		}
		out := bufio.NewWriter(os.Stdout)
		out.Write(b)
		out.WriteByte('\n')
		return out.Flush()
	case cmd == "restore" && len(args) == 2:
		f, err := open(args[0])
		if err != nil {
			return err
		}
		defer f.Close()
		return nar.RestoreOptions{CaseHack: caseHack}.Restore(f, args[1])
	}
	return cli.Usagef("unknown command %q or wrong number of arguments (%s)", cmd, synopsis)
}
