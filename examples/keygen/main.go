// Command keygen makes a binary-cache signing key pair, like
// nix-store --generate-binary-cache-key NAME SECRET-FILE PUBLIC-FILE: the
// same file format (name:base64, no trailing newline) and modes (0600 for
// the secret key, 0644 for the public key). Unlike Nix it refuses to
// overwrite an existing file.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/signature"
)

func main() { cli.Main("keygen", run) }

func run(_ context.Context, args []string) error {
	fl := cli.NewFlagSet("keygen", "keygen NAME SECRET-FILE PUBLIC-FILE")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() != 3 {
		fl.Usage()
		return cli.Usagef("want NAME SECRET-FILE PUBLIC-FILE, got %d arguments", fl.NArg())
	}
	return generate(fl.Arg(0), fl.Arg(1), fl.Arg(2))
}

func generate(name, secPath, pubPath string) error {
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
