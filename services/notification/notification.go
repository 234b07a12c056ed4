// Package notification is the notification service (:8004): alert rules evaluated
// on the readings of sensor.data.received (by their timestamps) and on the room
// metrics of room.metrics.updated, sensor-silent alerts from the sensor
// service's sensor.status.changed, the alert lifecycle, the system event log,
// notifications pushed to WebSocket clients and signed webhooks. Storage engines are
// adapters in sub-packages (sqlitestore, …), held to one contract suite (storetest).
package notification

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/paging"
)

// Errors a Store returns; the HTTP layer maps them to statuses.
var (
	ErrNotFound    = apperr.ErrNotFound
	ErrConflict    = apperr.ErrConflict
	ErrUnavailable = apperr.ErrUnavailable
	ErrBadCursor   = apperr.ErrInvalid
)

// Severities, least to most severe.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// Severities are the severities, least severe first.
var Severities = []string{SeverityInfo, SeverityWarning, SeverityCritical}

// SeverityRank orders severities: info 1, warning 2, critical 3, unknown 0.
func SeverityRank(s string) int { return slices.Index(Severities, s) + 1 }

// Alert states.
const (
	StateActive       = "active"
	StateAcknowledged = "acknowledged"
	StateResolved     = "resolved"
)

// Alert is one occurrence of a rule's condition, from raise to resolve. Times are
// reading timestamps for raise and resolve (so replayed data alerts as it did), and
// the server's clock for acknowledge. It is the body of alert.raised and
// alert.resolved, so its type is the one package events defines.
type Alert = events.Alert

// KeyOf is what makes an alert unique while it is open: at most one open alert
// (active or acknowledged) per rule, room, sensor and type.
func KeyOf(a Alert) AlertKey {
	return AlertKey{RuleID: a.RuleID, RoomID: a.RoomID, SensorID: a.SensorID, Type: a.Type}
}

// AlertKey identifies the condition an alert is about.
type AlertKey struct {
	RuleID, RoomID, SensorID, Type string
}

// Event types of the system event log.
const (
	EventAlertRaised       = "alert.raised"
	EventAlertAcknowledged = "alert.acknowledged"
	EventAlertResolved     = "alert.resolved"
	EventSensorOnline      = "sensor.online"
	EventSensorOffline     = "sensor.offline"
	EventNotificationSent  = "notification.sent"
	EventWebhookAttempt    = "webhook.attempt"
)

// EventTypes lists every event type, for validating filters.
var EventTypes = []string{EventAlertRaised, EventAlertAcknowledged, EventAlertResolved,
	EventSensorOnline, EventSensorOffline, EventNotificationSent, EventWebhookAttempt}

// Event is one entry of the system event log. Time is when it happened (a reading
// timestamp for alert raise/resolve and sensor online, the server's clock
// otherwise); RecordedAt is when the service wrote it.
type Event struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Severity   string          `json:"severity,omitempty"`
	RoomID     string          `json:"room_id,omitempty"`
	SensorID   string          `json:"sensor_id,omitempty"`
	AlertID    string          `json:"alert_id,omitempty"`
	RuleID     string          `json:"rule_id,omitempty"`
	Message    string          `json:"message,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
	Time       time.Time       `json:"time"`
	RecordedAt time.Time       `json:"recorded_at"`
}

// AlertQuery selects alerts, newest raised first. State "active" means open:
// active or acknowledged (not yet resolved).
type AlertQuery struct {
	State    string // "", active (open), acknowledged, resolved
	RoomID   string
	Severity string
	RuleID   string
	Limit    int
	Cursor   string
}

// EventQuery selects events, newest recorded first. Since bounds Time from below
// (inclusive).
type EventQuery struct {
	Type     string
	Severity string
	RoomID   string
	Since    time.Time
	Limit    int
	Cursor   string
}

// SensorState is what the service remembers of a sensor across restarts, from
// its newest sensor.status.changed: when the sensor service last received a
// reading of it, whether it is offline, and the reading types it reports.
type SensorState struct {
	ID       string
	RoomID   string
	LastSeen time.Time
	Offline  bool
	// Types are the sensor's reading types; nil keeps the ones saved before.
	Types []string
}

// Store keeps rules, alerts, the event log and sensor last-seen times.
// Implementations must pass storetest.Run.
type Store interface {
	// SeedRules stores rules once in the store's life: the first call on an empty
	// store adds them, later calls (even after every rule was deleted) do nothing.
	SeedRules(ctx context.Context, rules []Rule) error
	// Rules lists every rule by id.
	Rules(ctx context.Context) ([]Rule, error)
	// Rule returns one rule or ErrNotFound.
	Rule(ctx context.Context, id string) (Rule, error)
	// CreateRule adds r; ErrConflict when its id exists.
	CreateRule(ctx context.Context, r Rule) error
	// UpdateRule replaces the rule with r's id; ErrNotFound when there is none.
	UpdateRule(ctx context.Context, r Rule) error
	// DeleteRule removes a rule; ErrNotFound when there is none.
	DeleteRule(ctx context.Context, id string) error

	// RaiseAlert stores a and appends ev (with AlertID set to a.ID) in one
	// transaction, unless an open alert with a's key exists: then it returns that
	// alert and created false, and appends nothing.
	RaiseAlert(ctx context.Context, a Alert, ev Event) (alert Alert, created bool, err error)
	// AckAlert marks an active alert acknowledged at `at` and appends ev.
	// Acknowledging an acknowledged alert changes nothing (changed false);
	// a resolved one is ErrConflict; an unknown one ErrNotFound.
	AckAlert(ctx context.Context, id string, at time.Time, ev Event) (alert Alert, changed bool, err error)
	// ResolveAlert marks an open alert resolved at `at` and appends ev. Resolving a
	// resolved alert changes nothing (changed false); unknown ids are ErrNotFound.
	ResolveAlert(ctx context.Context, id string, at time.Time, ev Event) (alert Alert, changed bool, err error)
	// Alert returns one alert or ErrNotFound.
	Alert(ctx context.Context, id string) (Alert, error)
	// Alerts lists alerts newest raised first, a page at a time; next is "" on the
	// last page.
	Alerts(ctx context.Context, q AlertQuery) (as []Alert, next string, err error)
	// OpenAlerts lists every alert that is not resolved.
	OpenAlerts(ctx context.Context) ([]Alert, error)

	// AppendEvent adds ev to the log (ID and RecordedAt must be set).
	AppendEvent(ctx context.Context, ev Event) error
	// Events lists events newest first, a page at a time; next is "" on the last page.
	Events(ctx context.Context, q EventQuery) (es []Event, next string, err error)

	// SaveSensors upserts sensor states: LastSeen never moves back, RoomID is
	// replaced when non-empty, Offline is replaced.
	SaveSensors(ctx context.Context, ss []SensorState) error
	// Sensors lists every sensor state by id.
	Sensors(ctx context.Context) ([]SensorState, error)

	// Ping reports whether the store is usable.
	Ping(ctx context.Context) error
	Close() error
}

// Duration is a time.Duration written in JSON as a Go duration string ("5m");
// a number is read as seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: want a duration such as 5m or 90s", s)
		}
		*d = Duration(v)
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("duration: want a string such as \"5m\" or a number of seconds")
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// seqCursor is where a page of alerts or events ended: the sequence number of its
// last item.
type seqCursor struct {
	Seq int64 `json:"q"`
}

// SeqCursor is the opaque cursor after the item with sequence number seq; every
// adapter pages alerts and events with it.
func SeqCursor(seq int64) string { return paging.EncodeCursor(seqCursor{seq}) }

// ParseSeqCursor reads a SeqCursor; anything else is ErrBadCursor.
func ParseSeqCursor(s string) (int64, error) {
	var c seqCursor
	if err := paging.DecodeCursor(s, &c); err != nil || c.Seq <= 0 {
		return 0, fmt.Errorf("%w: malformed cursor", ErrBadCursor)
	}
	return c.Seq, nil
}
