package queue

import "github.com/nixcache/nixcache/cache/queue/queuedir"

// ErrConfig is wrapped by every error about the hook/daemon configuration:
// an unreadable or malformed config file, or an unknown NIXCACHE_ key.
var ErrConfig = queuedir.ErrConfig

// DefaultConfigFile is read when NIXCACHE_CONFIG is unset and the file exists.
const DefaultConfigFile = queuedir.DefaultConfigFile

// Configuration keys, as environment variables and as config file keys.
const (
	EnvTo            = queuedir.EnvTo            // binary cache store URL
	EnvSecretKeyFile = queuedir.EnvSecretKeyFile // Nix secret key file to sign with
	EnvQueue         = queuedir.EnvQueue         // queue directory; unset means synchronous upload
	EnvConfig        = queuedir.EnvConfig        // config file path
)

// Config is the configuration shared by the post-build hook and the upload
// daemon; see queuedir.Config.
type Config = queuedir.Config

// LoadConfig reads the configuration from the config file and the
// environment; see queuedir.LoadConfig.
func LoadConfig(getenv func(string) string) (Config, error) { return queuedir.LoadConfig(getenv) }

// ParseConfig parses KEY=VALUE lines as systemd's EnvironmentFile= does;
// see queuedir.ParseConfig.
func ParseConfig(data []byte) ([][2]string, error) { return queuedir.ParseConfig(data) }
