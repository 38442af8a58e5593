// Command upstream is a stand-in for BlueTape's signup endpoint, used by the
// load benchmark (bench/run.sh).
//
// It answers GET /integration/customer/{id}/signup with
// {"signUpUrl":"https://www.bluetape.com/signup?id=<id>"} after a configurable
// delay, and only when the request carries exactly one X-BlueTape-Key and one
// X-Integration-AccountId with the configured values (else 401). Ids that start
// with "notfound" get BlueTape's 404 body.
//
// It counts the signup calls it answers. GET /calls reports the count, the
// number of rejected (401) calls since start and the wall-clock time of the
// latest answer; POST /calls/reset sets the count and the time to zero. POST /delay?d=100ms changes the delay.
//
// It is also a trivial OTLP/HTTP trace sink: POST /v1/traces is answered with an
// empty 200 (an empty ExportTraceServiceResponse) and counted as traceExports
// in GET /calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	key := flag.String("key", "bench-key", "expected X-BlueTape-Key")
	account := flag.String("account", "bench-account", "expected X-Integration-AccountId")
	delay := flag.Duration("delay", 5*time.Millisecond, "time taken by each signup answer")
	flag.Parse()

	u := &upstream{key: *key, account: *account}
	u.delay.Store(int64(*delay))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listening: %v", err)
	}
	srv := &http.Server{Handler: u.routes(), ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serving: %v", err)
	}
}

type upstream struct {
	key, account string
	delay        atomic.Int64 // time.Duration
	calls        atomic.Int64
	unauthorized atomic.Int64
	lastAnswer   atomic.Int64 // Unix nanoseconds
	traceExports atomic.Int64
}

func (u *upstream) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /integration/customer/{id}/signup", u.signup)
	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"calls":%d,"unauthorized":%d,"lastAnswerUnixNano":%d,"traceExports":%d}`+"\n",
			u.calls.Load(), u.unauthorized.Load(), u.lastAnswer.Load(), u.traceExports.Load())
	})
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		u.traceExports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /calls/reset", func(w http.ResponseWriter, r *http.Request) {
		u.calls.Store(0)
		u.lastAnswer.Store(0)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /delay", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil || d < 0 {
			http.Error(w, "d: want a duration such as 5ms", http.StatusBadRequest)
			return
		}
		u.delay.Store(int64(d))
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func (u *upstream) signup(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	keys, accounts := r.Header.Values("X-BlueTape-Key"), r.Header.Values("X-Integration-AccountId")
	if len(keys) != 1 || keys[0] != u.key || len(accounts) != 1 || accounts[0] != u.account {
		u.unauthorized.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"code": "401", "reason": "Unauthorized."}`))
		return
	}
	if d := time.Duration(u.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	id := r.PathValue("id")
	var body []byte
	status := http.StatusOK
	if len(id) >= 8 && id[:8] == "notfound" {
		status = http.StatusNotFound
		body = []byte(`{"code": "404", "reason": "Customer not found."}`)
	} else {
		body = make([]byte, 0, 64+len(id))
		body = append(body, `{"signUpUrl":"https://www.bluetape.com/signup?id=`...)
		body = append(body, id...)
		body = append(body, `"}`...)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	u.calls.Add(1)
	u.lastAnswer.Store(time.Now().UnixNano())
	w.WriteHeader(status)
	w.Write(body)
}
