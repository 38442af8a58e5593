package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

const testKey = "k-3b9f1d2e8c7a6b5d4e3f2a1b0c9d8e7f"

// env returns a getenv over m, with the two credentials set unless m
// sets them (an empty value unsets).
func env(m map[string]string) func(string) string {
	full := map[string]string{EnvAPIKey: testKey, EnvAccountID: "acct-1"}
	for k, v := range m {
		full[k] = v
	}
	return func(k string) string { return full[k] }
}

// only is an environment holding the one variable name.
func only(name, value string) func(string) string {
	return func(k string) string {
		if k == name {
			return value
		}
		return ""
	}
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil), "")
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if c.ListenAddr != ":8080" || c.AdminAddr != ":9090" ||
		c.BaseURL.String() != "https://api.bluetape.com/genericBthubService" ||
		c.UpstreamTimeout != 5*time.Second || c.CacheTTL != 15*time.Minute ||
		c.NegativeCacheTTL != 30*time.Second || c.StaleTTL != 24*time.Hour ||
		c.CacheMaxEntries != 100000 || c.RateLimit != 50 || c.RateBurst != 100 ||
		c.UpstreamRateLimit != 0 || c.CallersFile != "" || c.TrustedProxies != nil ||
		c.RedisURL != "" || c.LogLevel != slog.LevelInfo || c.DrainDelay != 0 ||
		c.ShutdownTimeout != 20*time.Second || c.MaxInFlight != want.MaxInFlight ||
		c.UpstreamMaxInFlight != 128 || c.AdminToken != "" || c.AdminTokenFile != "" ||
		c.JWTIssuer != "" || c.JWTAudience != "bluetape-gateway" || c.JWTJWKSURL != "" ||
		c.JWTCAFile != "" || c.JWTAuthTokenFile != "" {
		t.Errorf("defaults differ from the contract: %+v", c)
	}
	if c.APIKey.Reveal() != testKey || c.AccountID.Reveal() != "acct-1" {
		t.Error("credentials not taken from the environment")
	}
}

func TestEnvironment(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvListenAddr: "127.0.0.1:8081", EnvAdminAddr: ":9091",
		EnvBaseURL:         "http://bluetape.internal:8000/base/",
		EnvUpstreamTimeout: "250ms", EnvCacheTTL: "1h", EnvNegativeCacheTTL: "0",
		EnvStaleTTL: "0s", EnvCacheMaxEntries: "10", EnvRateLimit: "2.5", EnvRateBurst: "3",
		EnvUpstreamRateLimit: "100", EnvCallersFile: "/etc/callers.yaml",
		EnvTrustedProxies: "10.0.0.0/8,::1", EnvRedisURL: "rediss://:pw@redis:6380/0",
		EnvLogLevel: "WARN", EnvDrainDelay: "10s", EnvShutdownTimeout: "3s", EnvMaxInFlight: "7",
		EnvUpstreamMaxFlight: "16", EnvAdminTokenFile: "testdata/admin-token",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:8081" || c.AdminAddr != ":9091" ||
		c.BaseURL.String() != "http://bluetape.internal:8000/base" ||
		c.UpstreamTimeout != 250*time.Millisecond || c.CacheTTL != time.Hour ||
		c.NegativeCacheTTL != 0 || c.StaleTTL != 0 || c.CacheMaxEntries != 10 ||
		c.RateLimit != 2.5 || c.RateBurst != 3 || c.UpstreamRateLimit != 100 ||
		c.CallersFile != "/etc/callers.yaml" || len(c.TrustedProxies) != 2 ||
		c.TrustedProxies[1].String() != "::1/128" || c.RedisURL.Reveal() != "rediss://:pw@redis:6380/0" ||
		c.LogLevel != slog.LevelWarn || c.DrainDelay != 10*time.Second ||
		c.ShutdownTimeout != 3*time.Second || c.MaxInFlight != 7 || c.UpstreamMaxInFlight != 16 ||
		c.AdminToken.Reveal() != "admin-token-from-a-file" || c.AdminTokenFile != "testdata/admin-token" {
		t.Errorf("environment not applied: %+v", c)
	}
}

func TestFileThenEnvironment(t *testing.T) {
	c, err := Load(only(EnvRateLimit, "99"), "testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheTTL != 10*time.Minute || c.RateLimit != 99 || c.APIKey.Reveal() != "from-file-key" || len(c.TrustedProxies) != 2 {
		t.Errorf("file then environment: %+v", c)
	}
	// GATEWAY_CONFIG names the file when no flag does.
	c, err = Load(only(EnvConfig, "testdata/good.yaml"), "")
	if err != nil || c.CacheTTL != 10*time.Minute {
		t.Errorf("GATEWAY_CONFIG: %v, %+v", err, c)
	}
}

func TestJWT(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvJWTIssuer: "http://127.0.0.1:5556/dex", EnvJWTAudience: "gw",
		EnvJWTJWKSURL: "http://127.0.0.1:5556/dex/keys", EnvJWTCAFile: "testdata/ca.crt",
		EnvJWTAuthTokenFile: "testdata/jwt-token",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTIssuer != "http://127.0.0.1:5556/dex" || c.JWTAudience != "gw" ||
		c.JWTJWKSURL != "http://127.0.0.1:5556/dex/keys" || c.JWTCAFile != "testdata/ca.crt" ||
		c.JWTAuthTokenFile != "testdata/jwt-token" {
		t.Errorf("JWT settings not applied: %+v", c)
	}
	// The YAML file sets them like the other keys; the environment wins.
	c, err = Load(only(EnvJWTAudience, "from-env"), "testdata/jwt.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.JWTIssuer != "https://kubernetes.default.svc.cluster.local" || c.JWTAudience != "from-env" ||
		c.JWTCAFile != "testdata/ca.crt" || c.JWTAuthTokenFile != "testdata/jwt-token" || c.JWTJWKSURL != "" {
		t.Errorf("JWT settings from the file: %+v", c)
	}
}

func TestSecretFiles(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvAPIKey: "", EnvAPIKeyFile: "testdata/api-key",
		EnvAccountID: "", EnvAccountIDFile: "testdata/account-id",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKey.Reveal() != "the-key-from-a-file" || c.AccountID.Reveal() != "acct-from-file" {
		t.Errorf("secret files read as %q, %q", c.APIKey.Reveal(), c.AccountID.Reveal())
	}
	if c.APIKeyFile != "testdata/api-key" {
		t.Errorf("APIKeyFile = %q", c.APIKeyFile)
	}
}

// TestBadConfig pins the error of each bad setting: one line, naming the
// setting, never holding a secret.
func TestBadConfig(t *testing.T) {
	cases := []struct {
		env  map[string]string
		file string
		want string
	}{
		{env: map[string]string{EnvAPIKey: ""}, want: "BLUETAPE_API_KEY: is required (or BLUETAPE_API_KEY_FILE)"},
		{env: map[string]string{EnvAccountID: ""}, want: "BLUETAPE_ACCOUNT_ID: is required (or BLUETAPE_ACCOUNT_ID_FILE)"},
		{env: map[string]string{EnvAPIKeyFile: "testdata/api-key"}, want: "BLUETAPE_API_KEY: set only one of BLUETAPE_API_KEY and BLUETAPE_API_KEY_FILE"},
		{env: map[string]string{EnvAPIKey: "", EnvAPIKeyFile: "testdata/nope"}, want: "BLUETAPE_API_KEY_FILE: reading secret file: open testdata/nope: no such file or directory"},
		{env: map[string]string{EnvAPIKey: "", EnvAPIKeyFile: "testdata/empty-secret"}, want: "BLUETAPE_API_KEY_FILE: secret file testdata/empty-secret is empty"},
		{env: map[string]string{EnvAccountID: "", EnvAccountIDFile: "testdata/two-lines"}, want: "BLUETAPE_ACCOUNT_ID_FILE: secret file testdata/two-lines holds more than one line"},
		{env: map[string]string{EnvCacheTTL: "15"}, want: `GATEWAY_CACHE_TTL: invalid duration "15": want Go syntax such as 250ms, 5s or 15m`},
		{env: map[string]string{EnvUpstreamTimeout: "0s"}, want: `GATEWAY_UPSTREAM_TIMEOUT: must be positive, got "0s"`},
		{env: map[string]string{EnvStaleTTL: "-1m"}, want: `GATEWAY_STALE_TTL: must be positive, got "-1m"`},
		{env: map[string]string{EnvCacheMaxEntries: "lots"}, want: `GATEWAY_CACHE_MAX_ENTRIES: invalid integer "lots"`},
		{env: map[string]string{EnvCacheMaxEntries: "0"}, want: `GATEWAY_CACHE_MAX_ENTRIES: must be at least 1, got 0`},
		{env: map[string]string{EnvRateLimit: "-1"}, want: `GATEWAY_RATE_LIMIT: must not be negative, got "-1"`},
		{env: map[string]string{EnvRateLimit: "NaN"}, want: `GATEWAY_RATE_LIMIT: invalid number "NaN"`},
		{env: map[string]string{EnvBaseURL: "ftp://x"}, want: `BLUETAPE_BASE_URL: scheme must be http or https, got "ftp"`},
		{env: map[string]string{EnvBaseURL: "https://user:hunter2@x"}, want: `BLUETAPE_BASE_URL: must not contain user information`},
		{env: map[string]string{EnvBaseURL: "https://x/a?b=c"}, want: `BLUETAPE_BASE_URL: must not have a query or fragment`},
		{env: map[string]string{EnvBaseURL: "http://%zz"}, want: `BLUETAPE_BASE_URL: not a valid URL`},
		{env: map[string]string{EnvBaseURL: "/relative"}, want: `BLUETAPE_BASE_URL: scheme must be http or https, got ""`},
		{env: map[string]string{EnvListenAddr: "8080"}, want: `GATEWAY_LISTEN_ADDR: invalid address "8080": want host:port or :port`},
		{env: map[string]string{EnvAdminAddr: ":8080"}, want: `GATEWAY_ADMIN_ADDR: must differ from GATEWAY_LISTEN_ADDR`},
		{env: map[string]string{EnvTrustedProxies: "10.0.0.0/33"}, want: `GATEWAY_TRUSTED_PROXIES: invalid CIDR "10.0.0.0/33"`},
		{env: map[string]string{EnvRedisURL: "http://:secretpw@redis"}, want: `GATEWAY_REDIS_URL: scheme must be redis, rediss or unix, got "http"`},
		{env: map[string]string{EnvRedisURL: "redis://r", EnvRedisURLFile: "testdata/redis-url"}, want: `GATEWAY_REDIS_URL: set only one of GATEWAY_REDIS_URL and GATEWAY_REDIS_URL_FILE`},
		{env: map[string]string{EnvRedisURLFile: "testdata/redis-url-http"}, want: `GATEWAY_REDIS_URL_FILE: secret file testdata/redis-url-http: scheme must be redis, rediss or unix, got "http"`},
		{env: map[string]string{EnvRedisURLFile: "testdata/two-lines"}, want: `GATEWAY_REDIS_URL_FILE: secret file testdata/two-lines: holds more than one line`},
		{env: map[string]string{EnvRedisURLFile: "testdata/nope"}, want: `GATEWAY_REDIS_URL_FILE: reading secret file: open testdata/nope: no such file or directory`},
		{env: map[string]string{EnvLogLevel: "loud"}, want: `GATEWAY_LOG_LEVEL: unknown level "loud": want debug, info, warn or error`},
		{env: map[string]string{EnvJWTIssuer: "kubernetes.default.svc"}, want: `GATEWAY_JWT_ISSUER: scheme must be http or https, got ""`},
		{env: map[string]string{EnvJWTIssuer: "https://"}, want: `GATEWAY_JWT_ISSUER: has no host`},
		{env: map[string]string{EnvJWTIssuer: "https://u:hunter2@issuer"}, want: `GATEWAY_JWT_ISSUER: must not contain user information`},
		{env: map[string]string{EnvJWTIssuer: "https://issuer/?x=1"}, want: `GATEWAY_JWT_ISSUER: must not have a query or fragment`},
		{env: map[string]string{EnvJWTIssuer: "http://%zz"}, want: `GATEWAY_JWT_ISSUER: not a valid URL`},
		{env: map[string]string{EnvJWTIssuer: "https://issuer", EnvJWTJWKSURL: "file:///keys.json"}, want: `GATEWAY_JWT_JWKS_URL: scheme must be http or https, got "file"`},
		{env: map[string]string{EnvJWTIssuer: "https://issuer", EnvJWTCAFile: "testdata/nope.crt"}, want: `GATEWAY_JWT_CA_FILE: reading CA file: open testdata/nope.crt: no such file or directory`},
		{env: map[string]string{EnvJWTIssuer: "https://issuer", EnvJWTCAFile: "testdata/api-key"}, want: `GATEWAY_JWT_CA_FILE: testdata/api-key holds no PEM certificate`},
		{env: map[string]string{EnvJWTIssuer: "https://issuer", EnvJWTAuthTokenFile: "testdata/empty-secret"}, want: `GATEWAY_JWT_AUTH_TOKEN_FILE: secret file testdata/empty-secret is empty`},
		{env: map[string]string{EnvJWTIssuer: "https://issuer", EnvJWTAuthTokenFile: "testdata/nope"}, want: `GATEWAY_JWT_AUTH_TOKEN_FILE: reading secret file: open testdata/nope: no such file or directory`},
		{env: map[string]string{EnvJWTJWKSURL: "https://issuer/keys"}, want: `GATEWAY_JWT_JWKS_URL: is set without GATEWAY_JWT_ISSUER`},
		{file: "testdata/unknown-key.yaml", want: `GATEWAY_CONFIG: testdata/unknown-key.yaml: unknown setting "GATEWAY_CACHE_TLL"`},
		{file: "testdata/not-scalar.yaml", want: `GATEWAY_CONFIG: testdata/not-scalar.yaml: GATEWAY_CACHE_TTL must be a single value`},
		{file: "testdata/api-key", want: `GATEWAY_CONFIG: parsing testdata/api-key: not a YAML mapping of settings to values (line 1)`},
		{file: "testdata/missing.yaml", want: `GATEWAY_CONFIG: reading config file: open testdata/missing.yaml: no such file or directory`},

		// Credentials are visible ASCII once white space and a BOM are
		// stripped, from the environment and from files alike.
		{env: map[string]string{EnvAPIKey: " \t\r\n"}, want: "BLUETAPE_API_KEY: is empty"},
		{env: map[string]string{EnvAPIKey: "\ufeff\n"}, want: "BLUETAPE_API_KEY: is empty"},
		{env: map[string]string{EnvAPIKey: "crlf-1\r\nsecond"}, want: "BLUETAPE_API_KEY: holds more than one line"},
		{env: map[string]string{EnvAPIKey: "nul-1\x00x"}, want: "BLUETAPE_API_KEY: holds a control character"},
		{env: map[string]string{EnvAPIKey: "esc-1\x1b[0m"}, want: "BLUETAPE_API_KEY: holds a control character"},
		{env: map[string]string{EnvAPIKey: "del-1\x7f"}, want: "BLUETAPE_API_KEY: holds a control character"},
		{env: map[string]string{EnvAccountID: "space-1 x"}, want: "BLUETAPE_ACCOUNT_ID: holds white space inside"},
		{env: map[string]string{EnvAccountID: "tab-1\tx"}, want: "BLUETAPE_ACCOUNT_ID: holds white space inside"},
		{env: map[string]string{EnvAccountID: "acct-\u00fc"}, want: "BLUETAPE_ACCOUNT_ID: holds a non-ASCII character"},
		{env: map[string]string{EnvAccountID: "nbsp-1\u00a0x"}, want: "BLUETAPE_ACCOUNT_ID: holds a non-ASCII character"},
		{env: map[string]string{EnvAccountID: "bom-1\ufeff"}, want: "BLUETAPE_ACCOUNT_ID: holds a non-ASCII character"},
		{env: map[string]string{EnvAccountID: "invalid-1\xff"}, want: "BLUETAPE_ACCOUNT_ID: holds a non-ASCII character"},
		{env: map[string]string{EnvAPIKey: "", EnvAPIKeyFile: "testdata/nul-byte"}, want: "BLUETAPE_API_KEY_FILE: secret file testdata/nul-byte holds a control character"},
		{env: map[string]string{EnvAccountID: "", EnvAccountIDFile: "testdata/crlf-inside"}, want: "BLUETAPE_ACCOUNT_ID_FILE: secret file testdata/crlf-inside holds more than one line"},
		{env: map[string]string{EnvAdminTokenFile: "testdata/nope"}, want: "GATEWAY_ADMIN_TOKEN_FILE: reading secret file: open testdata/nope: no such file or directory"},
		{env: map[string]string{EnvAdminTokenFile: "testdata/empty-secret"}, want: "GATEWAY_ADMIN_TOKEN_FILE: secret file testdata/empty-secret is empty"},
		{env: map[string]string{EnvAdminTokenFile: "testdata/non-ascii"}, want: "GATEWAY_ADMIN_TOKEN_FILE: secret file testdata/non-ascii holds a non-ASCII character"},

		{env: map[string]string{EnvCacheTTL: "8760h1ns"}, want: `GATEWAY_CACHE_TTL: must be at most 8760h, got "8760h1ns"`},
		{env: map[string]string{EnvStaleTTL: "525601m"}, want: `GATEWAY_STALE_TTL: must be at most 8760h, got "525601m"`},
		{env: map[string]string{EnvShutdownTimeout: "2562047h"}, want: `GATEWAY_SHUTDOWN_TIMEOUT: must be at most 8760h, got "2562047h"`},
		{env: map[string]string{EnvDrainDelay: "99999999h"}, want: `GATEWAY_DRAIN_DELAY: invalid duration "99999999h": want Go syntax such as 250ms, 5s or 15m`},
		{env: map[string]string{EnvListenAddr: ":65536"}, want: `GATEWAY_LISTEN_ADDR: port 65536 out of range: want 1-65535`},
		{env: map[string]string{EnvListenAddr: "0.0.0.0:808080"}, want: `GATEWAY_LISTEN_ADDR: port 808080 out of range: want 1-65535`},
		{env: map[string]string{EnvAdminAddr: "127.0.0.1:-1"}, want: `GATEWAY_ADMIN_ADDR: port -1 out of range: want 1-65535`},
		{env: map[string]string{EnvAdminAddr: ":http"}, want: `GATEWAY_ADMIN_ADDR: invalid port "http"`},
		{env: map[string]string{EnvUpstreamMaxFlight: "0"}, want: `GATEWAY_UPSTREAM_MAX_IN_FLIGHT: must be at least 1, got 0`},
		{env: map[string]string{EnvUpstreamMaxFlight: "lots"}, want: `GATEWAY_UPSTREAM_MAX_IN_FLIGHT: invalid integer "lots"`},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			_, err := Load(env(tc.env), tc.file)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			for _, secret := range []string{testKey, "hunter2", "secretpw", "the-key-from-a-file",
				"crlf-1", "nul-1", "esc-1", "del-1", "space-1", "tab-1", "nbsp-1", "bom-1", "invalid-1",
				"\u00fc", "key-", "line1", "tok\u00e9"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds a secret", err)
				}
			}
		})
	}
}

// TestSecretCleaning: white space around a credential and a UTF-8
// byte-order mark before it are stripped, from the environment, from
// files, and for the admin token.
func TestSecretCleaning(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvAPIKey: "\ufeff" + testKey + "\r\n", EnvAccountID: " \tacct-1 \n",
		EnvAdminTokenFile: "testdata/bom-secret",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKey.Reveal() != testKey || c.AccountID.Reveal() != "acct-1" || c.AdminToken.Reveal() != "the-key-after-a-bom" {
		t.Errorf("read %q, %q, %q", c.APIKey.Reveal(), c.AccountID.Reveal(), c.AdminToken.Reveal())
	}
	c, err = Load(env(map[string]string{EnvAPIKey: "", EnvAPIKeyFile: "testdata/bom-secret"}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.APIKey.Reveal() != "the-key-after-a-bom" {
		t.Errorf("read %q from a file with a BOM", c.APIKey.Reveal())
	}
	// Every visible ASCII byte is allowed.
	var all strings.Builder
	for b := byte('!'); b <= '~'; b++ {
		all.WriteByte(b)
	}
	if s, err := ParseSecret([]byte(all.String())); err != nil || s.Reveal() != all.String() {
		t.Errorf("visible ASCII refused: %v", err)
	}
}

// TestBounds: the largest duration and the ports at the ends of the range
// are accepted; port 0 asks the system for one.
func TestBounds(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvCacheTTL: "8760h", EnvStaleTTL: "525600m", EnvListenAddr: ":1", EnvAdminAddr: "[::1]:65535",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.CacheTTL != 8760*time.Hour || c.StaleTTL != 8760*time.Hour || c.ListenAddr != ":1" || c.AdminAddr != "[::1]:65535" {
		t.Errorf("bounds not accepted: %+v", c)
	}
	_, err = Load(env(map[string]string{EnvListenAddr: "127.0.0.1:0"}), "")
	if want := "GATEWAY_LISTEN_ADDR: port 0 out of range: want 1-65535"; err == nil || err.Error() != want {
		t.Errorf("port 0: %v; want %q", err, want)
	}
}

func TestHardeningSettingsInYAML(t *testing.T) {
	c, err := Load(env(nil), "testdata/hardening.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.UpstreamMaxInFlight != 9 || c.AdminTokenFile != "testdata/admin-token" || c.AdminToken.Reveal() != "admin-token-from-a-file" {
		t.Errorf("from YAML: %+v", c)
	}
}

func TestBrokenYAML(t *testing.T) {
	_, err := Load(env(nil), "testdata/broken.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "GATEWAY_CONFIG: parsing testdata/broken.yaml: ") {
		t.Fatalf("err = %v", err)
	}
}

func TestEveryProblemIsOneLine(t *testing.T) {
	_, err := Load(env(map[string]string{EnvCacheTTL: "x", EnvRateBurst: "0", EnvAPIKey: ""}), "")
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines; want 3:\n%v", len(lines), err)
	}
}

// TestSecretsRedactThemselves formats, logs and encodes a Config in every
// usual way and looks for the secret values in the output.
func TestSecretsRedactThemselves(t *testing.T) {
	c, err := Load(env(map[string]string{EnvRedisURL: "redis://:redispass@r:6379", EnvAdminTokenFile: "testdata/admin-token"}), "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %q %v\n", c, c, c, c.APIKey, c.AccountID, c.AdminToken)
	js, _ := json.Marshal(c)
	out.Write(js)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "config", c, "key", c.APIKey)
	slog.New(slog.NewTextHandler(&out, nil)).Info("config", "key", c.APIKey, "redis", c.RedisURL)
	for _, secret := range []string{testKey, "acct-1", "redispass", "admin-token-from-a-file"} {
		if strings.Contains(out.String(), secret) {
			t.Errorf("output holds %q:\n%s", secret, out.String())
		}
	}
	if !strings.Contains(out.String(), "<secret>") {
		t.Error("no redaction marker in the output")
	}
}

func TestIsSet(t *testing.T) {
	c, err := Load(only(EnvAdminAddr, ":9091"), "testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		EnvAdminAddr:  true, // environment
		EnvCacheTTL:   true, // file
		EnvListenAddr: false,
		EnvStaleTTL:   false,
	} {
		if c.IsSet(name) != want {
			t.Errorf("IsSet(%s) = %v; want %v", name, !want, want)
		}
	}
	// An empty variable counts as unset.
	c, err = Load(env(map[string]string{EnvListenAddr: ""}), "")
	if err != nil || c.IsSet(EnvListenAddr) {
		t.Errorf("empty GATEWAY_LISTEN_ADDR: %v, IsSet %v", err, err == nil && c.IsSet(EnvListenAddr))
	}
}

// The Redis URL may come from a secret file, trimmed as the others are.
func TestRedisURLFile(t *testing.T) {
	c, err := Load(env(map[string]string{EnvRedisURLFile: "testdata/redis-url"}), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.RedisURL.Reveal() != "redis://:filepw@redis:6379/0" || c.RedisURLFile != "testdata/redis-url" {
		t.Errorf("RedisURL from file: %q, file %q", c.RedisURL.Reveal(), c.RedisURLFile)
	}
	if _, err := ParseRedisURL([]byte("redis://:pw@%zz")); err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("ParseRedisURL of a bad URL: %v; want an error that does not quote it", err)
	}
}
