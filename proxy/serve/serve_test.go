package serve

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer serves h with limits l on a loopback port until the test
// ends, and returns the address.
func startServer(t *testing.T, h http.Handler, l Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(h, discardLogger(), l)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String()
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })

// closedWithin reports whether the server closes conn within limit,
// reading (and discarding) whatever it sends first.
func closedWithin(conn net.Conn, limit time.Duration) bool {
	conn.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

func TestDefaultLimits(t *testing.T) {
	s := NewServer(okHandler, discardLogger())
	if s.ReadHeaderTimeout != 5*time.Second || s.ReadTimeout != 10*time.Second ||
		s.WriteTimeout != 30*time.Second || s.IdleTimeout != 120*time.Second {
		t.Errorf("timeouts %v %v %v %v; want 5s 10s 30s 120s", s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout)
	}
	if got := s.MaxHeaderBytes + headerSlop; got != 16<<10 {
		t.Errorf("header cap %d bytes; want 16 KiB", got)
	}
}

// A client that trickles its headers a byte at a time, each byte well
// within any per-read timeout, is cut off when the headers' deadline
// passes.
func TestSlowlorisIsDisconnected(t *testing.T) {
	const headerTimeout = 300 * time.Millisecond
	addr := startServer(t, okHandler, Limits{ReadHeaderTimeout: headerTimeout})
	// The server's header timer may start as soon as it accepts, before
	// Dial returns here: the stopwatch starts before Dial, so that it can
	// only overstate the time to the disconnection, never understate it.
	start := time.Now()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: gw\r\n")

	closed := make(chan time.Duration, 1)
	go func() {
		closedWithin(conn, 10*time.Second)
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-closed:
			if d < headerTimeout {
				t.Errorf("disconnected after %v; before the %v header timeout", d, headerTimeout)
			}
			if d > headerTimeout+2*time.Second {
				t.Errorf("disconnected after %v; want soon after %v", d, headerTimeout)
			}
			return
		case <-tick.C:
			// The server may already have gone: then the write fails,
			// and the reader reports the close.
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			conn.Write([]byte("X"))
		}
	}
}

func TestIdleConnectionIsClosed(t *testing.T) {
	addr := startServer(t, okHandler, Limits{IdleTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	if !closedWithin(conn, 5*time.Second) {
		t.Fatal("idle keep-alive connection still open after 5s")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("idle connection closed after %v; want the idle timeout first", d)
	}
}

func TestHeaderCap(t *testing.T) {
	addr := startServer(t, okHandler, Limits{})
	for name, tc := range map[string]struct {
		size   int
		status int
	}{
		"15 KiB header": {15 << 10, 200},
		"16 KiB header": {16 << 10, 431},
		"64 KiB header": {64 << 10, 431},
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Big", strings.Repeat("a", tc.size))
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d; want %d", resp.StatusCode, tc.status)
			}
		})
	}
}

// runServe starts Run with both listeners on loopback ports and returns
// the API and admin addresses, read from its "gateway listening" log line,
// and the channel of Run's result.
func runServe(ctx context.Context, t *testing.T, o Options) (api, admin string, logs *gatewaytest.LogBuffer, result <-chan error) {
	t.Helper()
	logs = &gatewaytest.LogBuffer{}
	o.APIAddr, o.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	o.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	if o.Ready == nil {
		o.Ready = &atomic.Bool{}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	res := make(chan error, 1)
	go func() { res <- Run(ctx, o) }()
	var listening []map[string]any
	gatewaytest.WaitFor(t, 10*time.Second, "Run to log its addresses", func() bool {
		listening = logs.Records("gateway listening")
		return len(listening) > 0
	})
	api, _ = listening[0]["api"].(string)
	admin, _ = listening[0]["admin"].(string)
	return api, admin, logs, res
}

func get(t *testing.T, url string) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The lifecycle, in process: readiness drops at once, the API serves
// through the drain delay, a request in flight finishes, Run returns nil.
func TestRunDrainsThenFinishesInFlight(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	api := http.NewServeMux()
	api.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "done")
	})
	api.Handle("/", okHandler)
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const drain = 500 * time.Millisecond
	apiAddr, _, logs, result := runServe(ctx, t, Options{API: api, Admin: okHandler, Ready: &ready,
		DrainDelay: drain, ShutdownTimeout: 10 * time.Second})
	if !ready.Load() {
		t.Fatal("not ready once listening")
	}

	slow := make(chan int, 1)
	go func() {
		client := &http.Client{Timeout: 20 * time.Second}
		resp, err := client.Get("http://" + apiAddr + "/slow")
		if err != nil {
			t.Error(err)
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	<-entered
	stopped := time.Now()
	cancel()
	gatewaytest.WaitFor(t, time.Second, "readiness ends after shutdown began", func() bool { return !ready.Load() })
	if got := get(t, "http://"+apiAddr+"/"); got != 200 {
		t.Errorf("during the drain delay: status %d; want 200", got)
	}
	gatewaytest.WaitFor(t, 5*time.Second, "the drain delay ends", func() bool {
		return strings.Contains(logs.String(), "finishing requests in flight")
	})
	if d := time.Since(stopped); d < drain {
		t.Errorf("drain ended after %v; want at least %v", d, drain)
	}
	close(release)
	if got := <-slow; got != 200 {
		t.Errorf("request in flight: status %d; want 200", got)
	}
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Run returned %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// A request that outlives the shutdown timeout is cut, and the stop is
// still clean.
func TestRunShutdownTimeoutCutsStragglers(t *testing.T) {
	entered := make(chan struct{}, 1)
	hold := make(chan struct{})
	defer close(hold)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const timeout = 300 * time.Millisecond
	apiAddr, _, logs, result := runServe(ctx, t, Options{API: api, Admin: okHandler, ShutdownTimeout: timeout})
	go func() {
		client := &http.Client{Timeout: 20 * time.Second}
		if resp, err := client.Get("http://" + apiAddr + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	start := time.Now()
	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Errorf("Run returned %v; want nil", err)
		}
		if d := time.Since(start); d < timeout || d > timeout+5*time.Second {
			t.Errorf("Run returned after %v; want soon after the %v timeout", d, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if !strings.Contains(logs.String(), "timeout reached") {
		t.Errorf("the cut is not logged:\n%s", logs)
	}
}

func TestRunReportsBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = Run(context.Background(), Options{API: okHandler, Admin: okHandler, APIAddr: ln.Addr().String(),
		AdminAddr: "127.0.0.1:0", Logger: discardLogger(), Ready: &atomic.Bool{}})
	var le *ListenError
	if !errors.As(err, &le) || le.Admin {
		t.Errorf("Run on a busy port: %v; want the API listener's ListenError", err)
	}
}
