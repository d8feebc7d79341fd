// Package config reads the settings the commands share: the NIXCACHE_*
// variables and the config file (/etc/nixcache/hook.conf) that holds them
// when Nix runs the post-build hook with the nix-daemon's environment.
//
// It has no process-wide side effects: Load returns values, and each
// command decides what to export to the processes it starts (see
// [Config.Environ]). It imports only light standard library packages, so
// the post-build hook can link it.
//
// A config file is read like systemd's EnvironmentFile=: a bad line is
// skipped and reported (by line number, and by key when the key is a valid
// name, never by value: the file holds credentials, and the hook's messages
// reach the build's client), and the good lines are kept, so one typo never
// turns queue mode off.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/nixcache/nixcache/internal/regularfile"
)

// ErrConfig is wrapped by every error about the configuration: an
// unreadable config file, a malformed line, an unknown NIXCACHE_ key.
var ErrConfig = errors.New("config: bad configuration")

// DefaultFile is read when NIXCACHE_CONFIG is unset and the file exists.
const DefaultFile = "/etc/nixcache/hook.conf"

// MaxFileSize bounds a config file (and, through ReadFile, a key file): a
// larger file, or a device such as /dev/zero, is refused rather than read.
const MaxFileSize = 64 << 10

// Configuration keys, as environment variables and as config file keys.
const (
	EnvTo            = "NIXCACHE_TO"              // binary cache store URL
	EnvSecretKeyFile = "NIXCACHE_SECRET_KEY_FILE" // Nix secret key file to sign with
	EnvQueue         = "NIXCACHE_QUEUE"           // queue directory; unset means synchronous upload
	EnvConfig        = "NIXCACHE_CONFIG"          // config file path
	EnvSkipSignedBy  = "NIXCACHE_SKIP_SIGNED_BY"  // upstream public keys (space-separated): paths they signed are not uploaded
	EnvUpstream      = "NIXCACHE_UPSTREAM"        // upstream cache URL: paths it serves are not uploaded
	EnvUploadLogs    = "NIXCACHE_UPLOAD_LOGS"     // upload-daemon also uploads build logs (default on; 0/false/no/off turns it off)
)

// fileKeys are the NIXCACHE_ keys a config file may set.
var fileKeys = []string{EnvTo, EnvSecretKeyFile, EnvQueue, EnvSkipSignedBy, EnvUpstream, EnvUploadLogs}

// Config is the configuration shared by the post-build hook and the upload
// daemon. Nix runs the post-build hook with its own environment (the
// nix-daemon's, when one runs), so the same settings may also come from a
// config file in the KEY=VALUE format of systemd's EnvironmentFile=.
type Config struct {
	// To is the binary cache store URL (NIXCACHE_TO), e.g.
	// "s3://bucket?endpoint=...&compression=zstd" or "file:///srv/cache".
	To string
	// SecretKeyFile is a Nix secret key file (NIXCACHE_SECRET_KEY_FILE) as
	// made by `nix-store --generate-binary-cache-key`.
	SecretKeyFile string
	// Queue is the queue directory (NIXCACHE_QUEUE). Empty means the hook
	// uploads synchronously.
	Queue string
	// SkipSignedBy is NIXCACHE_SKIP_SIGNED_BY: upstream public keys
	// ("name:base64", or files holding one), separated by white space. A
	// path the store database records a valid signature for by one of them
	// is not uploaded (see cache.PushOptions.SkipSignedBy).
	SkipSignedBy string
	// Upstream is NIXCACHE_UPSTREAM: an upstream cache URL whose narinfos,
	// signed by a SkipSignedBy key, make a path not uploaded.
	Upstream string
	// UploadLogs is NIXCACHE_UPLOAD_LOGS as written ("" when unset); see
	// LogsEnabled.
	UploadLogs string
	// File is the config file that was read, or "" if none.
	File string
	// Env holds the file's other settings (such as AWS_ACCESS_KEY_ID), as
	// KEY=VALUE strings in file order. Load does not export them; see
	// Environ.
	Env []string
}

// Environ returns base (usually os.Environ()) followed by the file's other
// settings whose keys base does not already set: the environment for a
// child process that should see the file's credentials, with the
// process's own environment winning as it does for the NIXCACHE_ keys.
func (c Config) Environ(base []string) []string {
	set := make(map[string]bool, len(base))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	out := append([]string(nil), base...)
	for _, kv := range c.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			out = append(out, kv)
			set[k] = true
		}
	}
	return out
}

// LogsEnabled reports whether the upload daemon uploads build logs
// (NIXCACHE_UPLOAD_LOGS): yes unless set to 0, false, no or off (any
// case). Load reports any value but those and 1, true, yes, on.
func (c Config) LogsEnabled() bool {
	on, _ := parseBool(c.UploadLogs)
	return on
}

// parseBool reads a NIXCACHE_ boolean: "" (unset) is true.
func parseBool(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return true, fmt.Errorf("%w: %s is not a boolean (use 1/0, true/false, yes/no or on/off); using the default, on", ErrConfig, EnvUploadLogs)
}

// Load reads the configuration: the config file named by NIXCACHE_CONFIG
// (an error if it cannot be read), else DefaultFile when it exists; then the
// environment through getenv (usually os.Getenv), which overrides the file.
//
// Load always returns every setting it could read: the error (wrapping
// ErrConfig, one *LineError per bad line, joined) reports what it had to
// skip, so that a hook in queue mode can log the problem and queue anyway.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	file := getenv(EnvConfig)
	explicit := file != ""
	if !explicit {
		file = DefaultFile
	}
	data, err := regularfile.Read(file, MaxFileSize)
	switch {
	case err == nil:
		c.File = file
		settings, err := Parse(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", file, err))
		}
		for _, s := range settings {
			switch s.Key {
			case EnvTo:
				c.To = s.Value
			case EnvSecretKeyFile:
				c.SecretKeyFile = s.Value
			case EnvQueue:
				c.Queue = s.Value
			case EnvSkipSignedBy:
				c.SkipSignedBy = s.Value
			case EnvUpstream:
				c.Upstream = s.Value
			case EnvUploadLogs:
				c.UploadLogs = s.Value
			default:
				c.Env = append(c.Env, s.Key+"="+s.Value)
			}
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		errs = append(errs, &fileError{file: file, err: err})
	}
	if v := getenv(EnvTo); v != "" {
		c.To = v
	}
	if v := getenv(EnvSecretKeyFile); v != "" {
		c.SecretKeyFile = v
	}
	if v := getenv(EnvQueue); v != "" {
		c.Queue = v
	}
	if v := getenv(EnvSkipSignedBy); v != "" {
		c.SkipSignedBy = v
	}
	if v := getenv(EnvUpstream); v != "" {
		c.Upstream = v
	}
	if v := getenv(EnvUploadLogs); v != "" {
		c.UploadLogs = v
	}
	if _, err := parseBool(c.UploadLogs); err != nil {
		errs = append(errs, err)
	}
	return c, joinErrors(errs)
}

// fileError is a config file that could not be read.
type fileError struct {
	file string
	err  error
}

func (e *fileError) Error() string   { return "config: " + e.file + ": " + e.err.Error() }
func (e *fileError) Unwrap() []error { return []error{ErrConfig, e.err} }

// lineErrors joins errors on one line ("line 2: ...; line 5: ..."), so a
// log line stays one line; errors.Is and errors.As see each of them.
type lineErrors []error

func (e lineErrors) Error() string {
	msgs := make([]string, len(e))
	for i, err := range e {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e lineErrors) Unwrap() []error { return e }

func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return lineErrors(errs)
}

// Setting is one good KEY=VALUE line of a config file.
type Setting struct {
	Line       int
	Key, Value string
}

// LineError is a config file line that Parse skipped. Its message names the
// line number and, when it is a valid name, the key; never the value or
// the rest of the line, which may be a secret.
type LineError struct {
	Line   int
	Key    string // "" when the line has no valid key
	Reason string
}

func (e *LineError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Reason)
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
}

// Unwrap returns ErrConfig.
func (e *LineError) Unwrap() error { return ErrConfig }

// Parse parses KEY=VALUE lines as systemd's EnvironmentFile= does for the
// simple cases: blank lines and lines starting with # or ; are ignored, an
// optional "export " prefix is allowed, spaces around the key and value are
// trimmed, and a value wholly inside double or single quotes is unquoted.
// Keys must be shell identifiers; a key that starts with NIXCACHE_ but is
// not one this package knows is an error (so a typo does not silently turn
// signing off). Like systemd, Parse keeps the good lines: it returns them
// all, with the bad ones reported as *LineError values joined into the
// error.
func Parse(data []byte) ([]Setting, error) {
	var out []Setting
	var errs []error
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, MaxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch {
		case !ok:
			// Not even the key is shown: the line may be a bare secret.
			errs = append(errs, &LineError{Line: n, Reason: "not a KEY=VALUE line"})
			continue
		case !isIdent(key):
			errs = append(errs, &LineError{Line: n, Reason: "key is not a variable name (letters, digits, _)"})
			continue
		case strings.HasPrefix(key, "NIXCACHE_") && !slices.Contains(fileKeys, key):
			errs = append(errs, &LineError{Line: n, Key: key, Reason: "unknown key (known: " + strings.Join(fileKeys, ", ") + ")"})
			continue
		}
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		out = append(out, Setting{Line: n, Key: key, Value: val})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	return out, joinErrors(errs)
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
