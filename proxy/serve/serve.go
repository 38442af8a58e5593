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
	// Limits are the servers' timeouts and header cap; zero fields take
	// the defaults (see Limits).
	Limits Limits
}

// Limits protect the listeners from slow, idle and oversized clients.
// A zero field means its default.
type Limits struct {
	// ReadHeaderTimeout bounds the reading of a request's line and
	// headers; 5s by default. It is what disconnects a client that
	// trickles its headers (slowloris).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the reading of a whole request; 10s by default.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the request's headers
	// to the end of the answer; 30s by default.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new
	// request; 120s by default.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers together; 16 KiB
	// by default. A request over it is answered 431.
	MaxHeaderBytes int
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

// headerSlop is what net/http reads past http.Server.MaxHeaderBytes
// before it answers 431 (its bufio allowance); it is taken off so that the
// cap is what Limits says.
const headerSlop = 4096

func (l Limits) withDefaults() Limits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&l.ReadHeaderTimeout, readHeaderTimeout)
	def(&l.ReadTimeout, readTimeout)
	def(&l.WriteTimeout, writeTimeout)
	def(&l.IdleTimeout, idleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = maxHeaderBytes
	}
	return l
}

// NewServer returns an http.Server with the gateway's default limits.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	return newServer(h, log, Limits{})
}

func newServer(h http.Handler, log *slog.Logger, l Limits) *http.Server {
	l = l.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    max(1, l.MaxHeaderBytes-headerSlop),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// ListenError is a listener Run could not open.
type ListenError struct {
	Admin bool // the admin listener, else the API's
	Addr  string
	Err   error
}

func (e *ListenError) Error() string {
	which := "API"
	if e.Admin {
		which = "admin"
	}
	return fmt.Sprintf("listening on the %s address %s: %v", which, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// ErrShutdownTimeout is the cause (context.Cause) of the context of every
// request still in flight when the shutdown timeout runs out: the gateway,
// not the caller, cut it off.
var ErrShutdownTimeout = errors.New("the shutdown timeout cut the request off")

// cutGrace is how long requests cut off by the shutdown timeout get to
// answer and log before their connections are closed.
const cutGrace = time.Second

// Run listens on both addresses and serves until ctx is done, then shuts
// down as the package comment says. It returns nil after a clean shutdown.
//
// When the shutdown timeout runs out, the contexts of the requests still
// in flight are cancelled with ErrShutdownTimeout as their cause, and they
// get cutGrace to answer before their connections are closed.
func Run(ctx context.Context, o Options) error {
	apiLn, err := net.Listen("tcp", o.APIAddr)
	if err != nil {
		return &ListenError{Addr: o.APIAddr, Err: err}
	}
	adminLn, err := net.Listen("tcp", o.AdminAddr)
	if err != nil {
		apiLn.Close()
		return &ListenError{Admin: true, Addr: o.AdminAddr, Err: err}
	}
	var active atomic.Int64 // API requests being served
	apiHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		o.API.ServeHTTP(w, r)
	})
	api, admin := newServer(apiHandler, o.Logger, o.Limits), newServer(o.Admin, o.Logger, o.Limits)
	base, cut := context.WithCancelCause(context.Background())
	defer cut(nil)
	api.BaseContext = func(net.Listener) context.Context { return base }

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
		err := errors.Join(api.Shutdown(sctx), admin.Shutdown(sctx))
		if errors.Is(err, context.DeadlineExceeded) {
			// The shutdown timeout is the contract's bound: what is still
			// in flight is cut, and the stop is still a clean one.
			o.Logger.Warn("shutting down: timeout reached; closing the connections left",
				"timeout", o.ShutdownTimeout.String())
			cut(ErrShutdownTimeout)
			waitIdle(&active, cutGrace)
			return errors.Join(api.Close(), admin.Close())
		}
		return err
	})
	return g.Wait()
}

// waitIdle waits, at most limit, until no request is being served.
func waitIdle(active *atomic.Int64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
