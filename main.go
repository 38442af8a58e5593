// Command gateway is bluetape-gateway: it answers internal callers'
// GET /customers/{id}/signup from BlueTape, holding BlueTape's credentials
// so that no caller has to. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bluetape/bluetape-gateway/config"
	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/cache"
	"github.com/bluetape/bluetape-gateway/proxy/callers"
	"github.com/bluetape/bluetape-gateway/proxy/identity"
	"github.com/bluetape/bluetape-gateway/proxy/logging"
	"github.com/bluetape/bluetape-gateway/proxy/ratelimit"
	"github.com/bluetape/bluetape-gateway/proxy/redisstore"
	"github.com/bluetape/bluetape-gateway/proxy/sandbox"
	"github.com/bluetape/bluetape-gateway/proxy/serve"
	"github.com/bluetape/bluetape-gateway/proxy/tracing"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	// The first signal starts the shutdown; a second one ends the process
	// at once. Both arrive on one channel, so the second cannot be lost
	// between the two.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		cancel()
		s := <-signals
		fmt.Fprintln(os.Stderr, "bluetape-gateway: second signal, exiting at once:", s)
		os.Exit(1)
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bluetape-gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("gateway", flag.ContinueOnError)
	configFile := flags.String("config", "", "YAML configuration file (also GATEWAY_CONFIG); environment variables win over it")
	sandbox := flags.Bool("sandbox", false, "start a built-in BlueTape sandbox on loopback and use it, with sandbox credentials (local development only)")
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: gateway [flags]\n\nbluetape-gateway is configured by environment variables (GATEWAY_*, BLUETAPE_*);\nevery setting is described in docs/configuration.md.\n\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "bluetape-gateway", version)
		return nil
	}
	return start(ctx, startOptions{
		configFile: *configFile,
		sandbox:    *sandbox,
		getenv:     getenv,
		stdout:     stdout,
	})
}

type startOptions struct {
	configFile string
	sandbox    bool
	getenv     func(string) string
	stdout     io.Writer
}

// start builds the gateway from its configuration and serves until ctx is
// done: config → secrets → metrics → cache and limits → gateway → serve.
func start(ctx context.Context, o startOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	getenv := o.getenv
	if o.sandbox {
		// Closed only when start returns, so that it answers through the
		// drain after a signal.
		sb, err := sandbox.Start()
		if err != nil {
			return err
		}
		defer sb.Close()
		getenv = sb.Env(getenv)
	}
	cfg, err := config.Load(getenv, o.configFile)
	if err != nil {
		return err
	}
	logs := logging.New(o.stdout, cfg.LogLevel)
	defer logs.Close()
	log := slog.New(logs)
	if o.sandbox {
		where := sandbox.Listeners(cfg)
		log.Warn("SANDBOX MODE: answering from a built-in fake BlueTape on loopback; for local development only", append([]any{"upstream", cfg.BaseURL.String()}, where...)...)
	}

	// OTEL_* come from the process environment only.
	tracer, stopTracing, err := tracing.Setup(ctx, tracing.Options{Version: version, Logger: log})
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	// On an early return; after serving, the spans are flushed below.
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		_ = stopTracing(ctx)
	}()
	if tracer.Exporting() {
		log.Info("tracing: exporting spans with OTLP", "protocol", tracer.Protocol())
	} else {
		log.Info("tracing: trace context propagated, spans not exported (no OTLP endpoint, or export turned off)")
	}

	key, err := config.NewSecretSource(cfg.APIKey, cfg.APIKeyFile)
	if err != nil {
		return fmt.Errorf("%s: %w", config.EnvAPIKeyFile, err)
	}
	account, err := config.NewSecretSource(cfg.AccountID, cfg.AccountIDFile)
	if err != nil {
		return fmt.Errorf("%s: %w", config.EnvAccountIDFile, err)
	}
	var adminToken func() string
	var adminSource *config.SecretSource
	if cfg.AdminTokenFile != "" {
		if adminSource, err = config.NewSecretSource(cfg.AdminToken, cfg.AdminTokenFile); err != nil {
			return fmt.Errorf("%s: %w", config.EnvAdminTokenFile, err)
		}
		adminToken = func() string { return adminSource.Get().Reveal() }
	}
	var registry *config.Watched[*callers.Registry]
	if cfg.CallersFile != "" {
		if registry, err = config.NewWatched(cfg.CallersFile, callers.Parse); err != nil {
			return fmt.Errorf("%s: %w", config.EnvCallersFile, err)
		}
	} else if cfg.JWTIssuer == "" {
		log.Warn("GATEWAY_CALLERS_FILE is not set: the API is open to anyone who can reach it, and callers are told apart by IP address")
	}

	c := cache.New(cache.Options{TTL: cfg.CacheTTL, NegativeTTL: cfg.NegativeCacheTTL,
		StaleTTL: cfg.StaleTTL, MaxEntries: cfg.CacheMaxEntries})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg, version, func() float64 { return float64(c.Len()) })
	if err != nil {
		return err
	}
	limits := ratelimit.New(ratelimit.Options{})
	uo := bluetape.Options{
		BaseURL:     cfg.BaseURL,
		Credentials: func() (string, string) { return key.Get().Reveal(), account.Get().Reveal() },
		Timeout:     cfg.UpstreamTimeout,
		RateLimit:   cfg.UpstreamRateLimit,
		MaxInFlight: cfg.UpstreamMaxInFlight,
		Version:     version,
		Metrics:     m,
		Logger:      log,
		Tracer:      tracer,
	}
	opts := proxy.Options{
		Cache:          proxy.LocalCache(c),
		RateLimit:      ratelimit.Policy{Rate: cfg.RateLimit, Burst: cfg.RateBurst},
		Limits:         proxy.LocalLimiter(limits),
		TrustedProxies: cfg.TrustedProxies,
		MaxInFlight:    cfg.MaxInFlight,
		Metrics:        m,
		Logger:         log,
		Tracer:         tracer,
	}
	if registry != nil {
		opts.Callers = registry.Get
	}
	var redisURL *config.SecretSource
	var rs *redisstore.Backend
	var verifier *identity.Verifier
	if cfg.JWTIssuer != "" {
		verifier, err = identity.New(identity.Options{
			Issuer:        cfg.JWTIssuer,
			Audience:      cfg.JWTAudience,
			JWKSURL:       cfg.JWTJWKSURL,
			CAFile:        cfg.JWTCAFile,
			AuthTokenFile: cfg.JWTAuthTokenFile,
			Logger:        log,
			OnFetch: func(err error) {
				if err != nil {
					m.JWKSFetchError()
				}
			},
		})
		if err != nil {
			return fmt.Errorf("%s: %w", config.EnvJWTIssuer, err)
		}
		opts.Verifier = verifier
		log.Info("accepting tokens of an issuer", "issuer", cfg.JWTIssuer, "audience", cfg.JWTAudience)
	}
	if url := cfg.RedisURL.Reveal(); url != "" {
		setting := config.EnvRedisURL
		if cfg.RedisURLFile != "" {
			setting = config.EnvRedisURLFile
			if redisURL, err = config.NewSecretSourceParsed(cfg.RedisURL, cfg.RedisURLFile, config.ParseRedisURL); err != nil {
				return fmt.Errorf("%s: %w", setting, err)
			}
			url = redisURL.Get().Reveal()
		}
		shared, err := metrics.NewShared(reg)
		if err != nil {
			return err
		}
		redisstore.RouteClientLogs(log)
		rs, err = redisstore.New(ctx, redisstore.Options{URL: url, L1: c, Local: limits, Metrics: m, Logger: log,
			Shared: shared, Credentials: uo.Credentials})
		if err != nil {
			return fmt.Errorf("%s: %w", setting, err)
		}
		defer rs.Close()
		opts.Cache, opts.Limits, uo.Quota, opts.Locker = rs.Cache(), rs.Limiter(), rs.Limiter(), rs.Locker()
	}
	if opts.Upstream, err = bluetape.New(uo); err != nil {
		return err
	}
	defer opts.Upstream.CloseIdleConnections()
	gw, err := proxy.New(opts)
	if err != nil {
		return err
	}

	go every(ctx, time.Minute, c.Sweep)
	if verifier != nil {
		go func() { _ = verifier.Run(ctx) }()
	}
	go every(ctx, time.Minute, limits.Sweep)
	keyReport := reloadReporter(log, m, "api_key", config.EnvAPIKeyFile)
	accountReport := reloadReporter(log, m, "account_id", config.EnvAccountIDFile)
	callersReport := reloadReporter(log, m, "callers", config.EnvCallersFile)
	adminReport := reloadReporter(log, m, "admin_token", config.EnvAdminTokenFile)
	redisURLReport := reloadReporter(log, m, "redis_url", config.EnvRedisURLFile)
	go every(ctx, config.ReloadInterval, func() {
		key.Poll(keyReport)
		account.Poll(accountReport)
		if adminSource != nil {
			adminSource.Poll(adminReport)
		}
		if registry != nil {
			registry.Poll(callersReport)
		}
		if redisURL != nil {
			redisURL.Poll(func(changed bool, err error) {
				if changed {
					err = rs.SetURL(redisURL.Get().Reveal())
				}
				redisURLReport(changed, err)
			})
		}
	})

	var ready atomic.Bool
	isReady := ready.Load
	if verifier != nil {
		// Until the issuer's keys are loaded, no token can be verified.
		isReady = func() bool { return ready.Load() && verifier.Ready() }
	}
	err = serve.Run(ctx, serve.Options{
		API:             gw.Handler(),
		Admin:           proxy.Admin(proxy.AdminOptions{Gatherer: reg, Ready: isReady, Cache: opts.Cache, Token: adminToken, Logger: log}),
		APIAddr:         cfg.ListenAddr,
		AdminAddr:       cfg.AdminAddr,
		DrainDelay:      cfg.DrainDelay,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          log,
		Ready:           &ready,
	})
	// The servers have stopped: flush the spans not yet sent.
	flushCtx, cancelFlush := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	if ferr := stopTracing(flushCtx); ferr != nil {
		log.Warn("tracing: flushing spans at shutdown failed", "error", ferr)
	}
	cancelFlush()
	var le *serve.ListenError
	if errors.As(err, &le) {
		setting := config.EnvListenAddr
		if le.Admin {
			setting = config.EnvAdminAddr
		}
		return fmt.Errorf("%s: %w", setting, err)
	}
	return err
}

// every calls f every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// reloadReporter logs a secret file's reloads and counts its failures;
// the last good value stays in force on failure.
func reloadReporter(log *slog.Logger, m *metrics.Metrics, secret, setting string) func(bool, error) {
	return func(changed bool, err error) {
		if err != nil {
			m.SecretReloadError(secret)
			log.Error("reloading a secret file failed; keeping the last good value", "setting", setting, "error", err)
			return
		}
		log.Info("secret file reloaded", "setting", setting)
	}
}
