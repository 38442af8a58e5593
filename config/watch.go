package config

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Watched holds the last good value parsed from a file and re-reads the
// file when its content changes. It polls rather than relying on inotify:
// Kubernetes updates a mounted Secret by swapping a `..data` symlink, which
// file watches on the visible path do not see reliably, while reading the
// path again always follows the links to the current content. A poll of a
// small file once a second costs nothing measurable.
//
// A file that can no longer be read, or whose new content does not parse,
// leaves the last good value in force. Get is safe to call concurrently
// with Reload and Poll, and never blocks.
type Watched[T any] struct {
	path  string
	parse func([]byte) (T, error)
	cur   atomic.Pointer[T]

	mu          sync.Mutex   // serialises Reload
	last        []byte       // content of the value in force; nil if seeded
	seeded      func(T) bool // for a seeded value: whether a parsed value is it
	bad         []byte       // content that failed to parse, reported once
	readFailing bool         // the file could not be read, reported once
}

// NewWatched reads and parses path once. An error here means the file is
// unusable at start, which should stop the process.
func NewWatched[T any](path string, parse func([]byte) (T, error)) (*Watched[T], error) {
	w := &Watched[T]{path: path, parse: parse}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	v, err := parse(data)
	if err != nil {
		return nil, err
	}
	w.cur.Store(&v)
	w.last = data
	return w, nil
}

// newSeededWatched watches a secret file whose content Load has read and
// parsed already: value is in force from the start, and the file is read
// again only at the next Reload. A first Reload that finds the same value
// reports no change.
func newSeededWatched(path string, parse func([]byte) (Secret, error), value Secret) *Watched[Secret] {
	w := &Watched[Secret]{path: path, parse: parse, seeded: func(v Secret) bool { return v == value }}
	w.cur.Store(&value)
	return w
}

// Path returns the watched file's path.
func (w *Watched[T]) Path() string { return w.path }

// Get returns the last good value.
func (w *Watched[T]) Get() T { return *w.cur.Load() }

// Reload reads the file again. It reports whether a new value took effect,
// and an error when the file is unreadable or does not parse; then the last
// good value stays. An unchanged file, or the same bad content seen again,
// returns (false, nil).
func (w *Watched[T]) Reload() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		if w.readFailing {
			return false, nil
		}
		w.readFailing, w.bad = true, nil
		return false, fmt.Errorf("reading %s: %w", w.path, err)
	}
	w.readFailing = false
	if bytes.Equal(data, w.last) {
		w.bad = nil
		return false, nil
	}
	if w.bad != nil && bytes.Equal(data, w.bad) {
		return false, nil
	}
	v, err := w.parse(data)
	if err != nil {
		w.bad = append([]byte{}, data...)
		return false, fmt.Errorf("parsing %s: %w", w.path, err)
	}
	if w.last == nil && w.seeded != nil && w.seeded(v) {
		// The seeded value's own content: no change.
		w.last, w.bad = data, nil
		return false, nil
	}
	w.cur.Store(&v)
	w.last, w.bad = data, nil
	return true, nil
}

// Poll reloads the file once and reports the outcome to report when it
// changed something: a new value, or a new failure. The caller decides
// how often to poll (ReloadInterval in production).
func (w *Watched[T]) Poll(report func(changed bool, err error)) {
	changed, err := w.Reload()
	if changed || err != nil {
		report(changed, err)
	}
}

// ReloadInterval is how often watched files are polled.
const ReloadInterval = time.Second
