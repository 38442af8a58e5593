package gatewaytest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a program started by a test with Start. What it writes is
// collected while it runs.
type Process struct {
	// Stdout and Stderr hold what the program has written so far.
	Stdout, Stderr *LogBuffer

	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// Start runs the program name with args. Its environment is the test's
// own without any GATEWAY_ or BLUETAPE_ variable, followed by env; for a
// variable set twice the last value wins. Start fails the test if the
// program cannot be started. When the test ends, the program is killed if
// it is still running and waited for (at most 10s), and, if the test
// failed, its output is logged.
func Start(t testing.TB, env []string, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GATEWAY_") && !strings.HasPrefix(kv, "BLUETAPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	p := &Process{Stdout: &LogBuffer{}, Stderr: &LogBuffer{}, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = cmd.Process.Kill()
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name(), cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", p.name(), p.Output())
		}
	})
	return p
}

func (p *Process) name() string { return filepath.Base(p.cmd.Path) }

// Done returns a channel that is closed when the program has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the program has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err returns how the program ended: nil for a zero exit status, else the
// error of exec.Cmd.Wait, such as an *exec.ExitError. It returns nil while
// the program runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Output returns what the program has written so far: its standard output,
// then its standard error.
func (p *Process) Output() string { return p.Stdout.String() + p.Stderr.String() }

// Signal sends sig to the program, failing the test if it cannot.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Wait waits up to limit for the program to end and returns Err. It fails
// the test, showing the output, if the program is still running then.
func (p *Process) Wait(t testing.TB, limit time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %v\nstdout:\n%s\nstderr:\n%s", p.name(), limit, p.Stdout, p.Stderr)
		return nil
	}
}

// Stop sends SIGTERM and waits up to 20s for the program to end; the test
// fails unless it exits with status 0. Stopping a program that has
// already ended only checks its exit status.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.Exited() {
		t.Fatal(err)
	}
	if err := p.Wait(t, 20*time.Second); err != nil {
		t.Errorf("%s exited with %v after SIGTERM; want 0\nstderr:\n%s", p.name(), err, p.Stderr)
	}
}

// FreeAddr returns a 127.0.0.1 address whose port was free when it was
// called. Another program may take the port before the caller uses it:
// where a listener of the test's own can take port 0 instead, it should.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return FreeAddrs(t, 1)[0]
}

// FreeAddrs returns n different 127.0.0.1 addresses whose ports were free
// when it was called: each port is held until all are chosen, so that
// the system cannot give the same one twice.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// StartListening starts a server with start, which returns it and the
// URL that answers 200 once it is ready, and waits for at most 30s until
// it does. The server's ports were free when start chose them; should
// another program take one first, the server exits saying so, and
// StartListening starts it again on new ones, three times at most. It
// fails the test, showing the server's output, if the server exits
// otherwise or is not ready in time.
func StartListening(t testing.TB, start func() (p *Process, readyURL string)) *Process {
	t.Helper()
	for try := 1; ; try++ {
		p, readyURL := start()
		if p.waitReady(t, readyURL) {
			return p
		}
		if try == 3 || !strings.Contains(p.Output(), "address already in use") {
			t.Fatalf("%s exited at start (%v):\n%s", p.name(), p.Err(), p.Output())
		}
	}
}

// waitReady waits, for at most 30s, until url answers 200, and reports
// false if p exits first.
func (p *Process) waitReady(t testing.TB, url string) bool {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	exited := false
	WaitFor(t, 30*time.Second, p.name()+" to listen and be ready", func() bool {
		if p.Exited() {
			exited = true
			return true
		}
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return !exited
}
