package queuedir

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrConfig is wrapped by every error about the hook/daemon configuration:
// an unreadable or malformed config file, or an unknown NIXCACHE_ key.
var ErrConfig = errors.New("queuedir: bad configuration")

// DefaultConfigFile is read when NIXCACHE_CONFIG is unset and the file exists.
const DefaultConfigFile = "/etc/nixcache/hook.conf"

// Configuration keys, as environment variables and as config file keys.
const (
	EnvTo            = "NIXCACHE_TO"              // binary cache store URL
	EnvSecretKeyFile = "NIXCACHE_SECRET_KEY_FILE" // Nix secret key file to sign with
	EnvQueue         = "NIXCACHE_QUEUE"           // queue directory; unset means synchronous upload
	EnvConfig        = "NIXCACHE_CONFIG"          // config file path
)

// Config is the configuration shared by the post-build hook and the upload
// daemon. Nix runs the post-build hook with its own environment (the
// nix-daemon's, when one runs), so the same settings may also come from a
// config file in the KEY=VALUE format of systemd's EnvironmentFile=.
type Config struct {
	// To is the binary cache store URL (NIXCACHE_TO), e.g.
	// "s3://bucket?endpoint=...&compression=zstd" or "file:///srv/cache".
	To string
	// SecretKeyFile is a Nix secret key file (NIXCACHE_SECRET_KEY_FILE) as
	// made by `nix-store --generate-binary-cache-key`; it is added to To
	// as a secret-key parameter.
	SecretKeyFile string
	// Queue is the queue directory (NIXCACHE_QUEUE). Empty means the hook
	// uploads synchronously.
	Queue string
	// File is the config file that was read, or "" if none.
	File string
}

// StoreURL returns To with SecretKeyFile added as a secret-key parameter.
func (c Config) StoreURL() string {
	if c.SecretKeyFile == "" || c.To == "" {
		return c.To
	}
	sep := "?"
	if strings.Contains(c.To, "?") {
		sep = "&"
	}
	return c.To + sep + "secret-key=" + queryValueEscaper.Replace(c.SecretKeyFile)
}

// queryValueEscaper escapes what would end or garble a store URL parameter
// value; the URL parser decodes %XX.
var queryValueEscaper = strings.NewReplacer("%", "%25", "&", "%26", "#", "%23", " ", "%20")

// LoadConfig reads the configuration: the config file named by
// NIXCACHE_CONFIG (an error if it cannot be read), else DefaultConfigFile
// when it exists; then the environment, which overrides the file. Keys in
// the file other than the NIXCACHE_ ones (such as AWS_ACCESS_KEY_ID) are
// exported to the process environment unless already set there, so that S3
// credentials can live in the file too. getenv is usually os.Getenv.
//
// On a config file error LoadConfig still returns the settings from the
// environment along with the error, so that a hook in queue mode can log
// the problem and queue anyway.
func LoadConfig(getenv func(string) string) (Config, error) {
	var c Config
	file := getenv(EnvConfig)
	explicit := file != ""
	if !explicit {
		file = DefaultConfigFile
	}
	var cfgErr error
	data, err := os.ReadFile(file)
	switch {
	case err == nil:
		c.File = file
		kv, err := ParseConfig(data)
		if err != nil {
			cfgErr = fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
		}
		for _, e := range kv {
			switch e[0] {
			case EnvTo:
				c.To = e[1]
			case EnvSecretKeyFile:
				c.SecretKeyFile = e[1]
			case EnvQueue:
				c.Queue = e[1]
			default:
				if _, set := os.LookupEnv(e[0]); !set {
					_ = os.Setenv(e[0], e[1])
				}
			}
		}
	case explicit || !errors.Is(err, fs.ErrNotExist):
		cfgErr = fmt.Errorf("%w: config file: %w", ErrConfig, err)
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
	return c, cfgErr
}

// ParseConfig parses KEY=VALUE lines as systemd's EnvironmentFile= does for
// the simple cases: blank lines and lines starting with # or ; are ignored,
// an optional "export " prefix is allowed, spaces around the key and value
// are trimmed, and a value wholly inside double or single quotes is
// unquoted. Keys must be shell identifiers; a key that starts with
// NIXCACHE_ but is not one this package knows is an error (so a typo does
// not silently disable signing). Errors name the line number.
func ParseConfig(data []byte) ([][2]string, error) {
	var out [][2]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: no '=' in %q", n, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !isIdent(key) {
			return nil, fmt.Errorf("line %d: invalid key %q", n, key)
		}
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		}
		if strings.HasPrefix(key, "NIXCACHE_") {
			switch key {
			case EnvTo, EnvSecretKeyFile, EnvQueue:
			default:
				return nil, fmt.Errorf("line %d: unknown key %s (known: %s, %s, %s)", n, key, EnvTo, EnvSecretKeyFile, EnvQueue)
			}
		}
		out = append(out, [2]string{key, val})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
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
