// Command nar dumps, hashes, lists and restores Nix Archives.
//
//	nar dump PATH        write the NAR of PATH to stdout (as nix-store --dump)
//	nar hash PATH        print the NAR's sha256 in nix32 (as nix-hash --type sha256 --base32)
//	nar ls FILE          print the .ls listing JSON of a NAR file ("-" for stdin)
//	nar restore FILE DIR unpack a NAR file ("-" for stdin) into DIR (as nix-store --restore)
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

const synopsis = "nar dump PATH | nar hash PATH | nar ls FILE | nar restore FILE DIR"

func main() {
	cli.Main("nar", func(_ context.Context, args []string) error {
		fl := cli.NewFlagSet("nar", synopsis)
		if err := fl.Parse(args); err != nil {
			return err
		}
		if fl.NArg() < 2 {
			fl.Usage()
			return cli.Usagef("missing arguments")
		}
		return run(fl.Arg(0), fl.Args()[1:])
	})
}

func open(name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(os.Stdin), nil
	}
	return os.Open(name)
}

func run(cmd string, args []string) error {
	switch {
	case cmd == "dump" && len(args) == 1:
		// The Writer buffers internally; stdout needs no extra buffer.
		return nar.DumpPath(os.Stdout, args[0])
	case cmd == "hash" && len(args) == 1:
		sum, _, err := nar.DumpPathSum(io.Discard, args[0])
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
		return nar.Restore(f, args[1])
	}
	return cli.Usagef("unknown command %q or wrong number of arguments (%s)", cmd, synopsis)
}
