package gateway

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"sync/atomic"
)

// requestIDs makes the ids of requests that come without one: 32 hex digits, as
// httpx makes them, but a random prefix drawn once per gateway and a counter
// instead of 128 random bits per request. Ids only need to be unique, not secret.
type requestIDs struct {
	prefix [16]byte // hex of 64 random bits
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	ids := &requestIDs{}
	hex.Encode(ids.prefix[:], b[:])
	return ids
}

func (ids *requestIDs) next() string {
	var b [32]byte
	copy(b[:16], ids.prefix[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], ids.n.Add(1))
	hex.Encode(b[16:], n[:])
	return string(b[:])
}
