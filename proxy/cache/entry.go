package cache

import (
	"encoding/binary"
	"unsafe"
)

// Every entry is the head of a record: one allocation holding the entry,
// then its id's length (a uvarint) and its id, whose bytes go-cache's map
// key shares, then its encoded body when it fits. One object per cached
// id, sized to the allocator's size class, instead of an entry, an id and
// a body each rounded up on its own.

// record is an Entry followed by its id and, when it fits, its body.
type record[D any] struct {
	e    Entry
	data D
}

// entrySize is the size of an Entry: a record's data starts there.
const entrySize = unsafe.Sizeof(Entry{})

// recordClass allocates records of one size.
type recordClass struct {
	size  uintptr
	alloc func() (*Entry, []byte)
}

// newRecord allocates a record with data of type D, a byte array, and
// returns its entry and its data.
func newRecord[D any]() (*Entry, []byte) {
	r := new(record[D])
	return &r.e, unsafe.Slice((*byte)(unsafe.Pointer(&r.data)), unsafe.Sizeof(r.data))
}

// recordClasses are the allocator's size classes up to 1 KiB, so that a
// record wastes no rounding.
var recordClasses = [...]recordClass{
	{64, newRecord[[64 - entrySize]byte]},
	{80, newRecord[[80 - entrySize]byte]},
	{96, newRecord[[96 - entrySize]byte]},
	{112, newRecord[[112 - entrySize]byte]},
	{128, newRecord[[128 - entrySize]byte]},
	{144, newRecord[[144 - entrySize]byte]},
	{160, newRecord[[160 - entrySize]byte]},
	{176, newRecord[[176 - entrySize]byte]},
	{192, newRecord[[192 - entrySize]byte]},
	{208, newRecord[[208 - entrySize]byte]},
	{224, newRecord[[224 - entrySize]byte]},
	{240, newRecord[[240 - entrySize]byte]},
	{256, newRecord[[256 - entrySize]byte]},
	{288, newRecord[[288 - entrySize]byte]},
	{320, newRecord[[320 - entrySize]byte]},
	{352, newRecord[[352 - entrySize]byte]},
	{384, newRecord[[384 - entrySize]byte]},
	{416, newRecord[[416 - entrySize]byte]},
	{448, newRecord[[448 - entrySize]byte]},
	{480, newRecord[[480 - entrySize]byte]},
	{512, newRecord[[512 - entrySize]byte]},
	{576, newRecord[[576 - entrySize]byte]},
	{640, newRecord[[640 - entrySize]byte]},
	{704, newRecord[[704 - entrySize]byte]},
	{768, newRecord[[768 - entrySize]byte]},
	{896, newRecord[[896 - entrySize]byte]},
	{1024, newRecord[[1024 - entrySize]byte]},
}

// MaxIDLen is the longest id the cache holds; a longer one is never
// cached. The gateway's ids are at most 128 characters.
const MaxIDLen = 1024 - int(entrySize) - 2

// allocRecord returns an entry whose record has room for n bytes of data,
// which must be at most 1024 - entrySize.
func allocRecord(n int) (*Entry, []byte) {
	for _, rc := range recordClasses {
		if entrySize+uintptr(n) <= rc.size {
			return rc.alloc()
		}
	}
	panic("cache: record too large")
}

// newEntry returns an entry holding copies of id and body; a nil body
// makes a negative entry. It returns nil for an id longer than MaxIDLen.
func newEntry(id string, body []byte, freshUntil, keepUntil int64) *Entry {
	if len(id) > MaxIDLen {
		return nil
	}
	var lenBuf [binary.MaxVarintLen64]byte
	prefix := binary.PutUvarint(lenBuf[:], uint64(len(id)))
	head := prefix + len(id)
	var (
		e    *Entry
		data []byte
	)
	if entrySize+uintptr(head+len(body)) <= recordClasses[len(recordClasses)-1].size {
		e, data = allocRecord(head + len(body))
		if body != nil {
			e.Body = data[head : head+len(body) : head+len(body)]
		}
	} else {
		e, data = allocRecord(head)
		e.Body = make([]byte, len(body))
	}
	copy(data, lenBuf[:prefix])
	copy(data[prefix:], id)
	copy(e.Body, body)
	e.FreshUntil, e.keepUntil = freshUntil, keepUntil
	return e
}

// key returns e's id, go-cache's key, which e's record holds. e must have
// been made by newEntry.
func (e *Entry) key() string {
	data := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(e), entrySize)), binary.MaxVarintLen16)
	n, prefix := binary.Uvarint(data)
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(e), entrySize+uintptr(prefix))), int(n))
}
