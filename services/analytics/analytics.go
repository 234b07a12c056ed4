// Package analytics is the analytics service (:8003): the dashboard summary, trend
// statistics and generated reports. It keeps its own copy of the readings it hears
// on the bus (sensor.data.received) in its Store, and asks the sensor service over
// HTTP for the registry. Storage engines are adapters in sub-packages (sqlitestore,
// clickhousestore), held to one contract suite (storetest).
package analytics

import (
	"context"
	"slices"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Errors a Store returns; the HTTP layer maps them to statuses.
var (
	ErrNotFound    = apperr.ErrNotFound
	ErrUnavailable = apperr.ErrUnavailable
	ErrBadCursor   = apperr.ErrInvalid
	ErrInvalid     = apperr.ErrInvalid
)

// Comfort and air thresholds shared by the summary and the reports.
const (
	ComfortTempMin     = 20.0   // °C, inclusive
	ComfortTempMax     = 24.0   // °C, inclusive
	ComfortHumidityMin = 30.0   // %RH, inclusive
	ComfortHumidityMax = 60.0   // %RH, inclusive
	PoorAirCO2         = 1000.0 // ppm: at or above is poor air
)

// SeriesQuery selects the readings of one type, of one room or (RoomID "") of the
// whole building, in [From, To), grouped in buckets of Bucket. From, To and Bucket
// are whole minutes; buckets are aligned on the Unix epoch (a 1d bucket starts at
// midnight UTC).
type SeriesQuery struct {
	RoomID   string
	Type     string
	From, To time.Time
	Bucket   time.Duration
}

// Bucket is the aggregate of the readings of one bucket; empty buckets are not listed.
type Bucket struct {
	Start time.Time `json:"start"`
	Count int64     `json:"count"`
	Mean  float64   `json:"mean"`
	Min   float64   `json:"min"`
	Max   float64   `json:"max"`
}

// Extreme is the lowest or highest reading of a SeriesQuery's range and the
// earliest time it was read.
type Extreme struct {
	Value float64   `json:"value"`
	At    time.Time `json:"at"`
}

// TypeStat aggregates one type's readings, building-wide.
type TypeStat struct {
	Type  string  `json:"type"`
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	Min   float64 `json:"min"`
	Max   float64 `json:"max"`
}

// RoomValue is the latest reading of one type in one room.
type RoomValue struct {
	RoomID string
	Type   string
	Value  float64
	At     time.Time
}

// RoomFigures are the numbers a report gives for one room over a period, computed
// by the store on per-minute means (a minute's mean is the mean of the room's
// readings of that type in that minute).
type RoomFigures struct {
	RoomID string
	// Types aggregates every type's readings (Count, Min, Mean, Max), by type.
	Types []TypeStat
	// ComfortMinutes are the minutes with a temperature or humidity reading;
	// CompliantMinutes those whose temperature mean is within 20–24 °C and whose
	// humidity mean is within 30–60 %RH (a type absent in a minute is not held
	// against it).
	ComfortMinutes, CompliantMinutes int64
	// CO2Minutes are the minutes with a co2 reading; PoorAirMinutes those whose
	// mean is at least 1000 ppm.
	CO2Minutes, PoorAirMinutes int64
	// OccupancyType is the type the occupancy figures come from: occupancy if the
	// room has it, else pir, else motion, else "".
	OccupancyType string
	// OccupancyMinutes are the minutes with an OccupancyType reading;
	// OccupiedMinutes those whose mean is above zero; MeanOccupancy is the mean of
	// the minute means.
	OccupancyMinutes, OccupiedMinutes int64
	MeanOccupancy                     float64
}

// Figures are the numbers the dashboard summary takes from the store, all read
// in one call. The summary's window ends at the start of the minute after now's
// (the current minute included; see SummaryWindow).
type Figures struct {
	// LastHour and LastDay count the readings of the hour and day before the end.
	LastHour, LastDay int64
	// Types aggregates the last hour's readings per type, building-wide, by type.
	Types []TypeStat
	// Rooms lists the rooms (other than "") that have readings, sorted.
	Rooms []string
	// Latest is, per room (other than "") and type, the latest reading if it was
	// read at or after the start of the last hour, by room then type (as
	// Store.Latest).
	Latest []RoomValue
	// ActiveAlerts counts the alerts raised and not resolved.
	ActiveAlerts int64
	// AlertsLastDay counts the alerts raised (by their raised_at) in the day
	// before the end, resolved since or not.
	AlertsLastDay int64
}

// SummaryWindow returns the summary's window for now: end is the start of the
// minute after now's, hourAgo and dayAgo an hour and a day before it.
func SummaryWindow(now time.Time) (hourAgo, dayAgo, end time.Time) {
	end = now.UTC().Truncate(time.Minute).Add(time.Minute)
	return end.Add(-time.Hour), end.Add(-24 * time.Hour), end
}

// OccupancyTypes are the types that tell whether a room is occupied, by preference.
var OccupancyTypes = []string{"occupancy", "pir", "motion"}

// Report statuses.
const (
	StatusPending = "pending"
	StatusReady   = "ready"
	StatusFailed  = "failed"
)

// Report kinds.
const (
	KindDaily  = "daily"
	KindWeekly = "weekly"
	KindCustom = "custom"
)

// Report is a stored report: its request, its state and, once ready, its content
// (the JSON of ReportContent).
type Report struct {
	ID         string             `json:"id"`
	Kind       string             `json:"kind"`
	Status     string             `json:"status"`
	From       time.Time          `json:"from"`
	To         time.Time          `json:"to"`
	Rooms      []string           `json:"rooms"`
	Capacities map[string]float64 `json:"capacities,omitempty"`
	CreatedAt  time.Time          `json:"created_at"`
	FinishedAt time.Time          `json:"finished_at,omitzero"`
	Error      string             `json:"error,omitempty"`
	Content    []byte             `json:"-"`
}

// Alert states recorded from the bus.
const (
	AlertRaised   = "raised"
	AlertResolved = "resolved"
)

// Store keeps the service's copy of the readings, the alert states and the reports.
// Implementations must pass storetest.Run.
type Store interface {
	// AddReadings stores the readings whose identity (sensor_id, type, timestamp
	// at millisecond precision) is new, and returns how many that was. Adding the
	// same reading again changes nothing, also within one call and across calls
	// made at the same time.
	AddReadings(ctx context.Context, rs []reading.Reading) (int, error)
	// CountReadings counts the readings with a timestamp in [from, to) (whole minutes).
	CountReadings(ctx context.Context, from, to time.Time) (int64, error)
	// TypeStats aggregates the readings in [from, to) (whole minutes) per type,
	// building-wide, by type.
	TypeStats(ctx context.Context, from, to time.Time) ([]TypeStat, error)
	// Latest returns, per room (rooms other than "") and type, the latest reading
	// at or after since, by room then type. Two readings at the same latest
	// instant: either.
	Latest(ctx context.Context, since time.Time) ([]RoomValue, error)
	// Rooms lists the rooms (other than "") that have readings, sorted.
	Rooms(ctx context.Context) ([]string, error)
	// Series aggregates q's readings per bucket, by bucket start.
	Series(ctx context.Context, q SeriesQuery) ([]Bucket, error)
	// Extreme returns the lowest (highest when max) reading of q's range (Bucket
	// ignored) and the earliest time it was read; ok is false when there is none.
	Extreme(ctx context.Context, q SeriesQuery, max bool) (e Extreme, ok bool, err error)
	// RoomFigures computes one room's report figures over [from, to) (whole minutes).
	RoomFigures(ctx context.Context, room string, from, to time.Time) (RoomFigures, error)
	// SummaryFigures returns the summary's figures for now in one call.
	SummaryFigures(ctx context.Context, now time.Time) (Figures, error)
	// RecordAlert records that the alert id was raised or resolved. Recording a
	// state twice changes nothing; an alert once resolved stays resolved.
	RecordAlert(ctx context.Context, id, state string, at time.Time) error
	// ActiveAlerts counts the alerts raised and not resolved.
	ActiveAlerts(ctx context.Context) (int64, error)
	// SaveReport stores r, replacing the report with the same id.
	SaveReport(ctx context.Context, r Report) error
	// Report returns one report with its content, or ErrNotFound.
	Report(ctx context.Context, id string) (Report, error)
	// Reports lists reports without their content, newest first (then by id), a
	// page at a time; next is "" on the last page. A cursor it did not make is
	// ErrBadCursor.
	Reports(ctx context.Context, limit int, cursor string) (rs []Report, next string, err error)
	// PendingReports lists the reports still pending, oldest first.
	PendingReports(ctx context.Context) ([]Report, error)
	// Ping reports whether the store is usable.
	Ping(ctx context.Context) error
	Close() error
}

// Recent returns the readings of rs whose timestamp is at or after floor (Unix
// ms): an adapter that pruned readings before floor can no longer tell a copy
// of one from a new reading. rs itself is returned when nothing is older.
func Recent(rs []reading.Reading, floor int64) []reading.Reading {
	old := func(r reading.Reading) bool { return r.UnixMilli() < floor }
	i := slices.IndexFunc(rs, old)
	if i < 0 {
		return rs
	}
	keep := slices.Clone(rs[:i])
	for _, r := range rs[i+1:] {
		if !old(r) {
			keep = append(keep, r)
		}
	}
	return keep
}
