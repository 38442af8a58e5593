// Package serve runs the gateway's two listeners with the contract's
// lifecycle: on the first signal /readyz turns 503 at once, new requests are
// still served for the drain delay so that endpoints can be removed from the
// load balancer, then the listeners stop and requests in flight get the
// shutdown timeout to finish.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// Options configures Run.
type Options struct {
	API, Admin         http.Handler
	APIAddr, AdminAddr string
	DrainDelay         time.Duration
	ShutdownTimeout    time.Duration
	Logger             *slog.Logger
	// Ready, set by Run, is true from the moment both listeners accept
	// until shutdown begins.
	Ready *atomic.Bool
}

// Timeouts against slow or idle clients, and a header size cap: a request
// here is one line and a few headers.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 16 << 10
)

// NewServer returns an http.Server with the gateway's timeouts.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Run listens on both addresses and serves until ctx is done, then shuts
// down as the package comment says. It returns nil after a clean shutdown.
func Run(ctx context.Context, o Options) error {
	apiLn, err := net.Listen("tcp", o.APIAddr)
	if err != nil {
		return fmt.Errorf("listening on GATEWAY_LISTEN_ADDR %s: %w", o.APIAddr, err)
	}
	adminLn, err := net.Listen("tcp", o.AdminAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listening on GATEWAY_ADMIN_ADDR %s: %w", o.AdminAddr, err)
	}
	api, admin := NewServer(o.API, o.Logger), NewServer(o.Admin, o.Logger)

	g, gctx := errgroup.WithContext(ctx)
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{api, apiLn}, {admin, adminLn}} {
		g.Go(func() error {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	o.Ready.Store(true)
	o.Logger.Info("gateway listening", "api", apiLn.Addr().String(), "admin", adminLn.Addr().String())

	g.Go(func() error {
		<-gctx.Done()
		o.Ready.Store(false)
		if ctx.Err() != nil && o.DrainDelay > 0 {
			o.Logger.Info("shutting down: draining", "delay", o.DrainDelay.String())
			time.Sleep(o.DrainDelay)
		}
		o.Logger.Info("shutting down: finishing requests in flight", "timeout", o.ShutdownTimeout.String())
		sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
		defer cancel()
		// The admin listener stops last, so /healthz and /metrics answer
		// for as long as API requests are in flight.
		err := api.Shutdown(sctx)
		return errors.Join(err, admin.Shutdown(sctx))
	})
	return g.Wait()
}
