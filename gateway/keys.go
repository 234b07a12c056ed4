package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/atrium-iot/atrium/internal/atomicfile"
)

// Scope is a permission an API key carries.
type Scope string

// The scopes of the gateway's policy. Admin implies read and ingest.
const (
	ScopeRead   Scope = "read"
	ScopeIngest Scope = "ingest"
	ScopeAdmin  Scope = "admin"
)

// DefaultKeysFile is the name of the keys file made under -data-dir when no -keys
// file is given.
const DefaultKeysFile = "gateway-keys.json"

// keyPrefix starts every key this package makes, so a leaked key is recognisable.
const keyPrefix = "atr_"

// Key is one entry of the keys file: a principal, its name and its scopes, known
// either by an API key — never stored, only the hex SHA-256 of it — or by the
// subject of a client certificate (see NormalizeSubject), never both.
type Key struct {
	Name    string  `json:"name"`
	SHA256  string  `json:"sha256,omitempty"`
	Subject string  `json:"subject,omitempty"`
	Scopes  []Scope `json:"scopes"`
}

// HashKey is the hex SHA-256 of a key, as the keys file stores it.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// NewKey makes a random key: 256 bits, URL-safe, with a recognisable prefix.
func NewKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("keys: random: %w", err)
	}
	return keyPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// ParseScopes reads a comma-separated scope list such as "read,ingest".
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for _, p := range strings.Split(s, ",") {
		sc := Scope(strings.TrimSpace(p))
		if sc == "" {
			continue
		}
		if !sc.valid() {
			return nil, fmt.Errorf("unknown scope %q (known: read, ingest, admin)", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scope given (known: read, ingest, admin)")
	}
	return out, nil
}

func (s Scope) valid() bool { return s == ScopeRead || s == ScopeIngest || s == ScopeAdmin }

// scopeSet is a set of scopes as bits; admin carries every bit.
type scopeSet uint8

const (
	bitRead scopeSet = 1 << iota
	bitIngest
	bitAdmin
)

func (s Scope) bits() scopeSet {
	switch s {
	case ScopeRead:
		return bitRead
	case ScopeIngest:
		return bitIngest
	case ScopeAdmin:
		return bitAdmin | bitRead | bitIngest
	}
	return 0
}

func (ss scopeSet) has(s Scope) bool { b := s.bits(); return b != 0 && ss&b == b }

// identity is a loaded key: its name, its hash and what it may do.
type identity struct {
	name   string
	sum    [sha256.Size]byte
	scopes scopeSet
}

// keyring is an immutable set of keys; a reload builds a new one.
type keyring struct {
	ids      []identity          // principals known by an API key
	subjects map[string]identity // principals known by a certificate, by normalised subject
}

// lookup finds the key whose hash is the hash of presented. It compares the hash
// with every loaded hash in constant time and never stops early, so the answer's
// timing says nothing about which bytes matched.
func (kr *keyring) lookup(presented string) (identity, bool) {
	var buf [128]byte // keys are 48 bytes: hash them without a copy on the heap
	sum := sha256.Sum256(append(buf[:0], presented...))
	var found identity
	ok := 0
	for i := range kr.ids {
		m := subtle.ConstantTimeCompare(sum[:], kr.ids[i].sum[:])
		if m == 1 && ok == 0 {
			found = kr.ids[i]
		}
		ok |= m
	}
	return found, ok == 1
}

// decodeKeys reads and validates a keys file's content.
func decodeKeys(b []byte) ([]Key, error) {
	var keys []Key
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("keys: decode: %w", err)
	}
	for i, k := range keys {
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("keys: entry %d: %w", i, err)
		}
	}
	return keys, nil
}

// newKeyring indexes validated keys.
func newKeyring(keys []Key) *keyring {
	kr := &keyring{ids: make([]identity, 0, len(keys)), subjects: map[string]identity{}}
	for _, k := range keys {
		id := identity{name: k.Name}
		for _, s := range k.Scopes {
			id.scopes |= s.bits()
		}
		if k.Subject != "" {
			subject, _ := NormalizeSubject(k.Subject)
			// The rate limiter keys its buckets by sum: one of its own, which no
			// API key can hash to.
			id.sum = sha256.Sum256([]byte("subject\x00" + subject))
			kr.subjects[subject] = id
			continue
		}
		_, _ = hex.Decode(id.sum[:], []byte(strings.ToLower(k.SHA256)))
		kr.ids = append(kr.ids, id)
	}
	return kr
}

func (k Key) validate() error {
	if k.Name == "" {
		return errors.New("name is empty")
	}
	switch {
	case k.Subject != "" && k.SHA256 != "":
		return fmt.Errorf("key %q: either sha256 (an API key) or subject (a client certificate), not both", k.Name)
	case k.Subject != "":
		if _, err := NormalizeSubject(k.Subject); err != nil {
			return fmt.Errorf("key %q: %w", k.Name, err)
		}
	default:
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("key %q: sha256 must be 64 hex digits", k.Name)
		}
	}
	if len(k.Scopes) == 0 {
		return fmt.Errorf("key %q: no scopes", k.Name)
	}
	for _, s := range k.Scopes {
		if !s.valid() {
			return fmt.Errorf("key %q: unknown scope %q", k.Name, s)
		}
	}
	return nil
}

// ReadKeys reads a keys file; a missing file is an empty list.
func ReadKeys(path string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keys: read: %w", err)
	}
	return decodeKeys(b)
}

// WriteKeys replaces a keys file atomically (a temporary file in the same directory,
// fsynced, then renamed over it), readable by its owner only.
func WriteKeys(path string, keys []Key) error {
	if keys == nil {
		keys = []Key{}
	}
	b, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return fmt.Errorf("keys: encode: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("keys: write: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("keys: write: %w", err)
	}
	return nil
}

// AddKey makes a new random key named name with the given scopes, appends its hash
// to the keys file (created when missing) and returns the key, which is not stored
// anywhere and cannot be shown again.
func AddKey(path, name string, scopes []Scope) (string, error) {
	k := Key{Name: name, Scopes: scopes}
	k.SHA256 = strings.Repeat("0", 64) // validated below with the real hash
	if err := k.validate(); err != nil {
		return "", fmt.Errorf("keys: add: %w", err)
	}
	keys, err := ReadKeys(path)
	if err != nil {
		return "", err
	}
	for _, old := range keys {
		if old.Name == name {
			return "", fmt.Errorf("keys: add: a key named %q already exists", name)
		}
	}
	key, err := NewKey()
	if err != nil {
		return "", err
	}
	k.SHA256 = HashKey(key)
	if err := WriteKeys(path, append(keys, k)); err != nil {
		return "", err
	}
	return key, nil
}

// AddSubject appends to the keys file (created when missing) a principal known by
// the subject of its client certificate (see NormalizeSubject).
func AddSubject(path, name, subject string, scopes []Scope) error {
	k := Key{Name: name, Subject: subject, Scopes: scopes}
	if err := k.validate(); err != nil {
		return fmt.Errorf("keys: add: %w", err)
	}
	keys, err := ReadKeys(path)
	if err != nil {
		return err
	}
	for _, old := range keys {
		if old.Name == name {
			return fmt.Errorf("keys: add: a principal named %q already exists", name)
		}
	}
	return WriteKeys(path, append(keys, k))
}

// RemoveKey deletes the key named name from the keys file; a running gateway stops
// accepting it at its next reload.
func RemoveKey(path, name string) error {
	keys, err := ReadKeys(path)
	if err != nil {
		return err
	}
	n := len(keys)
	keys = slices.DeleteFunc(keys, func(k Key) bool { return k.Name == name })
	if len(keys) == n {
		return fmt.Errorf("keys: remove: no key named %q", name)
	}
	return WriteKeys(path, keys)
}

// EnsureAdminKey makes the keys file with one admin key named "admin" when the file
// does not exist yet. It returns the new key and true the first time, and "" and
// false on every later call: the key is shown once.
func EnsureAdminKey(path string) (string, bool, error) {
	if _, err := os.Stat(path); err == nil {
		return "", false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("keys: %w", err)
	}
	key, err := AddKey(path, "admin", []Scope{ScopeAdmin})
	if err != nil {
		return "", false, err
	}
	return key, true, nil
}
