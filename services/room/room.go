// Package room is the room service (:8002): the rooms of a building, their live
// metrics and their history. It is fed by sensor.data.received from the bus, keeps
// per-sensor latest values and per-minute rollups in its Store, and publishes
// room.metrics.updated. Storage engines are adapters in sub-packages
// (sqlitestore, …), held to one contract suite (storetest).
package room

import (
	"context"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Errors a Store returns; the HTTP layer maps them to statuses.
var (
	ErrNotFound    = apperr.ErrNotFound
	ErrConflict    = apperr.ErrConflict
	ErrUnavailable = apperr.ErrUnavailable
)

// Room is a space of the building and its description.
type Room struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Floor    *int     `json:"floor"`
	Building string   `json:"building"`
	Capacity *int     `json:"capacity"`
	AreaM2   *float64 `json:"area_m2"`
	// SensorCount is how many sensors are in the room: assigned to it, or last
	// seen reporting from it.
	SensorCount int `json:"sensor_count"`
	// Sensors lists their ids; only Store.Room fills it.
	Sensors   []string  `json:"sensors,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Field is one field of a Patch: Set says whether to change it, and a nil Value
// clears it (a cleared name becomes the room's id).
type Field[T any] struct {
	Set   bool
	Value *T
}

// Patch changes some fields of a room; fields not Set are kept.
type Patch struct {
	Name, Building  Field[string]
	Floor, Capacity Field[int]
	AreaM2          Field[float64]
}

// Batch is the content of one sensor.data.received event, applied atomically.
type Batch struct {
	// ID identifies the batch across redeliveries: its batch_id.
	ID       string
	Readings []reading.Reading
	// At is when the service applied it (the store keeps it to forget old ids).
	At time.Time
}

// Applied is what Store.Apply did with a batch.
type Applied struct {
	// Duplicate is true when the batch id had been applied before: nothing changed.
	Duplicate bool
	// Rooms are the rooms the batch's readings went to, sorted (also for a duplicate).
	Rooms []string
	// Readings counts the readings applied; Unroomed those skipped because neither
	// the reading, an assignment nor an earlier reading named their room.
	Readings, Unroomed int
}

// SensorValue is the latest reading of one sensor and type in a room.
type SensorValue struct {
	SensorID  string
	Type      string
	Value     float64
	Unit      string
	Timestamp time.Time
}

// Stat is a rollup: count, sum, min and max of the readings of one type in a
// period starting at Start.
type Stat struct {
	Type          string
	Start         time.Time
	Count         int64
	Sum, Min, Max float64
}

// Snapshot is what the current metrics of a room are computed from.
type Snapshot struct {
	Room Room
	// Latest holds the newest reading of each (type, sensor) of the sensors now in
	// the room.
	Latest []SensorValue
	// Window holds, per type, the merged minute rollups of the requested window
	// (Start is left zero).
	Window []Stat
	// Estimate is the newest minute of the room's occupied_estimate series, nil
	// without one.
	Estimate *Stat
}

// Point is one minute of a derived series: its value in the minute starting at
// Start.
type Point struct {
	Start time.Time
	Value float64
}

// RoomPoints are the points of a derived series of one room.
type RoomPoints struct {
	RoomID string
	Points []Point
}

// HistoryQuery selects the rollups of one room and type. Buckets are aligned on
// multiples of Bucket since the Unix epoch (UTC); those starting in [From, To)
// that hold readings are returned in time order, at most Limit.
type HistoryQuery struct {
	RoomID   string
	Type     string
	From, To time.Time
	Bucket   time.Duration
	Limit    int
}

// Store keeps the rooms, the sensors in them, each sensor's latest value and the
// rollups. Implementations must pass storetest.Run. Every method is safe to call
// from several processes sharing one store.
type Store interface {
	// Apply applies b atomically and once per b.ID: a room named by a reading is
	// created if unknown; the latest value of each (room, type, sensor) moves only
	// forward in time; every reading is added to its minute (and coarser) rollup.
	// A reading goes to its sensor's assigned room if it has one, else to its own
	// room_id, else to the room its sensor last reported from.
	Apply(ctx context.Context, b Batch) (Applied, error)
	// CreateRoom stores a new room (SensorCount and times are set by the store) or
	// fails with ErrConflict.
	CreateRoom(ctx context.Context, r Room) (Room, error)
	// UpdateRoom changes the fields of p at time at, or fails with ErrNotFound.
	UpdateRoom(ctx context.Context, id string, p Patch, at time.Time) (Room, error)
	// DeleteRoom forgets a room, its assignments, latest values and rollups.
	DeleteRoom(ctx context.Context, id string) error
	// AssignSensor puts a sensor in a room (ErrNotFound when the room is unknown);
	// its later readings go there whatever room_id they carry.
	AssignSensor(ctx context.Context, roomID, sensorID string, at time.Time) error
	// Room returns one room with its sensors, or ErrNotFound.
	Room(ctx context.Context, id string) (Room, error)
	// Rooms lists up to limit rooms with ids after after, by id (Sensors left nil).
	Rooms(ctx context.Context, after string, limit int) ([]Room, error)
	// Snapshot returns a room, its latest values and its rollups merged per type
	// over the minutes starting in [from, to]; ErrNotFound for an unknown room.
	Snapshot(ctx context.Context, roomID string, from, to time.Time) (Snapshot, error)
	// History returns the buckets of q (Type set on each Stat).
	History(ctx context.Context, q HistoryQuery) ([]Stat, error)
	// SetSeries replaces the minute rollups of a derived series (such as
	// occupied_estimate) of each room in rooms with one value each (count 1),
	// and rebuilds the series' five-minute and hour rollups over the periods
	// those minutes fall in, all rooms at once (one transaction where the
	// engine has them). Writing the same points again changes nothing. A room
	// that does not exist (deleted meanwhile) is skipped.
	SetSeries(ctx context.Context, typ string, rooms []RoomPoints) error
	// Forget drops the applied batch ids recorded before t, and returns how many.
	Forget(ctx context.Context, before time.Time) (int, error)
	// Ping reports whether the store is usable.
	Ping(ctx context.Context) error
	Close() error
}
