// Package config loads the gateway's configuration from environment
// variables and an optional YAML file, validates it, and reads the secrets it
// names. Load is pure: it touches no globals and reads the environment only
// through the function it is given.
package config

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

// parser collects every problem so that one run of the process reports all
// of them, one line each.
type parser struct {
	values map[string]string
	errs   []error
}

func (p *parser) fail(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: "+format, append([]any{name}, args...)...))
}

func parse(values map[string]string) (*Config, error) {
	c := Default()
	p := &parser{values: values}

	p.addr(EnvListenAddr, &c.ListenAddr)
	p.addr(EnvAdminAddr, &c.AdminAddr)
	if c.ListenAddr == c.AdminAddr && !strings.HasSuffix(c.ListenAddr, ":0") {
		p.fail(EnvAdminAddr, "must differ from %s", EnvListenAddr)
	}
	p.baseURL(&c)
	c.APIKey, c.APIKeyFile = p.secret(EnvAPIKey, EnvAPIKeyFile)
	c.AccountID, c.AccountIDFile = p.secret(EnvAccountID, EnvAccountIDFile)

	p.duration(EnvUpstreamTimeout, &c.UpstreamTimeout, false)
	p.duration(EnvCacheTTL, &c.CacheTTL, false)
	p.duration(EnvNegativeCacheTTL, &c.NegativeCacheTTL, true)
	p.duration(EnvStaleTTL, &c.StaleTTL, true)
	p.duration(EnvDrainDelay, &c.DrainDelay, true)
	p.duration(EnvShutdownTimeout, &c.ShutdownTimeout, false)
	p.integer(EnvCacheMaxEntries, &c.CacheMaxEntries, 1)
	p.integer(EnvRateBurst, &c.RateBurst, 1)
	p.integer(EnvMaxInFlight, &c.MaxInFlight, 1)
	p.integer(EnvUpstreamMaxFlight, &c.UpstreamMaxInFlight, 1)
	p.rate(EnvRateLimit, &c.RateLimit)
	p.rate(EnvUpstreamRateLimit, &c.UpstreamRateLimit)

	c.CallersFile = values[EnvCallersFile]
	if file, ok := values[EnvAdminTokenFile]; ok {
		c.AdminTokenFile = file
		s, err := ReadSecretFile(file)
		if err != nil {
			p.fail(EnvAdminTokenFile, "%v", err)
		}
		c.AdminToken = s
	}
	p.trustedProxies(&c)
	p.redisURL(&c)
	p.logLevel(&c)
	p.jwt(&c)

	if err := errors.Join(p.errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

func (p *parser) addr(name string, dst *string) {
	v, ok := p.values[name]
	if !ok {
		return
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.fail(name, "invalid address %q: want host:port or :port", v)
		return
	}
	n, err := strconv.Atoi(port)
	switch {
	case err != nil:
		p.fail(name, "invalid port %q", port)
		return
	case n == 0:
		// Port 0 asks the system for a free port, which tests use; the
		// address it got is logged at start.
	case n < 1 || n > 65535:
		p.fail(name, "port %d out of range: want 1-65535", n)
		return
	}
	*dst = v
}

func (p *parser) baseURL(c *Config) {
	v, ok := p.values[EnvBaseURL]
	if !ok {
		return
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		// The parse error quotes the input, which may hold a password.
		p.fail(EnvBaseURL, "not a valid URL")
	case u.User != nil:
		p.fail(EnvBaseURL, "must not contain user information")
	case u.Scheme != "http" && u.Scheme != "https":
		p.fail(EnvBaseURL, "scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		p.fail(EnvBaseURL, "has no host")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		p.fail(EnvBaseURL, "must not have a query or fragment")
	default:
		u.Path = strings.TrimRight(u.Path, "/")
		u.RawPath = ""
		c.BaseURL = u
	}
}

// secret reads a credential from its variable or from the file its _FILE
// variable names; exactly one of the two must be set.
func (p *parser) secret(name, fileName string) (Secret, string) {
	v, hasValue := p.values[name]
	file, hasFile := p.values[fileName]
	switch {
	case hasValue && hasFile:
		p.fail(name, "set only one of %s and %s", name, fileName)
	case hasValue:
		s, err := ParseSecret([]byte(v))
		if err != nil {
			p.fail(name, "%v", err)
		}
		return s, ""
	case hasFile:
		s, err := ReadSecretFile(file)
		if err != nil {
			p.fail(fileName, "%v", err)
			return "", file
		}
		return s, file
	default:
		p.fail(name, "is required (or %s)", fileName)
	}
	return "", ""
}

// ReadSecretFile reads a secret mounted as a file; see ParseSecret. Errors
// name the file and never its content.
func ReadSecretFile(path string) (Secret, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading secret file: %w", err)
	}
	s, err := ParseSecret(data)
	if err != nil {
		return "", fmt.Errorf("secret file %s %w", path, err)
	}
	return s, nil
}

// ParseSecret reads a credential, from a secret file's content or an
// environment variable: surrounding white space and a leading UTF-8
// byte-order mark are stripped, and what is left must be visible ASCII,
// as an HTTP header carries it unchanged. The error for anything else
// (empty, several lines, white space inside, control bytes such as NUL,
// non-ASCII) says which, and never quotes the content.
func ParseSecret(data []byte) (Secret, error) {
	data = bytes.TrimSpace(data)
	data = bytes.TrimSpace(bytes.TrimPrefix(data, utf8BOM))
	if len(data) == 0 {
		return "", errors.New("is empty")
	}
	if bytes.ContainsAny(data, "\r\n") {
		return "", errors.New("holds more than one line")
	}
	for _, c := range data {
		switch {
		case c == ' ' || c == '\t':
			return "", errors.New("holds white space inside")
		case c < ' ' || c == 0x7f:
			return "", errors.New("holds a control character")
		case c > 0x7f:
			return "", errors.New("holds a non-ASCII character")
		}
	}
	return Secret(data), nil
}

var utf8BOM = []byte("\ufeff")

// maxDuration bounds every duration setting: a year is more than any of
// them needs, and a larger value is a typo.
const maxDuration = 8760 * time.Hour

func (p *parser) duration(name string, dst *time.Duration, zeroOK bool) {
	v, ok := p.values[name]
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		p.fail(name, "invalid duration %q: want Go syntax such as 250ms, 5s or 15m", v)
	case d < 0 || (d == 0 && !zeroOK):
		p.fail(name, "must be positive, got %q", v)
	case d > maxDuration:
		p.fail(name, "must be at most 8760h, got %q", v)
	default:
		*dst = d
	}
}

func (p *parser) integer(name string, dst *int, min int) {
	v, ok := p.values[name]
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		p.fail(name, "invalid integer %q", v)
	case n < min:
		p.fail(name, "must be at least %d, got %d", min, n)
	default:
		*dst = n
	}
}

func (p *parser) rate(name string, dst *float64) {
	v, ok := p.values[name]
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(v, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
		p.fail(name, "invalid number %q", v)
	case f < 0:
		p.fail(name, "must not be negative, got %q", v)
	default:
		*dst = f
	}
}

func (p *parser) trustedProxies(c *Config) {
	v, ok := p.values[EnvTrustedProxies]
	if !ok {
		return
	}
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			if ip := net.ParseIP(s); ip != nil {
				bits := 128
				if ip.To4() != nil {
					ip, bits = ip.To4(), 32
				}
				c.TrustedProxies = append(c.TrustedProxies, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
				continue
			}
		}
		_, n, err := net.ParseCIDR(s)
		if err != nil {
			p.fail(EnvTrustedProxies, "invalid CIDR %q", s)
			continue
		}
		c.TrustedProxies = append(c.TrustedProxies, n)
	}
}

// redisURL reads GATEWAY_REDIS_URL or the file GATEWAY_REDIS_URL_FILE
// names; at most one of the two may be set.
func (p *parser) redisURL(c *Config) {
	v, hasValue := p.values[EnvRedisURL]
	file, hasFile := p.values[EnvRedisURLFile]
	switch {
	case hasValue && hasFile:
		p.fail(EnvRedisURL, "set only one of %s and %s", EnvRedisURL, EnvRedisURLFile)
	case hasValue:
		if err := checkRedisURL(v); err != nil {
			p.fail(EnvRedisURL, "%v", err)
			return
		}
		c.RedisURL = Secret(v)
	case hasFile:
		data, err := os.ReadFile(file)
		if err != nil {
			p.fail(EnvRedisURLFile, "reading secret file: %v", err)
			return
		}
		s, err := ParseRedisURL(data)
		if err != nil {
			p.fail(EnvRedisURLFile, "secret file %s: %v", file, err)
			return
		}
		c.RedisURL, c.RedisURLFile = s, file
	}
}

// ParseRedisURL reads a Redis URL from a secret file's content, as
// ParseSecret reads a secret, and checks its scheme. Its errors never
// quote the URL, which may hold a password.
func ParseRedisURL(data []byte) (Secret, error) {
	s, err := ParseSecret(data)
	if err != nil {
		return "", err
	}
	if err := checkRedisURL(s.Reveal()); err != nil {
		return "", err
	}
	return s, nil
}

func checkRedisURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		// The parse error quotes the input, password included.
		return errors.New("not a valid URL")
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
		return nil
	}
	return fmt.Errorf("scheme must be redis, rediss or unix, got %q", u.Scheme)
}

func (p *parser) jwt(c *Config) {
	c.JWTIssuer = p.values[EnvJWTIssuer]
	c.JWTJWKSURL = p.values[EnvJWTJWKSURL]
	c.JWTCAFile = p.values[EnvJWTCAFile]
	c.JWTAuthTokenFile = p.values[EnvJWTAuthTokenFile]
	if v, ok := p.values[EnvJWTAudience]; ok {
		c.JWTAudience = v
	}
	if c.JWTIssuer == "" {
		for _, name := range []string{EnvJWTJWKSURL, EnvJWTCAFile, EnvJWTAuthTokenFile} {
			if _, ok := p.values[name]; ok {
				p.fail(name, "is set without %s", EnvJWTIssuer)
			}
		}
		return
	}
	p.absoluteURL(EnvJWTIssuer, c.JWTIssuer)
	if c.JWTJWKSURL != "" {
		p.absoluteURL(EnvJWTJWKSURL, c.JWTJWKSURL)
	}
	if c.JWTCAFile != "" {
		data, err := os.ReadFile(c.JWTCAFile)
		switch {
		case err != nil:
			p.fail(EnvJWTCAFile, "reading CA file: %v", err)
		case !x509.NewCertPool().AppendCertsFromPEM(data):
			p.fail(EnvJWTCAFile, "%s holds no PEM certificate", c.JWTCAFile)
		}
	}
	if c.JWTAuthTokenFile != "" {
		if _, err := ReadSecretFile(c.JWTAuthTokenFile); err != nil {
			p.fail(EnvJWTAuthTokenFile, "%v", err)
		}
	}
}

// absoluteURL checks that v is an absolute http or https URL without user
// information, query or fragment. Its errors do not quote v.
func (p *parser) absoluteURL(name, v string) {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		p.fail(name, "not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		p.fail(name, "scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		p.fail(name, "has no host")
	case u.User != nil:
		p.fail(name, "must not contain user information")
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		p.fail(name, "must not have a query or fragment")
	}
}

func (p *parser) logLevel(c *Config) {
	v, ok := p.values[EnvLogLevel]
	if !ok {
		return
	}
	switch strings.ToLower(v) {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "info":
		c.LogLevel = slog.LevelInfo
	case "warn", "warning":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		p.fail(EnvLogLevel, "unknown level %q: want debug, info, warn or error", v)
	}
}
