// Command keygen makes a binary-cache signing key pair, like
// nix-store --generate-binary-cache-key NAME SECRET-FILE PUBLIC-FILE: the
// same file format (name:base64, no trailing newline) and modes (0600 for
// the secret key, 0644 for the public key). Unlike Nix it refuses to
// overwrite an existing file.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/nixcache/nixcache/signature"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s NAME SECRET-FILE PUBLIC-FILE\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 3 {
		flag.Usage()
		os.Exit(2)
	}
	name, secPath, pubPath := flag.Arg(0), flag.Arg(1), flag.Arg(2)
	if err := run(name, secPath, pubPath); err != nil {
		fmt.Fprintln(os.Stderr, "keygen:", err)
		os.Exit(1)
	}
}

func run(name, secPath, pubPath string) error {
	for _, p := range []string{secPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; refusing to overwrite", p)
		}
	}
	sk, pk, err := signature.GenerateKey(name, nil)
	if err != nil {
		return err
	}
	if err := signature.WriteSecretKeyFile(secPath, sk); err != nil {
		return err
	}
	if err := signature.WritePublicKeyFile(pubPath, pk); err != nil {
		_ = os.Remove(secPath)
		return err
	}
	return nil
}
