// Package sensor is the sensor service (:8001): it ingests readings, keeps them and
// the sensor registry in its Store, publishes sensor.data.received for every
// accepted batch and sensor.status.changed when a sensor goes offline or comes
// online (it owns liveness). Storage engines are adapters in sub-packages (sqlitestore, …),
// held to one contract suite (storetest).
package sensor

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Errors a Store returns; the HTTP layer maps them to statuses.
var (
	ErrNotFound    = apperr.ErrNotFound
	ErrUnavailable = apperr.ErrUnavailable
	ErrBadCursor   = apperr.ErrInvalid
	// ErrBatchConflict is Ingest's answer to a batch whose key is recorded with
	// another fingerprint: the caller reused a batch id for a different request.
	// Nothing is stored; the handler answers 422.
	ErrBatchConflict = errors.New("batch id already used for a different request")
)

// PrincipalHeader names the caller of a request: the gateway sets it to the name
// of the API key that authenticated the request (gateway.KeyNameHeader), over
// whatever a client sent in it. The service's own port is private: what reaches
// it without going through the gateway is a part of the system, trusted like the
// gateway.
const PrincipalHeader = "X-Atrium-Key-Name"

// DirectPrincipal is the caller of a request without PrincipalHeader: a call on
// the service's private port, not through the gateway.
const DirectPrincipal = "direct"

// MaxKeyNameLen bounds the key name a PrincipalHeader may carry.
const MaxKeyNameLen = 256

// KeyPrincipal is the principal of the requests made with the API key named name.
// Its "key:" prefix keeps it apart from DirectPrincipal whatever the key is called.
func KeyPrincipal(name string) string { return "key:" + name }

// BatchKey is what a batch is recorded under: its principal, path-escaped so that
// it holds no '/', then '/' and the batch id ("direct/b-1", "key:agent-hq/b-1").
// Two principals never share a key, whatever their batch ids. An empty principal
// keys the batch by its id alone, as batches were recorded before principals.
func BatchKey(principal, id string) string {
	if principal == "" {
		return id
	}
	return url.PathEscape(principal) + "/" + id
}

// Rejection names a reading of a batch that was not accepted, and why.
type Rejection struct {
	Index  int    `json:"index"`
	Reason string `json:"reason"`
}

// Result is the answer to a batch: how many readings were stored, how many were
// already stored (duplicate identities), and which were rejected.
type Result struct {
	BatchID    string      `json:"batch_id"`
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// Batch is what the service hands its store: the valid readings of one request (in
// request order) and the rejections already found, under one batch id.
type Batch struct {
	// ID is the batch id the caller gave (or one made for it); the answer
	// carries it.
	ID string
	// Principal is who sent the batch: KeyPrincipal of an API key, or
	// DirectPrincipal. Batch ids are scoped to it (see BatchKey).
	Principal string
	// Fingerprint identifies the request's content (see Fingerprint). It is
	// recorded with the answer; the same key sent again with another
	// fingerprint is refused with ErrBatchConflict.
	Fingerprint string
	Site        string
	Readings    []reading.Reading
	Rejected    []Rejection
	ReceivedAt  time.Time
}

// Key is the batch's record key, BatchKey(Principal, ID). It is also the batch_id
// of its sensor.data.received event, unique across callers, which the consumers
// of the bus deduplicate by.
func (b Batch) Key() string { return BatchKey(b.Principal, b.ID) }

// Outcome is what Store.Ingest did with a batch.
type Outcome struct {
	// Result is the batch's answer; for a replayed batch id, the first answer.
	Result Result
	// Replayed is true when the batch id had been ingested before: nothing was stored.
	Replayed bool
	// Pending is the batch's sensor.data.received event while it has not been
	// acknowledged as published (AckEvent); nil once it has been, or when the batch
	// stored nothing.
	Pending *Event
}

// Event is an outbox entry: a sensor.data.received body waiting to be published.
type Event struct {
	// BatchID is the batch's key (Batch.Key), also the body's batch_id.
	BatchID string
	Body    []byte
}

// EventBody is the payload of sensor.data.received for the readings a batch stored,
// as events.EncodeSensorData writes it. Every adapter builds its outbox entries with it.
func EventBody(batchID, site string, stored []reading.Reading) []byte {
	return events.EncodeSensorData(batchID, site, stored)
}

// LastValue is a sensor's latest value of one type.
type LastValue struct {
	Value     float64   `json:"value"`
	Unit      string    `json:"unit,omitempty"`
	Timestamp time.Time `json:"timestamp"`
}

// Sensor is an entry of the registry.
type Sensor struct {
	ID         string               `json:"id"`
	RoomID     string               `json:"room_id"`
	Site       string               `json:"site,omitempty"`
	Types      []string             `json:"types"`
	FirstSeen  time.Time            `json:"first_seen"`
	LastSeen   time.Time            `json:"last_seen"`
	LastValues map[string]LastValue `json:"last_values"`
	Status     string               `json:"status"`
}

// Sensor statuses: the registry's, and those sensor.status.changed carries.
const (
	StatusOnline  = events.StatusOnline
	StatusOffline = events.StatusOffline
)

// ReadingCursor is where a page of readings ended: the (timestamp, type) of its last
// reading and the direction it was read in. Every adapter encodes it with
// paging.EncodeCursor.
type ReadingCursor struct {
	TS   int64  `json:"t"`
	Type string `json:"y"`
	Desc bool   `json:"d,omitempty"`
}

// SensorCursor is the id of the last sensor of a page of the registry.
type SensorCursor struct {
	ID string `json:"s"`
}

// ReadingQuery selects one sensor's readings. Zero From/To are open bounds (From
// inclusive, To exclusive). Cursor is the opaque NextCursor of a previous page.
type ReadingQuery struct {
	SensorID string
	Type     string
	From, To time.Time
	Desc     bool
	Limit    int
	Cursor   string
}

// SensorQuery selects registry entries. Status filters on LastSeen against
// OnlineSince: online means LastSeen >= OnlineSince.
type SensorQuery struct {
	RoomID      string
	Type        string
	Status      string
	OnlineSince time.Time
	Limit       int
	Cursor      string
}

// After decodes q.Cursor; ok is false on a first page (no cursor). A cursor
// that is malformed, or that ended a page read in the other order, fails with
// an error wrapping ErrBadCursor.
func (q ReadingQuery) After() (c ReadingCursor, ok bool, err error) {
	if q.Cursor == "" {
		return c, false, nil
	}
	if err := paging.DecodeCursor(q.Cursor, &c); err != nil {
		return c, false, err
	}
	if c.Desc != q.Desc {
		return c, false, fmt.Errorf("%w: cursor belongs to the other order", ErrBadCursor)
	}
	return c, true, nil
}

// After decodes q.Cursor; ok is false on a first page (no cursor). A cursor
// that is malformed or names no sensor fails with an error wrapping
// ErrBadCursor.
func (q SensorQuery) After() (c SensorCursor, ok bool, err error) {
	if q.Cursor == "" {
		return c, false, nil
	}
	if err := paging.DecodeCursor(q.Cursor, &c); err != nil || c.ID == "" {
		return c, false, fmt.Errorf("%w: malformed cursor", ErrBadCursor)
	}
	return c, true, nil
}

// Store keeps readings, the registry, batch answers and the event outbox.
// Implementations must pass storetest.Run.
type Store interface {
	// Ingest stores b atomically: readings whose identity (sensor_id, type,
	// timestamp) is new are stored, the others counted as duplicates (also within
	// the batch); the registry is updated (a reading with an empty room_id takes the
	// registered room of its sensor); the answer (whose BatchID is b.ID), the
	// fingerprint and the outbox event (whose BatchID is b.Key()) are recorded under
	// b.Key(). An already-ingested key with the same fingerprint stores nothing and
	// returns the first answer with Replayed set; with another fingerprint it
	// stores nothing and fails with ErrBatchConflict. Concurrent calls with one
	// key store it once.
	Ingest(ctx context.Context, b Batch) (Outcome, error)
	// AckEvent marks the outbox event of a batch (its key) as published.
	AckEvent(ctx context.Context, batchID string) error
	// PendingEvents lists up to limit unpublished outbox events, oldest first.
	PendingEvents(ctx context.Context, limit int) ([]Event, error)
	// Readings lists one sensor's readings in timestamp order (then type), a page at
	// a time; next is "" on the last page.
	Readings(ctx context.Context, q ReadingQuery) (rs []reading.Reading, next string, err error)
	// Sensor returns one registry entry (Status left empty) or ErrNotFound.
	Sensor(ctx context.Context, id string) (Sensor, error)
	// Sensors lists registry entries by id (Status left empty).
	Sensors(ctx context.Context, q SensorQuery) (ss []Sensor, next string, err error)
	// StatusMarks lists the status last published for each sensor (MarkStatus).
	StatusMarks(ctx context.Context) ([]StatusMark, error)
	// MarkStatus records the status just published for a sensor, replacing its
	// previous mark.
	MarkStatus(ctx context.Context, m StatusMark) error
	// Ping reports whether the store is usable.
	Ping(ctx context.Context) error
	Close() error
}
