package cache

import "unsafe"

// An entry's id and body are copied into the entry's own allocation: one
// object per cached id, holding the bookkeeping, the id (which go-cache's
// map key shares) and the encoded body, instead of three objects each
// rounded up to its own size class. Entries too large for the records
// below take two allocations, the entry and its bytes.

// record is an Entry followed by room for its id and body.
type record[D any] struct {
	e    Entry
	data D
}

// newRecord allocates a record with data of type D (a byte array) and
// returns its entry and its data, cut to n bytes.
func newRecord[D any](n int) (*Entry, []byte) {
	r := new(record[D])
	return &r.e, unsafe.Slice((*byte)(unsafe.Pointer(&r.data)), unsafe.Sizeof(r.data))[:n:n]
}

// entrySize is the size of an Entry; the records' data sizes below are
// the allocator's size classes up to 256 bytes minus it, so that a record
// wastes no rounding.
const entrySize = unsafe.Sizeof(Entry{})

// newEntry returns an entry holding copies of id and body; a nil body
// makes a negative entry. The entry's key shares its id's bytes.
func newEntry(id string, body []byte, freshUntil, keepUntil int64) *Entry {
	n := len(id) + len(body)
	var (
		e    *Entry
		data []byte
	)
	switch size := entrySize + uintptr(n); {
	case size <= 80:
		e, data = newRecord[[80 - entrySize]byte](n)
	case size <= 96:
		e, data = newRecord[[96 - entrySize]byte](n)
	case size <= 112:
		e, data = newRecord[[112 - entrySize]byte](n)
	case size <= 128:
		e, data = newRecord[[128 - entrySize]byte](n)
	case size <= 144:
		e, data = newRecord[[144 - entrySize]byte](n)
	case size <= 160:
		e, data = newRecord[[160 - entrySize]byte](n)
	case size <= 176:
		e, data = newRecord[[176 - entrySize]byte](n)
	case size <= 192:
		e, data = newRecord[[192 - entrySize]byte](n)
	case size <= 208:
		e, data = newRecord[[208 - entrySize]byte](n)
	case size <= 224:
		e, data = newRecord[[224 - entrySize]byte](n)
	case size <= 240:
		e, data = newRecord[[240 - entrySize]byte](n)
	case size <= 256:
		e, data = newRecord[[256 - entrySize]byte](n)
	default:
		e, data = new(Entry), make([]byte, n)
	}
	copy(data, id)
	if len(id) > 0 {
		e.id = unsafe.String(&data[0], len(id))
	}
	if body != nil {
		copy(data[len(id):], body)
		e.Body = data[len(id):n:n]
	}
	e.FreshUntil, e.keepUntil = freshUntil, keepUntil
	return e
}
