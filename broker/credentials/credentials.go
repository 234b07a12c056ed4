// Package credentials keeps the per-device MQTT passwords of the edge agent's broker.
//
// The credentials file is JSON, readable and writable only by its owner (mode 0600):
//
//	{
//	  "devices": [
//	    {"id": "sensor_001", "hash": "$2a$10$...", "created_at": "2026-11-25T12:00:00Z"}
//	  ]
//	}
//
// Each device authenticates with its id as MQTT username and a password of which only
// the bcrypt hash is stored. [Add] makes a random password for a new device, stores its
// hash and returns the password once; it refuses an id that is already present
// ([ErrExists]), so rotating a password is an explicit [Remove] then [Add]. Every write
// replaces the file atomically (temporary file, fsync, rename), so a reader never sees
// half a file. Concurrent writers in different processes are not coordinated: the last
// rename wins.
//
// bcrypt is slow on purpose. [Store.Verify] therefore remembers each successful
// verification (a keyed SHA-256 of the password, never the password itself) so that a
// reconnecting device costs a hash lookup, not a bcrypt run ([Store.Cached] asks only
// that); at most GOMAXPROCS bcrypt comparisons run at once. An unknown id costs the same
// bcrypt comparison as a wrong password, so that timing does not tell which ids exist.
// A store notices edits of its file through [Store.ReloadIfChanged].
package credentials

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/atrium-iot/atrium/internal/atomicfile"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Cost is the bcrypt cost of the hashes [Add] writes: about 50–100 ms per verification on
// a gateway-class CPU, paid once per device and process thanks to the verification cache.
const Cost = 10

// hashCost is the cost Add uses: Cost, lowered by this package's tests to keep them quick.
var hashCost = Cost

// passwordBytes is how much randomness a generated password carries (192 bits).
const passwordBytes = 24

var (
	// ErrExists is returned by Add for an id that already has credentials.
	ErrExists = errors.New("device already exists")
	// ErrNotFound is returned by Remove for an id without credentials.
	ErrNotFound = errors.New("device not found")
	// ErrInvalidID is returned for an id that is not a valid sensor id.
	ErrInvalidID = errors.New("invalid device id")
)

// Device is one entry of the credentials file.
type Device struct {
	ID        string    `json:"id"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

type document struct {
	Devices []Device `json:"devices"`
}

// Add creates credentials for device id in the file at path (creating the file if it
// does not exist) and returns the generated password. Only its bcrypt hash is stored:
// the password cannot be recovered later.
func Add(path, id string) (password string, err error) {
	if !reading.ValidID(id) {
		return "", fmt.Errorf("credentials: add %q: %w", id, ErrInvalidID)
	}
	doc, err := readDocument(path)
	if errors.Is(err, os.ErrNotExist) {
		doc, err = &document{}, nil
	}
	if err != nil {
		return "", fmt.Errorf("credentials: add %q: %w", id, err)
	}
	if slices.ContainsFunc(doc.Devices, func(d Device) bool { return d.ID == id }) {
		return "", fmt.Errorf("credentials: add %q: %w", id, ErrExists)
	}
	raw := make([]byte, passwordBytes)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("credentials: add %q: random: %w", id, err)
	}
	password = base64.RawURLEncoding.EncodeToString(raw)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), hashCost)
	if err != nil {
		return "", fmt.Errorf("credentials: add %q: hash: %w", id, err)
	}
	doc.Devices = append(doc.Devices, Device{ID: id, Hash: string(hash), CreatedAt: time.Now().UTC().Truncate(time.Second)})
	if err := writeDocument(path, doc); err != nil {
		return "", fmt.Errorf("credentials: add %q: %w", id, err)
	}
	return password, nil
}

// Remove deletes the credentials of device id from the file at path.
func Remove(path, id string) error {
	doc, err := readDocument(path)
	if err != nil {
		return fmt.Errorf("credentials: remove %q: %w", id, err)
	}
	n := len(doc.Devices)
	doc.Devices = slices.DeleteFunc(doc.Devices, func(d Device) bool { return d.ID == id })
	if len(doc.Devices) == n {
		return fmt.Errorf("credentials: remove %q: %w", id, ErrNotFound)
	}
	if err := writeDocument(path, doc); err != nil {
		return fmt.Errorf("credentials: remove %q: %w", id, err)
	}
	return nil
}

// List returns the devices in the file at path, sorted by id.
func List(path string) ([]Device, error) {
	doc, err := readDocument(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: list: %w", err)
	}
	out := slices.Clone(doc.Devices)
	slices.SortFunc(out, func(a, b Device) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// readDocument reads and validates the file: every id valid and unique, every hash a bcrypt hash.
func readDocument(path string) (*document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDocument(b)
}

func parseDocument(b []byte) (*document, error) {
	var doc document
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	seen := make(map[string]bool, len(doc.Devices))
	for i, d := range doc.Devices {
		if !reading.ValidID(d.ID) {
			return nil, fmt.Errorf("device %d: %q: %w", i, d.ID, ErrInvalidID)
		}
		if seen[d.ID] {
			return nil, fmt.Errorf("device %d: %q: listed twice", i, d.ID)
		}
		seen[d.ID] = true
		if _, err := bcrypt.Cost([]byte(d.Hash)); err != nil {
			return nil, fmt.Errorf("device %d: %q: hash: %w", i, d.ID, err)
		}
	}
	return &doc, nil
}

// writeDocument replaces the file at path atomically with mode 0600.
func writeDocument(path string, doc *document) error {
	if doc.Devices == nil {
		doc.Devices = []Device{}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Store verifies device passwords against a credentials file held in memory.
// It is safe for concurrent use.
type Store struct {
	path string
	key  [32]byte      // keys the verification cache, so it holds nothing reusable elsewhere
	sem  chan struct{} // bounds concurrent bcrypt comparisons

	mu       sync.RWMutex
	hashes   map[string]string   // id → bcrypt hash
	verified map[string][32]byte // id → HMAC of the last password that matched hashes[id]
	decoy    string              // a hash of the most common cost, compared for unknown ids
	modTime  time.Time
	size     int64

	compares atomic.Int64 // bcrypt comparisons run, for tests
}

// Load reads the credentials file at path into a new Store.
func Load(path string) (*Store, error) {
	s := &Store{path: path, sem: make(chan struct{}, runtime.GOMAXPROCS(0))}
	if _, err := rand.Read(s.key[:]); err != nil {
		return nil, fmt.Errorf("credentials: load: random: %w", err)
	}
	if _, err := s.reload(true); err != nil {
		return nil, fmt.Errorf("credentials: load %s: %w", path, err)
	}
	return s, nil
}

// Path is the file the store was loaded from.
func (s *Store) Path() string { return s.path }

// Len is the number of devices known.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.hashes)
}

// Has reports whether device id has credentials.
func (s *Store) Has(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.hashes[id]
	return ok
}

// ReloadIfChanged re-reads the file when its size or modification time changed since the
// last read. On error the store keeps the devices it had.
func (s *Store) ReloadIfChanged() (changed bool, err error) {
	changed, err = s.reload(false)
	if err != nil {
		return false, fmt.Errorf("credentials: reload %s: %w", s.path, err)
	}
	return changed, nil
}

func (s *Store) reload(force bool) (bool, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return false, err
	}
	s.mu.RLock()
	same := !force && fi.ModTime().Equal(s.modTime) && fi.Size() == s.size
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	doc, err := readDocument(s.path)
	if err != nil {
		return false, err
	}
	hashes := make(map[string]string, len(doc.Devices))
	for _, d := range doc.Devices {
		hashes[d.ID] = d.Hash
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.verified {
		if s.hashes[id] != hashes[id] { // removed or re-keyed: forget what was verified
			delete(s.verified, id)
		}
	}
	if s.verified == nil {
		s.verified = make(map[string][32]byte)
	}
	s.hashes, s.decoy, s.modTime, s.size = hashes, decoy(doc.Devices), fi.ModTime(), fi.Size()
	return true, nil
}

// decoy picks the hash that an unknown id is compared against: one of the most common
// cost (the higher cost on a tie), so that refusing an unknown id takes as long as
// refusing a wrong password. Comparing against a real device's hash is safe: the answer
// for an unknown id is false whatever the comparison says, and it is never cached.
// "" when there are no devices (then there is no id to tell apart).
func decoy(devs []Device) string {
	count := map[int]int{}
	best, bestCost := "", -1
	for _, d := range devs {
		c, err := bcrypt.Cost([]byte(d.Hash))
		if err != nil {
			continue // parseDocument has checked every hash
		}
		count[c]++
		if bestCost < 0 || count[c] > count[bestCost] || (count[c] == count[bestCost] && c > bestCost) {
			best, bestCost = d.Hash, c
		}
	}
	return best
}

// Verify reports whether password is the password of device id. A password that matched
// once is remembered, so verifying it again is cheap. Anything else costs one bcrypt
// comparison, for an unknown id too.
func (s *Store) Verify(id, password string) bool {
	sum := s.mac(password)
	s.mu.RLock()
	hash, known := s.hashes[id]
	cached, hit := s.verified[id]
	decoy := s.decoy
	s.mu.RUnlock()
	if known && hit && hmac.Equal(cached[:], sum[:]) {
		return true
	}
	if !known {
		if decoy == "" {
			return false
		}
		hash = decoy
	}

	s.sem <- struct{}{}
	s.compares.Add(1)
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	<-s.sem
	if err != nil || !known {
		return false
	}
	s.mu.Lock()
	if s.hashes[id] == hash { // not removed or re-keyed meanwhile
		s.verified[id] = sum
	}
	s.mu.Unlock()
	return true
}

// Cached reports, without running bcrypt, whether password is the password of device id
// that Verify last accepted. false means "not known to be right", not "wrong": the
// caller then verifies. Only the right password can be cached, so answering it early
// tells nothing to someone guessing.
func (s *Store) Cached(id, password string) bool {
	sum := s.mac(password)
	s.mu.RLock()
	cached, hit := s.verified[id]
	s.mu.RUnlock()
	return hit && hmac.Equal(cached[:], sum[:])
}

// mac is the keyed hash under which a verified password is remembered.
func (s *Store) mac(password string) [32]byte {
	mac := hmac.New(sha256.New, s.key[:])
	mac.Write([]byte(password))
	var sum [32]byte
	mac.Sum(sum[:0])
	return sum
}
