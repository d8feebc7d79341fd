// Package cli is the plumbing the commands under examples/ share: how a
// command runs and exits, its logger, and the flags that mean the same thing
// in every command (--jobs, --secret-key, --to, --queue, --skip-signed-by,
// --upstream). Each main is then
// a thin layer of flags over the library.
//
// It is light (no cache, network or crypto code) because the post-build
// hook links it; the steps that need the cache are in package
// internal/cli/upload.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/nixcache/nixcache/internal/config"
)

// ErrUsage is wrapped by errors about the command line: Main exits 2 for
// them (0 for -h), 1 for any other error.
var ErrUsage = errors.New("usage")

// Exit codes of the commands that read a cache (verify, fetch), besides 0
// and 2 for a usage error: ExitBad when a path is missing, unsigned or
// damaged, ExitCache when the cache itself cannot be read.
const (
	ExitBad   = 1
	ExitCache = 3
)

// Usagef returns an error wrapping ErrUsage.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Main runs a command and exits: run gets a context cancelled by SIGINT or
// SIGTERM and the arguments after the program name. A nil error exits 0;
// otherwise Main prints "name: error" to stderr and exits with ExitCode.
func Main(name string, run func(ctx context.Context, args []string) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	Exit(name, err)
}

// Exit ends a command as Main does, for a main that runs without Main's
// signal handling (the post-build hook: starting the signal watcher costs
// about 0.4 ms of CPU, on every build).
func Exit(name string, err error) {
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		msg := strings.TrimPrefix(err.Error(), ErrUsage.Error()+": ")
		fmt.Fprintf(os.Stderr, "%s: %s\n", name, msg)
	}
	os.Exit(ExitCode(err))
}

// ExitCode is the exit status for run's error: 0 for nil or -h, the code of
// an error made by WithCode, 2 for a usage error, 1 otherwise.
func ExitCode(err error) int {
	var ce *codeError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

// WithCode returns err (nil if err is nil) such that Main exits with code,
// for commands that document more exit codes than 0, 1 and 2.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codeError{code, err}
}

type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// NewLogger returns the commands' logger: slog's text format on w, without
// the time (journald and Nix's build log add their own), at Info level or
// Debug when debug is set, with prog=<prog> on every line when prog != "".
func NewLogger(w io.Writer, prog string, debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	l := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	if prog != "" {
		l = l.With("prog", prog)
	}
	return l
}

// FlagSet is a flag.FlagSet that returns errors (wrapped in ErrUsage)
// instead of exiting, with the settings the commands share.
type FlagSet struct {
	*flag.FlagSet
}

// NewFlagSet returns a FlagSet named name whose usage message starts with
// synopsis (the command line forms, one per line).
func NewFlagSet(name, synopsis string) *FlagSet {
	fl := flag.NewFlagSet(name, flag.ContinueOnError)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: %s\n", synopsis)
		fl.PrintDefaults()
	}
	return &FlagSet{fl}
}

// Parse parses args; a bad flag comes back wrapped in ErrUsage (the flag
// package has printed the usage), -h as flag.ErrHelp.
func (fl *FlagSet) Parse(args []string) error {
	err := fl.FlagSet.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUsage, err)
}

// Jobs registers --jobs N, also spelt -j N: the number of store paths
// compressed and uploaded at once, in every command that uploads.
func (fl *FlagSet) Jobs(def int) *int {
	p := new(int)
	const usage = "store paths compressed and uploaded at once"
	fl.IntVar(p, "jobs", def, usage)
	fl.IntVar(p, "j", def, "short for --jobs")
	return p
}

// Source registers the flags of a command that reads a cache: --from URL
// and --trusted-key KEY (repeatable; name:base64 or a file holding one).
// Load the keys with upload.LoadPublicKeys.
func (fl *FlagSet) Source() (from *string, keys *[]Setting) {
	from = fl.String("from", "", "binary cache store URL (file:///dir, s3://bucket?..., https://host/path)")
	keys = new([]Setting)
	fl.Func("trusted-key", "trusted public `KEY` (name:base64, or a file holding one; repeatable)", func(s string) error {
		*keys = append(*keys, Setting{Value: s, Name: "--trusted-key"})
		return nil
	})
	return from, keys
}

// Debug registers --debug: log debug messages.
func (fl *FlagSet) Debug() *bool {
	return fl.Bool("debug", false, "log debug messages")
}

// Setting is a value that comes from a flag or, by default, from the
// configuration (environment or config file). Name says where it came
// from, for messages that must name a setting without showing its value.
type Setting struct {
	Value string
	Name  string // "--to" when given on the command line, else "NIXCACHE_TO"
	flag  string
	env   string
}

// Get returns the value, or a usage error naming the flag and the
// variable when it is empty.
func (s Setting) Get() (string, error) {
	if s.Value == "" {
		return "", Usagef("--%s is required (or set %s)", s.flag, s.env)
	}
	return s.Value, nil
}

// FromConfig registers --name, defaulting to the configuration value def
// of the variable env. After Parse, the returned function gives the value
// and its source.
func (fl *FlagSet) FromConfig(name, env, def, usage string) func() Setting {
	p := fl.FlagSet.String(name, def, fmt.Sprintf("%s (default $%s)", usage, env))
	return func() Setting {
		s := Setting{Value: *p, Name: env, flag: name, env: env}
		if fl.isSet(name) {
			s.Name = "--" + name
		}
		return s
	}
}

// Queue registers --queue DIR, defaulting to NIXCACHE_QUEUE.
func (fl *FlagSet) Queue(cfg config.Config) func() Setting {
	return fl.FromConfig("queue", config.EnvQueue, cfg.Queue, "queue `DIR`")
}

// To registers --to URL, defaulting to NIXCACHE_TO.
func (fl *FlagSet) To(cfg config.Config) func() Setting {
	return fl.FromConfig("to", config.EnvTo, cfg.To, "binary cache store `URL` (file:///dir, s3://bucket?...)")
}

// SecretKeys registers --secret-key FILE, repeatable; without it the key
// file is NIXCACHE_SECRET_KEY_FILE, if set.
func (fl *FlagSet) SecretKeys(cfg config.Config) func() []Setting {
	var files []Setting
	fl.Func("secret-key", "secret key `FILE` to sign with, repeatable (default $"+config.EnvSecretKeyFile+")", func(s string) error {
		files = append(files, Setting{Value: s, Name: "--secret-key"})
		return nil
	})
	return func() []Setting {
		if len(files) == 0 && cfg.SecretKeyFile != "" {
			return []Setting{{Value: cfg.SecretKeyFile, Name: config.EnvSecretKeyFile}}
		}
		return files
	}
}

// SkipSignedBy registers --skip-signed-by KEY, repeatable (a public key
// name:base64, or a file holding one); without it the keys are the words
// of NIXCACHE_SKIP_SIGNED_BY, if set.
func (fl *FlagSet) SkipSignedBy(cfg config.Config) func() []Setting {
	var keys []Setting
	fl.Func("skip-signed-by", "do not upload paths the store holds a valid signature for by this upstream public `KEY` (name:base64 or a file), repeatable (default $"+config.EnvSkipSignedBy+")", func(s string) error {
		keys = append(keys, Setting{Value: s, Name: "--skip-signed-by"})
		return nil
	})
	return func() []Setting {
		if len(keys) > 0 {
			return keys
		}
		var out []Setting
		for _, k := range strings.Fields(cfg.SkipSignedBy) {
			out = append(out, Setting{Value: k, Name: config.EnvSkipSignedBy})
		}
		return out
	}
}

// Upstream registers --upstream URL, defaulting to NIXCACHE_UPSTREAM.
func (fl *FlagSet) Upstream(cfg config.Config) func() Setting {
	return fl.FromConfig("upstream", config.EnvUpstream, cfg.Upstream, "upstream cache `URL`: paths it serves signed by a --skip-signed-by key are not uploaded")
}

func (fl *FlagSet) isSet(name string) bool {
	set := false
	fl.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// Subcommand splits args into a subcommand among names and its arguments;
// with none of them first it returns def and args unchanged.
func Subcommand(args []string, def string, names ...string) (string, []string) {
	if len(args) > 0 {
		for _, n := range names {
			if args[0] == n {
				return n, args[1:]
			}
		}
	}
	return def, args
}

// LoadConfig loads the configuration from the environment and the config
// file (see package config), failing on any bad line, and exports the
// file's other settings (ExportEnv): what push and upload-daemon do first.
func LoadConfig() (config.Config, error) {
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return cfg, err
	}
	ExportEnv(cfg)
	return cfg, nil
}

// ExportEnv sets, in this process's environment, the config file's other
// settings (such as AWS credentials) that the environment does not set
// already: for a command whose libraries read them from the environment.
// It is the command's choice; package config never changes the environment.
func ExportEnv(cfg config.Config) {
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		if _, set := os.LookupEnv(k); !set {
			_ = os.Setenv(k, v)
		}
	}
}
