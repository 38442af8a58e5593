package main

import (
	"flag"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// upstreamCommand is a stand-in for BlueTape's signup endpoint.
//
// It answers GET /integration/customer/{id}/signup with
// {"signUpUrl":"https://www.bluetape.com/signup?id=<id>"} after a configurable
// delay, and only when the request carries exactly one X-BlueTape-Key and one
// X-Integration-AccountId with the configured values (else 401). Ids that
// start with "notfound" get BlueTape's 404 body.
//
// It counts the signup calls it answers. GET /calls reports the counts
// (callCounts); POST /calls/reset sets the call count and the time of the
// latest answer to zero. POST /delay?d=100ms changes the delay.
//
// It is also a trivial OTLP/HTTP trace sink: POST /v1/traces is answered with
// an empty 200 (an empty ExportTraceServiceResponse) and counted.
func upstreamCommand(fs *flag.FlagSet) func() error {
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	key := fs.String("key", "bench-key", "expected X-BlueTape-Key")
	account := fs.String("account", "bench-account", "expected X-Integration-AccountId")
	delay := fs.Duration("delay", 5*time.Millisecond, "time taken by each signup answer")
	return func() error {
		u := &upstream{key: *key, account: *account}
		u.delay.Store(int64(*delay))
		return listenAndServe(*addr, u.routes())
	}
}

// callCounts is the upstream's answer to GET /calls.
type callCounts struct {
	Calls              int64 `json:"calls"`              // signup calls answered since start or reset
	Unauthorized       int64 `json:"unauthorized"`       // signup calls refused (401) since start
	LastAnswerUnixNano int64 `json:"lastAnswerUnixNano"` // wall-clock time of the latest answer, 0 after a reset
	TraceExports       int64 `json:"traceExports"`       // OTLP trace exports received since start
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
		writeJSON(w, "application/json", callCounts{
			Calls:              u.calls.Load(),
			Unauthorized:       u.unauthorized.Load(),
			LastAnswerUnixNano: u.lastAnswer.Load(),
			TraceExports:       u.traceExports.Load(),
		})
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
