// Package config loads the gateway's configuration from environment
// variables and an optional YAML file, validates it, and reads the secrets it
// names. Load is pure: it touches no globals and reads the environment only
// through the function it is given.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"
)

// The names of the settings. They are the environment variables of the
// contract, and the keys of the optional YAML file.
const (
	EnvConfig            = "GATEWAY_CONFIG"
	EnvListenAddr        = "GATEWAY_LISTEN_ADDR"
	EnvAdminAddr         = "GATEWAY_ADMIN_ADDR"
	EnvBaseURL           = "BLUETAPE_BASE_URL"
	EnvAPIKey            = "BLUETAPE_API_KEY"
	EnvAPIKeyFile        = "BLUETAPE_API_KEY_FILE"
	EnvAccountID         = "BLUETAPE_ACCOUNT_ID"
	EnvAccountIDFile     = "BLUETAPE_ACCOUNT_ID_FILE"
	EnvUpstreamTimeout   = "GATEWAY_UPSTREAM_TIMEOUT"
	EnvCacheTTL          = "GATEWAY_CACHE_TTL"
	EnvNegativeCacheTTL  = "GATEWAY_NEGATIVE_CACHE_TTL"
	EnvStaleTTL          = "GATEWAY_STALE_TTL"
	EnvCacheMaxEntries   = "GATEWAY_CACHE_MAX_ENTRIES"
	EnvRateLimit         = "GATEWAY_RATE_LIMIT"
	EnvRateBurst         = "GATEWAY_RATE_BURST"
	EnvUpstreamRateLimit = "GATEWAY_UPSTREAM_RATE_LIMIT"
	EnvCallersFile       = "GATEWAY_CALLERS_FILE"
	EnvTrustedProxies    = "GATEWAY_TRUSTED_PROXIES"
	EnvRedisURL          = "GATEWAY_REDIS_URL"
	EnvRedisURLFile      = "GATEWAY_REDIS_URL_FILE"
	EnvLogLevel          = "GATEWAY_LOG_LEVEL"
	EnvDrainDelay        = "GATEWAY_DRAIN_DELAY"
	EnvShutdownTimeout   = "GATEWAY_SHUTDOWN_TIMEOUT"
	EnvMaxInFlight       = "GATEWAY_MAX_IN_FLIGHT"
	EnvUpstreamMaxFlight = "GATEWAY_UPSTREAM_MAX_IN_FLIGHT"
	EnvAdminTokenFile    = "GATEWAY_ADMIN_TOKEN_FILE"
	EnvJWTIssuer         = "GATEWAY_JWT_ISSUER"
	EnvJWTAudience       = "GATEWAY_JWT_AUDIENCE"
	EnvJWTJWKSURL        = "GATEWAY_JWT_JWKS_URL"
	EnvJWTCAFile         = "GATEWAY_JWT_CA_FILE"
	EnvJWTAuthTokenFile  = "GATEWAY_JWT_AUTH_TOKEN_FILE"
)

// Names returns every environment variable the gateway reads.
func Names() []string {
	return []string{
		EnvConfig, EnvListenAddr, EnvAdminAddr, EnvBaseURL,
		EnvAPIKey, EnvAPIKeyFile, EnvAccountID, EnvAccountIDFile,
		EnvUpstreamTimeout, EnvCacheTTL, EnvNegativeCacheTTL, EnvStaleTTL,
		EnvCacheMaxEntries, EnvRateLimit, EnvRateBurst, EnvUpstreamRateLimit,
		EnvCallersFile, EnvTrustedProxies, EnvRedisURL, EnvLogLevel,
		EnvDrainDelay, EnvShutdownTimeout, EnvMaxInFlight,
		EnvUpstreamMaxFlight, EnvAdminTokenFile,
		EnvJWTIssuer, EnvJWTAudience, EnvJWTJWKSURL, EnvJWTCAFile, EnvJWTAuthTokenFile,
		EnvRedisURLFile,
	}
}

// Config is the gateway's whole configuration, parsed and validated.
type Config struct {
	ListenAddr string
	AdminAddr  string

	// BaseURL is the upstream base, without a trailing slash.
	BaseURL *url.URL
	// APIKey and AccountID are the credentials sent upstream. When they
	// come from files, APIKeyFile and AccountIDFile name those files, and
	// the values here are what the files held at Load.
	APIKey        Secret
	APIKeyFile    string
	AccountID     Secret
	AccountIDFile string

	UpstreamTimeout   time.Duration
	CacheTTL          time.Duration
	NegativeCacheTTL  time.Duration
	StaleTTL          time.Duration
	CacheMaxEntries   int
	RateLimit         float64
	RateBurst         int
	UpstreamRateLimit float64

	CallersFile    string
	TrustedProxies []*net.IPNet
	// RedisURL may hold a password, so it is a Secret too. When it comes
	// from a file, RedisURLFile names that file, which main watches.
	RedisURL     Secret
	RedisURLFile string

	LogLevel        slog.Level
	DrainDelay      time.Duration
	ShutdownTimeout time.Duration
	// MaxInFlight caps concurrent API requests; over it the gateway
	// answers 503 at once.
	MaxInFlight int
	// UpstreamMaxInFlight caps the upstream calls in progress at once,
	// those kept running for callers that went away included.
	UpstreamMaxInFlight int

	// AdminToken is the bearer token admin actions require, read from
	// AdminTokenFile at Load. Empty when AdminTokenFile is unset: then the
	// admin actions are not served.
	AdminToken     Secret
	AdminTokenFile string

	// JWTIssuer, when set, is the issuer whose tokens authenticate
	// callers; a token's iss must equal it exactly. JWTAudience is the aud
	// a token must carry. JWTJWKSURL, when set, replaces discovery of the
	// key set's URL. JWTCAFile names the CA bundle trusted for discovery
	// and keys (system roots when empty), and JWTAuthTokenFile a bearer
	// token sent with those requests.
	JWTIssuer        string
	JWTAudience      string
	JWTJWKSURL       string
	JWTCAFile        string
	JWTAuthTokenFile string

	// set holds the names of the settings given a value, by the YAML file
	// or the environment; see IsSet.
	set map[string]bool
}

// IsSet reports whether the setting name was given a value, in the YAML
// file or the environment, rather than left to its default.
func (c *Config) IsSet(name string) bool { return c.set[name] }

// Default returns the configuration used where nothing is set. It has no
// credentials, so it does not validate on its own.
func Default() Config {
	u, _ := url.Parse("https://api.bluetape.com/genericBthubService")
	return Config{
		ListenAddr:       ":8080",
		AdminAddr:        ":9090",
		BaseURL:          u,
		UpstreamTimeout:  5 * time.Second,
		CacheTTL:         15 * time.Minute,
		NegativeCacheTTL: 30 * time.Second,
		StaleTTL:         24 * time.Hour,
		CacheMaxEntries:  100000,
		RateLimit:        50,
		RateBurst:        100,
		LogLevel:         slog.LevelInfo,
		ShutdownTimeout:  20 * time.Second,
		MaxInFlight:      4096,

		UpstreamMaxInFlight: 128,
		JWTAudience:         "bluetape-gateway",
	}
}

// Load builds the configuration: defaults, then the YAML file (file, or
// GATEWAY_CONFIG when file is empty), then the environment, which wins.
// getenv is how the environment is read (os.Getenv in production).
// Each problem found is one line of the returned error, naming the setting;
// no secret value is ever part of an error.
func Load(getenv func(string) string, file string) (*Config, error) {
	if file == "" {
		file = getenv(EnvConfig)
	}
	values := map[string]string{}
	if file != "" {
		fromFile, err := readYAML(file)
		if err != nil {
			return nil, err
		}
		values = fromFile
	}
	for _, name := range Names() {
		if v, ok := lookup(getenv, name); ok {
			values[name] = v
		}
	}
	c, err := parse(values)
	if err != nil {
		return nil, err
	}
	c.set = make(map[string]bool, len(values))
	for name := range values {
		c.set[name] = true
	}
	return c, nil
}

// lookup treats an empty variable as unset, as Kubernetes and shells often
// export empty values for optional settings.
func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

var yamlLine = regexp.MustCompile(`line \d+`)

func readYAML(file string) (map[string]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: reading config file: %w", EnvConfig, err)
	}
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		// yaml.v3 quotes the offending value, which may be a secret when
		// the wrong file is named; only its position is passed on.
		where := ""
		if m := yamlLine.FindString(err.Error()); m != "" {
			where = " (" + m + ")"
		}
		return nil, fmt.Errorf("%s: parsing %s: not a YAML mapping of settings to values%s", EnvConfig, file, where)
	}
	out := make(map[string]string, len(raw))
	for k, n := range raw {
		if !slices.Contains(Names(), k) || k == EnvConfig {
			return nil, fmt.Errorf("%s: %s: unknown setting %q", EnvConfig, file, k)
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%s: %s: %s must be a single value", EnvConfig, file, k)
		}
		out[k] = n.Value
	}
	return out, nil
}
