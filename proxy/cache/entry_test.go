package cache

import (
	"bytes"
	"strings"
	"testing"
)

// An entry holds its own copies of the id and body, whatever their sizes:
// the caller's buffers may be reused at once, and every size, in a record
// or in the two-allocation fallback, reads back exactly.
func TestEntryHoldsCopies(t *testing.T) {
	c, _ := newCache(t, 1000)
	for n := 0; n <= 300; n++ {
		idBuf := []byte("id-" + strings.Repeat("i", n%40))
		id := string(idBuf)
		body := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
		want := bytes.Clone(body)
		c.SetFound(id, body)
		for i := range body {
			body[i] = '!'
		}
		e, st := c.Get(id)
		if st != Fresh || !bytes.Equal(e.Body, want) || e.Negative() {
			t.Fatalf("body of %d bytes: got %q (state %v); want %q", n, e.Body, st, want)
		}
		if len(e.Body) != cap(e.Body) {
			t.Fatalf("body of %d bytes has room for %d: an append would write into the id", n, cap(e.Body))
		}
		if e.key() != id {
			t.Fatalf("key %q; want %q", e.key(), id)
		}
	}
	c.SetNotFound("gone")
	if e, st := c.Get("gone"); st != Fresh {
		t.Fatalf("negative entry: state %v; want Fresh", st)
	} else if !e.Negative() || e.key() != "gone" {
		t.Fatalf("negative entry: negative %v, key %q", e.Negative(), e.key())
	}
	c.SetFound("empty", nil)
	if e, st := c.Get("empty"); st != Fresh {
		t.Fatalf("empty body: state %v; want Fresh", st)
	} else if e.Negative() || len(e.Body) != 0 {
		t.Fatalf("empty body: negative %v, body %q", e.Negative(), e.Body)
	}
}

// Bodies too large for a record are held beside it, ids up to MaxIDLen
// are held, and a longer id is never cached.
func TestEntryLongIDsAndBodies(t *testing.T) {
	c, _ := newCache(t, 10)
	long := bytes.Repeat([]byte("b"), 3000)
	for _, id := range []string{"x", strings.Repeat("i", 200), strings.Repeat("j", MaxIDLen)} {
		c.SetFound(id, long)
		if e, st := c.Get(id); st != Fresh || !bytes.Equal(e.Body, long) || e.key() != id {
			t.Fatalf("id of %d bytes with a 3000-byte body: state %v", len(id), st)
		}
	}
	tooLong := strings.Repeat("k", MaxIDLen+1)
	c.SetFound(tooLong, []byte("{}"))
	c.SetNotFound(tooLong)
	if _, st := c.Get(tooLong); st != Miss {
		t.Fatalf("an id of %d bytes was cached", len(tooLong))
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("Len() = %d; want 3", n)
	}
}
