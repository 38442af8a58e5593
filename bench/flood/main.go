// Command flood sends a fixed number of requests, each for an id never asked
// before, over a pool of keep-alive connections, and exits when all have been
// answered (bench/run.sh). It shows whether a caching proxy's memory stays
// bounded whatever ids callers send.
//
// It prints one machine-readable line, in the same form as the wrk scripts:
//
//	BENCH requests=... duration_us=... rps=... p50_us=... p99_us=... p999_us=... max_us=... err_connect=0 err_read=0 err_write=0 err_status=0 err_timeout=0
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	target := flag.String("target", "http://127.0.0.1:8080", "proxy base URL")
	pathTmpl := flag.String("path", "/customers/%s/signup", "request path; %s is replaced by the id")
	prefix := flag.String("prefix", fmt.Sprintf("flood%d", time.Now().Unix()), "id prefix, unique per run")
	n := flag.Int("n", 1_000_000, "number of requests, one per distinct id")
	c := flag.Int("c", 64, "concurrent connections")
	timeout := flag.Duration("timeout", 10*time.Second, "deadline for each answer")
	flag.Parse()

	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			MaxIdleConns:        *c,
			MaxIdleConnsPerHost: *c,
			MaxConnsPerHost:     *c,
			DisableCompression:  true,
		},
	}
	var (
		next                                 atomic.Int64
		errStatus, errTimeout, errRead, errs atomic.Int64
		wg                                   sync.WaitGroup
		lat                                  = make([][]int32, *c)
	)
	start := time.Now()
	for w := range *c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]int32, 0, *n / *c + 1)
			for {
				i := next.Add(1)
				if i > int64(*n) {
					break
				}
				url := *target + fmt.Sprintf(*pathTmpl, fmt.Sprintf("%s-%d", *prefix, i))
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
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	all := slices.Concat(lat...)
	if len(all) == 0 {
		log.Fatal("no answers")
	}
	slices.Sort(all)
	pct := func(p float64) int32 { return all[min(len(all)-1, int(float64(len(all))*p/100))] }
	fmt.Fprintf(os.Stdout, "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d "+
		"err_connect=%d err_read=%d err_write=0 err_status=%d err_timeout=%d\n",
		*n, elapsed.Microseconds(), float64(*n)/elapsed.Seconds(), pct(50), pct(99), pct(99.9), all[len(all)-1],
		errs.Load(), errRead.Load(), errStatus.Load(), errTimeout.Load())
}
