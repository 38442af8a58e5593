package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// floodCommand sends a fixed number of requests, each for an id never asked
// before, over a pool of keep-alive connections, and exits when all have
// been answered. It shows whether a caching proxy's memory stays bounded
// whatever ids callers send.
//
// It prints one machine-readable line, in the same form as bench/ids.lua:
//
//	BENCH requests=... duration_us=... rps=... p50_us=... p99_us=... p999_us=... max_us=... err_connect=0 err_read=0 err_write=0 err_status=0 err_timeout=0
func floodCommand(fs *flag.FlagSet) func() error {
	lf := defineLoadFlags(fs, 1_000_000, "number of requests, one per distinct id")
	prefix := fs.String("prefix", fmt.Sprintf("flood%d", time.Now().Unix()), "id prefix, unique per run")
	c := fs.Int("c", 64, "concurrent connections")
	return func() error {
		return flood(lf, *prefix, *c)
	}
}

func flood(lf loadFlags, prefix string, c int) error {
	n := *lf.n
	client := &http.Client{
		Timeout: *lf.timeout,
		Transport: &http.Transport{
			MaxIdleConns:        c,
			MaxIdleConnsPerHost: c,
			MaxConnsPerHost:     c,
			DisableCompression:  true,
		},
	}
	var (
		next                                 atomic.Int64
		errStatus, errTimeout, errRead, errs atomic.Int64
		wg                                   sync.WaitGroup
		lat                                  = make([][]int32, c)
	)
	start := time.Now()
	for w := range c {
		wg.Go(func() {
			mine := make([]int32, 0, n/c+1)
			for {
				i := next.Add(1)
				if i > int64(n) {
					break
				}
				url := *lf.target + fmt.Sprintf(*lf.path, fmt.Sprintf("%s-%d", prefix, i))
				t0 := time.Now()
				resp, err := client.Get(url)
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						errTimeout.Add(1)
					} else {
						errs.Add(1)
					}
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					errRead.Add(1)
					continue
				}
				if resp.StatusCode >= 400 {
					errStatus.Add(1)
				}
				mine = append(mine, int32(time.Since(t0).Microseconds()))
			}
			lat[w] = mine
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(lat...)
	if len(all) == 0 {
		return errors.New("no answers")
	}
	slices.Sort(all)
	pct := func(p float64) int32 { return all[min(len(all)-1, int(float64(len(all))*p/100))] }
	fmt.Printf("BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d "+
		"err_connect=%d err_read=%d err_write=0 err_status=%d err_timeout=%d\n",
		n, elapsed.Microseconds(), float64(n)/elapsed.Seconds(), pct(50), pct(99), pct(99.9), all[len(all)-1],
		errs.Load(), errRead.Load(), errStatus.Load(), errTimeout.Load())
	return nil
}
