package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// stampedeCommand measures how a caching proxy handles many concurrent
// requests for one id that is not cached yet.
//
// It opens -n keep-alive connections to the proxy and warms each one with a
// request that never reaches the upstream, then writes the same GET request
// for a fresh id on every connection at once. It reads the fake upstream's
// call count (GET /calls) before and after, and prints one machine-readable
// line:
//
//	STAMPEDE n=200 ok=200 upstream_calls=1 first_ms=... p50_ms=... last_ms=... spread_ms=... max_after_upstream_ms=...
//
// Times are measured from the moment the requests were released; spread is
// the time between the first and the last answer; max_after_upstream is how
// long after the upstream's answer the last caller got its own.
func stampedeCommand(fs *flag.FlagSet) func() error {
	lf := defineLoadFlags(fs, 200, "number of concurrent requests")
	id := fs.String("id", fmt.Sprintf("stampede-%d", time.Now().UnixNano()), "the cold id to request")
	warmPath := fs.String("warm-path", "/customers/!/signup", "path used to open each connection; must not reach the upstream")
	upstream := fs.String("upstream", "http://127.0.0.1:8081", "fake upstream base URL (for /calls)")
	return func() error {
		return stampede(lf, *id, *warmPath, *upstream)
	}
}

func stampede(lf loadFlags, id, warmPath, upstream string) error {
	n, timeout := *lf.n, *lf.timeout
	target, err := url.Parse(*lf.target)
	if err != nil || target.Host == "" {
		return fmt.Errorf("-target %q: want a base URL such as http://127.0.0.1:8080", *lf.target)
	}
	before, err := readCalls(upstream)
	if err != nil {
		return err
	}
	conns := make([]*clientConn, n)
	for i := range conns {
		c, err := dial(target.Host)
		if err != nil {
			return fmt.Errorf("connecting: %w", err)
		}
		defer c.conn.Close()
		if _, _, err := c.get(warmPath, timeout); err != nil {
			return fmt.Errorf("warming connection: %w", err)
		}
		conns[i] = c
	}
	mid, err := readCalls(upstream)
	if err != nil {
		return err
	}
	if mid.Calls != before.Calls {
		return fmt.Errorf("warm path %q reached the upstream", warmPath)
	}

	path := fmt.Sprintf(*lf.path, id)
	wantBody := `"signUpUrl"`
	var (
		wg      sync.WaitGroup
		release = make(chan struct{})
		done    = make([]time.Time, n)
		status  = make([]int, n)
		errs    = make([]error, n)
	)
	for i, c := range conns {
		wg.Go(func() {
			<-release
			code, body, err := c.get(path, timeout)
			done[i] = time.Now()
			status[i] = code
			if err == nil && code == http.StatusOK && !strings.Contains(body, wantBody) {
				err = fmt.Errorf("unexpected body %q", body)
			}
			errs[i] = err
		})
	}
	time.Sleep(50 * time.Millisecond) // let every goroutine park on release
	start := time.Now()
	close(release)
	wg.Wait()

	after, err := readCalls(upstream)
	if err != nil {
		return err
	}

	ok := 0
	var lat []time.Duration
	for i := range conns {
		if errs[i] != nil {
			log.Printf("request %d: %v", i, errs[i])
			continue
		}
		if status[i] == http.StatusOK {
			ok++
		}
		lat = append(lat, done[i].Sub(start))
	}
	if len(lat) == 0 {
		return errors.New("no answers")
	}
	slices.Sort(lat)
	first, last := lat[0], lat[len(lat)-1]
	afterUpstream := -1.0
	if after.LastAnswerUnixNano > 0 {
		upAt := time.Unix(0, after.LastAnswerUnixNano)
		afterUpstream = ms(start.Add(last).Sub(upAt))
	}
	fmt.Printf("STAMPEDE n=%d ok=%d upstream_calls=%d first_ms=%.2f p50_ms=%.2f last_ms=%.2f spread_ms=%.2f max_after_upstream_ms=%.2f\n",
		n, ok, after.Calls-mid.Calls, ms(first), ms(lat[len(lat)/2]), ms(last), ms(last-first), afterUpstream)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// clientConn is one HTTP/1.1 keep-alive connection driven by hand, so that the
// requests leave at the same instant instead of waiting for a pooled client.
type clientConn struct {
	conn net.Conn
	r    *bufio.Reader
	host string
}

func dial(addr string) (*clientConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &clientConn{conn: c, r: bufio.NewReader(c), host: addr}, nil
}

func (c *clientConn) get(path string, timeout time.Duration) (int, string, error) {
	c.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c.conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, c.host); err != nil {
		return 0, "", fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return 0, "", fmt.Errorf("reading response: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, "", fmt.Errorf("reading body: %w", err)
	}
	return resp.StatusCode, string(b), nil
}

// readCalls returns the fake upstream's counts (GET /calls at base).
func readCalls(base string) (callCounts, error) {
	var u callCounts
	resp, err := http.Get(base + "/calls")
	if err != nil {
		return u, fmt.Errorf("reading upstream calls: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return u, fmt.Errorf("reading upstream calls: GET /calls: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil {
		return u, fmt.Errorf("reading upstream calls: %w", err)
	}
	return u, nil
}
