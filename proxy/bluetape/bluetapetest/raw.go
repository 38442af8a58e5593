// Package bluetapetest provides a fake BlueTape upstream that writes raw
// bytes, for tests of answers that net/http refuses to parse and whose
// errors quote what the upstream sent.
package bluetapetest

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RawUpstream is a TCP server on loopback that reads one HTTP request per
// connection, answers it with fixed bytes and closes the connection.
type RawUpstream struct {
	// URL is the server's base URL, such as "http://127.0.0.1:41234".
	URL string

	answer   []byte
	ln       net.Listener
	requests atomic.Int64
	wg       sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// connDeadline bounds each connection, so that a client that never sends
// its request cannot keep the server from closing.
const connDeadline = 10 * time.Second

// NewRawUpstream starts a RawUpstream that answers every request with
// answer, byte for byte. It is closed when the test ends; it fails the
// test if it cannot listen.
func NewRawUpstream(t testing.TB, answer string) *RawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &RawUpstream{URL: "http://" + ln.Addr().String(), answer: []byte(answer), ln: ln, conns: map[net.Conn]struct{}{}}
	u.wg.Add(1)
	go u.serve()
	t.Cleanup(u.Close)
	return u
}

func (u *RawUpstream) serve() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			c.Close()
			return
		}
		u.conns[c] = struct{}{}
		u.wg.Add(1)
		u.mu.Unlock()
		go u.answerOne(c)
	}
}

func (u *RawUpstream) answerOne(c net.Conn) {
	defer u.wg.Done()
	defer func() {
		u.mu.Lock()
		delete(u.conns, c)
		u.mu.Unlock()
		c.Close()
	}()
	c.SetDeadline(time.Now().Add(connDeadline))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	req.Body.Close()
	u.requests.Add(1)
	c.Write(u.answer)
}

// Requests returns how many requests the server has read.
func (u *RawUpstream) Requests() int { return int(u.requests.Load()) }

// Close stops the server, closes its open connections and waits for its
// goroutines. It may be called more than once.
func (u *RawUpstream) Close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	u.ln.Close()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// HeaderLineAnswer is a 200 answer with line among its header lines, as
// sent: a line without a colon makes net/http fail with
// `malformed MIME header: missing colon: "<line>"`.
func HeaderLineAnswer(line string) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + line + "\r\nContent-Length: 2\r\n\r\n{}"
}

// ContentLengthAnswer is a 200 answer whose Content-Length header is v: a
// value that is not a number makes net/http fail with
// `bad Content-Length "<v>"`.
func ContentLengthAnswer(v string) string {
	return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + v + "\r\n\r\n{}"
}
