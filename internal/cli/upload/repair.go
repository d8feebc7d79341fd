package upload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	"github.com/nixcache/nixcache/cache"
	"github.com/nixcache/nixcache/cache/localstore"
	"github.com/nixcache/nixcache/internal/cli"
	"github.com/nixcache/nixcache/storepath"
)

// Mend are the settings of `verify --repair` and `verify --sign-with`.
type Mend struct {
	// Repair uploads bad paths again from the local store, signing the
	// fresh narinfos with SecretKeys (and SignWith).
	Repair     bool
	SecretKeys []cli.Setting
	// SignWith are the key files of the rotation: their signature is added
	// to every narinfo (and, when no paths are given, every realisation)
	// that verifies with the trusted keys.
	SignWith []cli.Setting
	// Verify is how paths are checked (trusted keys, upstream, jobs); its
	// Jobs is also the number of uploads at once.
	Verify cache.VerifyOptions
	// Out receives one line per bad path, repair and narinfo not signed.
	Out io.Writer
	Log *slog.Logger
}

// Flags registers --repair, --secret-key and --sign-with on fl.
func (m *Mend) Flags(fl *cli.FlagSet) {
	fl.BoolVar(&m.Repair, "repair", false, "upload bad paths again from the local Nix store, with a fresh narinfo signed by --secret-key")
	fl.Func("secret-key", "with --repair: secret key `FILE` to sign the fresh narinfos with (repeatable)", func(s string) error {
		m.SecretKeys = append(m.SecretKeys, cli.Setting{Value: s, Name: fmt.Sprintf("--secret-key %d", len(m.SecretKeys)+1)})
		return nil
	})
	fl.Func("sign-with", "add a signature by the secret key in `FILE` to every narinfo (and, without PATH, realisation) that verifies with the trusted keys (key rotation; repeatable)", func(s string) error {
		m.SignWith = append(m.SignWith, cli.Setting{Value: s, Name: fmt.Sprintf("--sign-with %d", len(m.SignWith)+1)})
		return nil
	})
}

// Active reports whether any of the flags asks to change the cache.
func (m *Mend) Active() bool { return m.Repair || len(m.SignWith) > 0 }

// Run checks the paths (every narinfo when none) and mends the cache with
// cache.Repair, printing what it found and did. A bad key file is a usage
// error (wrapping cli.ErrUsage); the local store failing to open is
// returned as is; otherwise the error is Repair's.
func (m *Mend) Run(ctx context.Context, c *cache.Cache, paths []storepath.Path) (*cache.RepairSummary, error) {
	if len(m.SecretKeys) > 0 && !m.Repair {
		return nil, cli.Usagef("--secret-key is used only with --repair")
	}
	keys, err := LoadSecretKeys(m.SecretKeys, m.Log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	signWith, err := LoadSecretKeys(m.SignWith, m.Log)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	opts := c.Options()
	opts.SecretKeys = append(opts.SecretKeys, keys...)
	c = cache.New(c.Backend, opts)
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(m.Out, format+"\n", args...)
	}
	ro := cache.RepairOptions{
		Verify:   m.Verify,
		Push:     cache.PushOptions{Jobs: m.Verify.Jobs},
		SignWith: signWith,
		Repaired: func(r cache.RepairResult) { say("%s", r) },
		Signed: func(p storepath.Path, key string, _ bool, err error) {
			if err != nil {
				name := string(p)
				if name == "" || strings.HasPrefix(key, "realisations/") {
					name = key
				}
				say("%s: %v", name, err)
			}
		},
	}
	ro.Verify.Result = func(p storepath.Path, err error) {
		if err != nil {
			say("%s", (&cache.PathError{Path: p, Err: err}).Error())
		}
	}
	if m.Repair {
		store, err := localstore.Open(ctx, localstore.Options{})
		if err != nil {
			return nil, fmt.Errorf("local store: %w", err)
		}
		defer store.Close()
		ro.Source = store
	}
	return c.Repair(ctx, paths, ro)
}
