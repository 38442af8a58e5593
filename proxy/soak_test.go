package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/metrics"
	"github.com/bluetape/bluetape-gateway/proxy/bluetape"
	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
)

// soakUpstream is a BlueTape that misbehaves at random: resets, slow
// answers, 5xx, garbage bodies, 404s, 429s and 400s among good answers.
// It accepts only the keys it is told to, and counts any other.
type soakUpstream struct {
	keySet
	rejected atomic.Int64
}

func (s *soakUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.accepts(r.Header.Values("X-Bluetape-Key")) {
		s.rejected.Add(1)
		answerWith(401, `{"code": "401", "reason": "Unauthorized."}`)(w, r)
		return
	}
	id := lastSegment(r.URL.Path)
	if strings.HasPrefix(id, "gone-") {
		answerWith(404, notFoundBody)(w, r)
		return
	}
	switch p := rand.IntN(100); {
	case p < 5:
		resetConnection(w, r)
	case p < 10:
		w.WriteHeader([]int{502, 503, 504}[rand.IntN(3)])
	case p < 13:
		answerWith(500, `{"code": "500", "reason": "Unexpected error."}`)(w, r)
	case p < 17:
		hangUntilCancelled(w, r) // past the upstream timeout
	case p < 20:
		answerWith(200, []string{`<html>maintenance</html>`, `{"signUpUrl": 42}`, `{"signUpUrl": "ftp://x/"}`, `{`}[rand.IntN(4)])(w, r)
	case p < 22:
		answerWith(404, notFoundBody)(w, r)
	case p < 24:
		w.Header().Set("Retry-After", "2")
		answerWith(429, `{"code": "429", "reason": "Too many requests."}`)(w, r)
	case p < 26:
		answerWith(400, `{"code": "400", "reason": "Invalid request."}`)(w, r)
	default:
		if rand.IntN(10) == 0 {
			time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // a slow, good answer
		}
		foundAnswer(w, r)
	}
}

// soakTally is what the soak's callers saw.
type soakTally struct {
	mu        sync.Mutex
	answered  int
	abandoned int
	byStatus  map[string]int
	problems  []string
}

func (s *soakTally) record(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answered++
	s.byStatus[key]++
}

func (s *soakTally) abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.abandoned++
}

func (s *soakTally) problem(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, fmt.Sprintf(format, args...))
}

// checkSoakAnswer checks one answer against the contract and reports
// what is wrong with it, if anything.
func checkSoakAnswer(id string, resp *http.Response, body string) string {
	if resp.Header.Get("X-Request-Id") == "" {
		return "no X-Request-Id"
	}
	switch resp.StatusCode {
	case 200:
		if want := `{"signUpUrl":"https://www.bluetape.com/signup?id=` + id + `"}`; body != want {
			return "wrong body " + body
		}
		if xc := resp.Header.Get("X-Cache"); xc != "HIT" && xc != "MISS" && xc != "STALE" {
			return "X-Cache " + xc
		}
		return ""
	case 400, 404, 502, 503, 504:
	default:
		return fmt.Sprintf("status %d is not in the contract (%s)", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") != "application/json" {
		return "error Content-Type " + resp.Header.Get("Content-Type")
	}
	if resp.StatusCode == 404 && body != `{"code":"404","reason":"Customer not found."}` {
		return "404 body " + body
	}
	if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
		return "503 without Retry-After"
	}
	if !isContractErrorBody(resp.StatusCode, body) {
		return "error body " + body
	}
	if strings.Contains(body, "credentials") {
		return "the upstream rejected the key: " + body
	}
	return ""
}

func isContractErrorBody(status int, body string) bool {
	var v map[string]string
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		return false
	}
	return len(v) == 2 && v["code"] == fmt.Sprint(status) && v["reason"] != ""
}

// TestSoak runs mixed traffic from several callers over many ids against
// an upstream that fails in every way it can, rotates the key and purges
// the cache in the middle, and checks at the end that every request got
// an answer from the contract, that every 200 was for the id asked, and
// that goroutines and heap are back where they started.
func TestSoak(t *testing.T) {
	duration := 8 * time.Second
	if testing.Short() {
		duration = 2 * time.Second
	}
	const oldKey, newKey = "soak-key-old-a1b2", "soak-key-new-c3d4"
	var key atomic.Pointer[string]
	key.Store(new(oldKey))

	up := &soakUpstream{}
	up.accept(oldKey)
	tg := newTestGateway(t, func(o *testOptions) {
		o.Client.Timeout = 250 * time.Millisecond
		o.Client.Credentials = func() (string, string) { return *key.Load(), testAccount }
		o.Client.Breaker = bluetape.BreakerSettings{OpenFor: 200 * time.Millisecond}
		// The lines are written, as in production, but not kept: a
		// buffer of every access line would count as heap grown by the
		// gateway, more of it the faster the machine.
		o.Logger = slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	tg.Upstream.setHandler(up.ServeHTTP)
	admin := tg.startAdmin(t)

	ids := make([]string, 0, 320)
	for i := range 300 {
		ids = append(ids, fmt.Sprintf("c-%03d", i))
	}
	for i := range 10 {
		ids = append(ids, fmt.Sprintf("gone-%d", i))
	}
	ids = append(ids, "bad%20id", "..", strings.Repeat("x", 129))

	if resp, _ := tg.get(t, "/customers/warm/signup"); resp.StatusCode == 0 {
		t.Fatal("warm-up failed")
	}
	baseline := settledGoroutines(tg, 0, 0)
	heapBefore := heapInUse()

	tally := &soakTally{byStatus: map[string]int{}}
	var sent atomic.Int64
	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var callers sync.WaitGroup
	for range 8 {
		callers.Go(func() {
			for ctx.Err() == nil {
				id := ids[rand.IntN(len(ids))]
				rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				abandon := rand.IntN(50) == 0
				if abandon {
					// A caller that gives up before its answer.
					rctx, cancel = context.WithTimeout(context.Background(), time.Duration(1+rand.IntN(30))*time.Millisecond)
				}
				req, _ := http.NewRequestWithContext(rctx, http.MethodGet, tg.URL+"/customers/"+id+"/signup", nil)
				sent.Add(1)
				resp, err := client.Do(req)
				if err != nil {
					cancel()
					if abandon && errors.Is(err, context.DeadlineExceeded) {
						tally.abandon()
						continue
					}
					tally.problem("%s: no answer: %v", id, err)
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				cancel()
				if err != nil {
					if abandon {
						tally.abandon()
						continue
					}
					tally.problem("%s: answer cut: %v", id, err)
					continue
				}
				if p := checkSoakAnswer(id, resp, string(b)); p != "" {
					tally.problem("%s: %s", id, p)
				}
				tally.record(fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Cache")))
			}
		})
	}

	// Events in the middle of the traffic.
	at := func(frac float64) <-chan time.Time { return time.After(time.Duration(frac * float64(duration))) }
	events := []struct {
		at   <-chan time.Time
		name string
		do   func()
	}{
		{at(0.2), "expire", func() { tg.Clock.Advance(16 * time.Minute) }},
		{at(0.3), "rotate", func() { up.accept(oldKey, newKey); key.Store(new(newKey)) }},
		{at(0.5), "purge", func() {
			tg.Cache.Purge()
			for _, id := range ids[:20] {
				req, _ := http.NewRequest(http.MethodDelete, admin+"/cache/customers/"+id, nil)
				req.Header.Set("Authorization", "Bearer "+testAdminToken)
				if resp, err := http.DefaultClient.Do(req); err != nil {
					t.Errorf("admin DELETE: %v", err)
				} else {
					resp.Body.Close()
					if resp.StatusCode != 204 && resp.StatusCode != 404 {
						t.Errorf("admin DELETE: status %d", resp.StatusCode)
					}
				}
			}
		}},
		// Well after the rotation, only the new key is good: any call
		// still carrying the old one would be rejected and counted.
		{at(0.7), "retire old key", func() { up.accept(newKey) }},
		{at(0.8), "expire", func() { tg.Clock.Advance(16 * time.Minute) }},
	}
	for _, e := range events {
		select {
		case <-e.at:
			e.do()
		case <-time.After(2 * duration):
			t.Fatalf("event %s did not fire", e.name)
		}
	}
	callers.Wait()

	tally.mu.Lock()
	defer tally.mu.Unlock()
	keys := make([]string, 0, len(tally.byStatus))
	for k := range tally.byStatus {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var summary []string
	for _, k := range keys {
		summary = append(summary, fmt.Sprintf("%s: %d", strings.TrimSpace(k), tally.byStatus[k]))
	}
	t.Logf("%d requests sent, %d answered, %d abandoned by their caller; %s",
		sent.Load(), tally.answered, tally.abandoned, strings.Join(summary, ", "))
	if n := len(tally.problems); n > 0 {
		t.Errorf("%d answers broke the contract; first ones:\n%s", n, strings.Join(tally.problems[:min(n, 10)], "\n"))
	}
	if got := int64(tally.answered + tally.abandoned); got != sent.Load() {
		t.Errorf("%d requests sent, %d accounted for", sent.Load(), got)
	}
	if tally.answered < 200 {
		t.Errorf("only %d requests answered; the soak did not soak", tally.answered)
	}
	for _, want := range []string{"200 MISS", "200 HIT", "404 ", "502 ", "504 "} {
		if tally.byStatus[want] == 0 {
			t.Errorf("no %q answer: the faults were not exercised", strings.TrimSpace(want))
		}
	}
	if n := up.rejected.Load(); n > 0 {
		t.Errorf("the upstream rejected the key %d times: the rotation was not clean", n)
	}
	served := metricSum(t, tg.Registry, metrics.RequestsTotal)
	if served < float64(tally.answered+1) || served > float64(sent.Load()+1) {
		t.Errorf("%s %v; want between %d answered and %d sent (plus the warm-up)", metrics.RequestsTotal, served, tally.answered, sent.Load())
	}

	// Quiet again: requests in flight, goroutines and heap back to rest.
	gatewaytest.WaitFor(t, 10*time.Second, "no request in flight", func() bool {
		return metricValue(t, tg.Registry, metrics.InFlightRequests) == 0
	})
	client.CloseIdleConnections()
	wantGoroutinesBack(t, tg, baseline, 15*time.Second, "after the soak")
	tg.Cache.Purge()
	if grown := int64(heapInUse()) - int64(heapBefore); grown > 16<<20 {
		t.Errorf("heap in use grew by %d bytes over the soak", grown)
	}
}
