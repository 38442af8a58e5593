// Package redistest runs real redis-server processes for tests: each on a
// free loopback port, without persistence, in a temporary directory, and
// killed when the test ends. Besides a standalone server, it starts a
// Sentinel watching a server, and a one-node Redis Cluster.
//
// Without a redis-server binary on PATH, the Start functions fail the test
// when the CI environment variable is "true" and skip it otherwise.
// Debian's redis-server package provides one.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluetape/bluetape-gateway/proxy/gatewaytest"
	"github.com/redis/go-redis/v9"
)

// startTimeout bounds the wait for a started server to answer PING, and
// for a Sentinel or a cluster to be ready.
const startTimeout = 10 * time.Second

// Server is a running redis-server, a Sentinel or a cluster node. Its
// methods must be called from the test's goroutine, or be otherwise
// serialised.
type Server struct {
	// Addr is the server's host:port on loopback.
	Addr string

	bin, dir string
	port     int
	// args returns the command line for the server on port.
	args func(port int) ([]string, error)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start starts a redis-server on a free loopback port and waits until it
// answers PING. The server is killed at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
	s.args = func(port int) ([]string, error) { return s.serverArgs(port), nil }
	s.launch(t)
	return s
}

// StartSentinel starts a Sentinel on a free loopback port that monitors
// master under name, with a quorum of 1, and waits until it gives
// master's address for name. The Sentinel is killed at the end of the
// test.
func StartSentinel(t testing.TB, master *Server, name string) *Server {
	t.Helper()
	s := newServer(t)
	conf := filepath.Join(s.dir, "sentinel.conf")
	host, port, err := net.SplitHostPort(master.Addr)
	if err != nil {
		t.Fatal(err)
	}
	s.args = func(sport int) ([]string, error) {
		// Sentinel rewrites its configuration file, so it must have one.
		text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile \"\"\nsentinel monitor %s %s %s 1\n",
			sport, s.dir, name, host, port)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		return []string{conf, "--sentinel"}, nil
	}
	s.launch(t)

	c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	defer c.Close()
	wait(t, "the Sentinel to know the master "+name, func(ctx context.Context) bool {
		addr, err := c.GetMasterAddrByName(ctx, name).Result()
		return err == nil && len(addr) == 2 && net.JoinHostPort(addr[0], addr[1]) == master.Addr
	})
	return s
}

// StartCluster starts a redis-server in cluster mode on a free loopback
// port, the only node of its cluster and serving all 16384 slots, and
// waits until the cluster's state is ok. The server is killed at the end
// of the test.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
	nodes := filepath.Join(s.dir, "nodes.conf")
	s.args = func(port int) ([]string, error) {
		return append(s.serverArgs(port),
			"--cluster-enabled", "yes", "--cluster-config-file", nodes,
			"--cluster-announce-ip", "127.0.0.1"), nil
	}
	s.launch(t)

	c := redis.NewClient(&redis.Options{Addr: s.Addr, DisableIdentity: true})
	defer c.Close()
	if err := c.Do(context.Background(), "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("assigning the slots to the cluster node: %v", err)
	}
	wait(t, "the cluster state to be ok", func(ctx context.Context) bool {
		info, err := c.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	return s
}

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// Stop kills the server, as a crash would, and waits for it to exit.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port, empty, and waits
// until it answers PING.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		t.Fatalf("restarting redis-server: %v", err)
	}
}

// newServer finds redis-server, or fails or skips the test, and prepares
// a Server that is stopped at the end of the test.
func newServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		const msg = "redis-server is not installed (Debian: apt-get install -y redis-server)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipping outside CI")
	}
	s := &Server{bin: bin, dir: t.TempDir()}
	t.Cleanup(s.Stop)
	return s
}

// launch starts s on a free port.
func (s *Server) launch(t testing.TB) {
	t.Helper()
	// A free port may be taken between closing our listener and the
	// server's bind; try again a few times.
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("starting redis-server: %v", err)
		}
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// serverArgs is the command line of a server without persistence.
func (s *Server) serverArgs(port int) []string {
	return []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", ""}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	args, err := s.args(s.port)
	if err != nil {
		return err
	}
	out := &bytes.Buffer{}
	cmd := exec.Command(s.bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(startTimeout)
	for !ping(addr) {
		select {
		case <-done:
			return fmt.Errorf("redis-server exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return errors.New("redis-server did not answer PING within " + startTimeout.String())
		}
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
		}
	}
	s.cmd, s.done = cmd, done
	return nil
}

// wait polls ready, each call bounded by a second, until it reports true
// or startTimeout has passed, which fails the test.
func wait(t testing.TB, what string, ready func(context.Context) bool) {
	t.Helper()
	gatewaytest.WaitFor(t, startTimeout, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return ready(ctx)
	})
}

// ping reports whether a Redis server at addr answers PING.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

func freePort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(gatewaytest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
