package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

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
