package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/bluetape/bluetape-gateway/proxy/serve"
)

// TestEveryOtherMethodIs405 checks that every method but GET on the
// route, OPTIONS and unknown ones included, gets 405 with Allow: GET and
// the error body, and is logged and counted like any request.
func TestEveryOtherMethodIs405(t *testing.T) {
	tg := newTestGateway(t, nil)
	methods := []string{http.MethodOptions, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodDelete, http.MethodPatch, http.MethodTrace, "PROPFIND", "FOO"}
	for _, m := range methods {
		resp, body := tg.do(t, m, "/customers/abc/signup")
		if resp.StatusCode != http.StatusMethodNotAllowed || strings.Join(resp.Header.Values("Allow"), ",") != "GET" {
			t.Errorf("%s: status %d, Allow %q; want 405 with Allow: GET", m, resp.StatusCode, resp.Header.Values("Allow"))
			continue
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q; want nosniff", m, resp.Header.Get("X-Content-Type-Options"))
		}
		if resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", m)
		}
		if m != http.MethodHead {
			errorBodyOf(t, resp, body)
		}
	}
	if got := metricValue(t, tg.Registry, metrics.RequestsTotal, "code", "405"); got != float64(len(methods)) {
		t.Errorf("requests_total{code=\"405\"} %v; want %d", got, len(methods))
	}
	var logged []string
	for _, l := range tg.Logs.Records("request") {
		if l["status"] == float64(405) && l["route"] == signupRoute {
			logged = append(logged, l["method"].(string))
		}
	}
	if len(logged) != len(methods) {
		t.Errorf("405 access lines for %q; want one for each of %q", logged, methods)
	}
	if got := tg.Upstream.calls.Load(); got != 0 {
		t.Errorf("upstream calls %d; want 0", got)
	}
}

// TestAnswersAreNosniff checks X-Content-Type-Options on every kind of
// API answer.
func TestAnswersAreNosniff(t *testing.T) {
	tg := newTestGateway(t, nil)
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/customers/abc/signup", 200}, // miss
		{"/customers/abc/signup", 200}, // hit
		{"/customers/a%20b/signup", 400},
		{"/nowhere", 404},
		{"/", 404},
	} {
		resp, body := tg.get(t, tc.path)
		if resp.StatusCode != tc.status || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d, X-Content-Type-Options %q; want %d with nosniff (%s)",
				tc.path, resp.StatusCode, resp.Header.Get("X-Content-Type-Options"), tc.status, body)
		}
	}
	tg.Upstream.answer(404, `{"code":"404","reason":"Customer not found."}`)
	tg.Upstream.answer(500, `{}`)
	if resp, _ := tg.get(t, "/customers/other/signup"); resp.StatusCode != 502 || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("upstream failure: %d, X-Content-Type-Options %q; want 502 with nosniff", resp.StatusCode, resp.Header.Get("X-Content-Type-Options"))
	}
}

// rawExchange sends request on a new connection to the test gateway and
// returns the answer, and whether the gateway closed the connection after
// it: a second request on it then gets no answer.
func rawExchange(t *testing.T, tg *testGateway, request string) (*http.Response, string, bool) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(tg.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := io.WriteString(conn, "GET /customers/next/signup HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		return resp, string(body), true
	}
	next, err := http.ReadResponse(r, nil)
	if err != nil {
		return resp, string(body), true
	}
	next.Body.Close()
	return resp, string(body), false
}

// TestRequestBodyIsRefused sends GET requests with a body, among them one
// with both Content-Length and Transfer-Encoding (RFC 9112 §6.1), on raw
// connections: each is answered 400 and its connection closed, and
// nothing reaches the upstream. A plain GET keeps its connection.
func TestRequestBodyIsRefused(t *testing.T) {
	tg := newTestGateway(t, nil)
	const head = "GET /customers/abc/signup HTTP/1.1\r\nHost: gw\r\n"
	for name, req := range map[string]string{
		"both Content-Length and Transfer-Encoding": head + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"Transfer-Encoding and Content-Length":      head + "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n",
		"Transfer-Encoding":                         head + "Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
		"Content-Length":                            head + "Content-Length: 4\r\n\r\nbody",
	} {
		t.Run(name, func(t *testing.T) {
			resp, body, closed := rawExchange(t, tg, req)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("status %d; want 400 (%s)", resp.StatusCode, body)
			}
			errorBodyOf(t, resp, body)
			if !closed {
				t.Error("the connection stayed open")
			}
		})
	}
	if got := tg.Upstream.calls.Load(); got != 0 {
		t.Errorf("upstream calls %d; want 0: no request was read after a refused one", got)
	}
	if got := metricValue(t, tg.Registry, metrics.RequestsTotal, "code", "400"); got != 4 {
		t.Errorf("requests_total{code=\"400\"} %v; want 4", got)
	}

	resp, body, closed := rawExchange(t, tg, head+"Content-Length: 0\r\nConnection: keep-alive\r\n\r\n")
	if resp.StatusCode != http.StatusOK || closed {
		t.Errorf("a GET without a body: status %d, closed %v; want 200 on a connection kept open (%s)", resp.StatusCode, closed, body)
	}
}

// TestShutdownCutIs503 runs the gateway under serve.Run: a request still
// waiting for the upstream when the shutdown timeout runs out is answered,
// logged and counted as 503, not as a caller that went away (499).
func TestShutdownCutIs503(t *testing.T) {
	tg := newTestGateway(t, func(o *testOptions) { o.Client.Timeout = time.Minute })
	up := newBlockingUpstream(t)
	tg.Upstream.setHandler(up.handler)

	serveLogs := &gatewaytest.LogBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- serve.Run(ctx, serve.Options{API: tg.Handler(), Admin: http.NotFoundHandler(),
			APIAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ShutdownTimeout: 100 * time.Millisecond,
			Logger: slog.New(slog.NewJSONHandler(serveLogs, nil)), Ready: &atomic.Bool{}})
	}()
	var listening []map[string]any
	gatewaytest.WaitFor(t, 10*time.Second, "the listeners", func() bool {
		listening = serveLogs.Records("gateway listening")
		return len(listening) > 0
	})
	api, _ := listening[0]["api"].(string)
	held := fetchAsync(context.Background(), "http://"+api+"/customers/held/signup")
	gatewaytest.WaitFor(t, 10*time.Second, "the request at the upstream", func() bool { return up.now.Load() == 1 })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v; want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if r := <-held; r.err != nil || r.status != http.StatusServiceUnavailable {
		t.Errorf("the request cut off: %d %v; want 503", r.status, r.err)
	}
	lines := tg.Logs.Records("request")
	if len(lines) != 1 || lines[0]["status"] != float64(503) {
		t.Errorf("access lines %v; want one with status 503", lines)
	}
	if got := metricValue(t, tg.Registry, metrics.RequestsTotal, "code", "503"); got != 1 {
		t.Errorf("requests_total{code=\"503\"} %v; want 1", got)
	}
	if got := metricValue(t, tg.Registry, metrics.RequestsTotal, "code", "499"); got != 0 {
		t.Errorf("requests_total{code=\"499\"} %v; want 0", got)
	}
}
