package mongostore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/services/notification"
)

// alertDoc is a document of alerts. Open is the alert's key while it is open
// and "resolved:<id>" once resolved: the unique index on it is what allows one
// open alert per key without transactions (FerretDB has no partial indexes).
type alertDoc struct {
	ID       string     `bson:"_id"`
	Seq      int64      `bson:"seq"`
	Open     string     `bson:"open"`
	RuleID   string     `bson:"rule"`
	RoomID   string     `bson:"room"`
	SensorID string     `bson:"sensor"`
	Type     string     `bson:"type"`
	Severity string     `bson:"sev"`
	State    string     `bson:"state"`
	Value    float64    `bson:"v"`
	Message  string     `bson:"msg"`
	Raised   time.Time  `bson:"raised"`
	Acked    *time.Time `bson:"acked"`
	Resolved *time.Time `bson:"resolved"`
}

func openKey(k notification.AlertKey) string {
	// '|' is in none of the ids' alphabets; NUL would be, for PostgreSQL's jsonb
	// under FerretDB, an invalid string.
	return "open|" + strings.Join([]string{k.RuleID, k.RoomID, k.SensorID, k.Type}, "|")
}

func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func (d alertDoc) alert() notification.Alert {
	return notification.Alert{ID: d.ID, RuleID: d.RuleID, RoomID: d.RoomID, SensorID: d.SensorID, Type: d.Type,
		Severity: d.Severity, State: d.State, Value: d.Value, Message: d.Message, RaisedAt: d.Raised.UTC(),
		AcknowledgedAt: utcPtr(d.Acked), ResolvedAt: utcPtr(d.Resolved)}
}

// eventDoc is a document of events.
type eventDoc struct {
	ID       string    `bson:"_id"`
	Seq      int64     `bson:"seq"`
	Type     string    `bson:"type"`
	Severity string    `bson:"sev"`
	RoomID   string    `bson:"room"`
	SensorID string    `bson:"sensor"`
	AlertID  string    `bson:"alert"`
	RuleID   string    `bson:"rule"`
	Message  string    `bson:"msg"`
	Data     string    `bson:"data,omitempty"`
	Time     time.Time `bson:"time"`
	Recorded time.Time `bson:"recorded"`
}

// RaiseAlert stores a new alert, then its event, unless an open alert with its
// key exists: then it returns that one. Without transactions the two writes are
// separate: a crash between them leaves the alert without its raise event.
func (s *Store) RaiseAlert(ctx context.Context, a notification.Alert, ev notification.Event) (out notification.Alert, created bool, err error) {
	if err := s.check("raise alert"); err != nil {
		return notification.Alert{}, false, err
	}
	err = s.serial.Do(func() error {
		out, created, err = s.raiseAlert(ctx, a, ev)
		return err
	})
	return out, created, err
}

func (s *Store) raiseAlert(ctx context.Context, a notification.Alert, ev notification.Event) (notification.Alert, bool, error) {
	key := openKey(notification.KeyOf(a))
	for attempt := 0; attempt < 3; attempt++ {
		var cur alertDoc
		found, err := mongox.FindOne(ctx, s.alerts, "mongostore: raise alert", bson.D{{Key: "open", Value: key}}, &cur)
		if err != nil {
			return notification.Alert{}, false, err
		}
		if found {
			return cur.alert(), false, nil
		}
		seq, err := s.next(ctx, "alerts")
		if err != nil {
			return notification.Alert{}, false, fmt.Errorf("mongostore: raise alert: %w", err)
		}
		d := alertDoc{ID: a.ID, Seq: seq, Open: key, RuleID: a.RuleID, RoomID: a.RoomID, SensorID: a.SensorID, Type: a.Type,
			Severity: a.Severity, State: notification.StateActive, Value: a.Value, Message: a.Message, Raised: ms(a.RaisedAt)}
		_, err = s.alerts.InsertOne(ctx, d)
		if mongox.IsDuplicate(err) {
			continue // raised by someone else meanwhile (or the id exists): look again
		}
		if err != nil {
			return notification.Alert{}, false, wrap("raise alert", err)
		}
		ev.AlertID = a.ID
		if err := s.appendEvent(ctx, ev); err != nil {
			return notification.Alert{}, false, fmt.Errorf("mongostore: raise alert: %w", err)
		}
		return d.alert(), true, nil
	}
	return notification.Alert{}, false, fmt.Errorf("mongostore: raise alert %q: %w: id taken by another alert", a.ID, notification.ErrConflict)
}

// transition moves an alert to state at `at` when allowed (one conditional
// update), then appends ev.
func (s *Store) transition(ctx context.Context, op, id, state string, at time.Time, ev notification.Event) (out notification.Alert, changed bool, err error) {
	if err := s.check(op); err != nil {
		return notification.Alert{}, false, err
	}
	err = s.serial.Do(func() error {
		out, changed, err = s.move(ctx, op, id, state, at, ev)
		return err
	})
	return out, changed, err
}

func (s *Store) move(ctx context.Context, op, id, state string, at time.Time, ev notification.Event) (notification.Alert, bool, error) {
	from := bson.A{notification.StateActive}
	set := bson.D{{Key: "state", Value: state}}
	if state == notification.StateResolved {
		from = append(from, notification.StateAcknowledged)
		set = append(set, bson.E{Key: "resolved", Value: ms(at)}, bson.E{Key: "open", Value: "resolved:" + id})
	} else {
		set = append(set, bson.E{Key: "acked", Value: ms(at)})
	}
	var d alertDoc
	err := s.alerts.FindOneAndUpdate(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "state", Value: bson.D{{Key: "$in", Value: from}}}},
		bson.D{{Key: "$set", Value: set}},
		options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&d)
	if err == nil {
		ev.AlertID = id
		if err := s.appendEvent(ctx, ev); err != nil {
			return notification.Alert{}, false, fmt.Errorf("mongostore: %s: %w", op, err)
		}
		return d.alert(), true, nil
	}
	if !errors.Is(err, mongo.ErrNoDocuments) {
		return notification.Alert{}, false, wrap(op, err)
	}
	// Not in a state it can move from: say why.
	found, err := mongox.FindOne(ctx, s.alerts, "mongostore: "+op, bson.D{{Key: "_id", Value: id}}, &d)
	if err != nil {
		return notification.Alert{}, false, err
	}
	if !found {
		return notification.Alert{}, false, fmt.Errorf("mongostore: %s: alert %q: %w", op, id, notification.ErrNotFound)
	}
	if d.State == notification.StateResolved && state == notification.StateAcknowledged {
		return d.alert(), false, fmt.Errorf("mongostore: %s: alert %q is resolved: %w", op, id, notification.ErrConflict)
	}
	return d.alert(), false, nil
}

// AckAlert acknowledges an active alert.
func (s *Store) AckAlert(ctx context.Context, id string, at time.Time, ev notification.Event) (notification.Alert, bool, error) {
	return s.transition(ctx, "ack alert", id, notification.StateAcknowledged, at, ev)
}

// ResolveAlert resolves an open alert.
func (s *Store) ResolveAlert(ctx context.Context, id string, at time.Time, ev notification.Event) (notification.Alert, bool, error) {
	return s.transition(ctx, "resolve alert", id, notification.StateResolved, at, ev)
}

// Alert returns one alert.
func (s *Store) Alert(ctx context.Context, id string) (notification.Alert, error) {
	var d alertDoc
	if err := s.byID(ctx, s.alerts, "alert", id, &d); err != nil {
		return notification.Alert{}, err
	}
	return d.alert(), nil
}

// Alerts lists alerts newest raised first (by seq), a page at a time.
func (s *Store) Alerts(ctx context.Context, q notification.AlertQuery) ([]notification.Alert, string, error) {
	if err := s.check("alerts"); err != nil {
		return nil, "", err
	}
	filter := bson.D{}
	switch q.State {
	case "":
	case notification.StateActive:
		filter = append(filter, bson.E{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{notification.StateActive, notification.StateAcknowledged}}}})
	default:
		filter = append(filter, bson.E{Key: "state", Value: q.State})
	}
	for _, f := range []struct{ field, v string }{{"room", q.RoomID}, {"sev", q.Severity}, {"rule", q.RuleID}} {
		if f.v != "" {
			filter = append(filter, bson.E{Key: f.field, Value: f.v})
		}
	}
	docs, next, err := seqPage(ctx, s.alerts, "alerts", filter, q.Cursor, q.Limit, func(d alertDoc) int64 { return d.Seq })
	if err != nil {
		return nil, "", err
	}
	out := make([]notification.Alert, len(docs))
	for i, d := range docs {
		out[i] = d.alert()
	}
	return out, next, nil
}

// seqPage reads a page of at most limit (paging.Size) documents of coll that
// match filter, newest first by seq, starting after the page of cursor (a
// notification.SeqCursor, "" for the first page); next is the cursor of the
// page after it, "" at the end. op names the call in errors.
func seqPage[D any](ctx context.Context, coll *mongo.Collection, op string, filter bson.D, cursor string, limit int, seq func(D) int64) (docs []D, next string, err error) {
	if cursor != "" {
		after, err := notification.ParseSeqCursor(cursor)
		if err != nil {
			return nil, "", fmt.Errorf("mongostore: %s: %w", op, err)
		}
		filter = append(filter, bson.E{Key: "seq", Value: bson.D{{Key: "$lt", Value: after}}})
	}
	limit = paging.Size(limit)
	docs, err = mongox.FindAll[D](ctx, coll, "mongostore: "+op, filter, options.Find().SetSort(bson.D{{Key: "seq", Value: -1}}).SetLimit(int64(limit+1)))
	if err != nil {
		return nil, "", err
	}
	docs, next = paging.Cut(docs, limit, func(last D) string { return notification.SeqCursor(seq(last)) })
	return docs, next, nil
}

// OpenAlerts lists every unresolved alert, oldest raised first.
func (s *Store) OpenAlerts(ctx context.Context) ([]notification.Alert, error) {
	if err := s.check("open alerts"); err != nil {
		return nil, err
	}
	docs, err := mongox.FindAll[alertDoc](ctx, s.alerts, "mongostore: open alerts",
		bson.D{{Key: "state", Value: bson.D{{Key: "$in", Value: bson.A{notification.StateActive, notification.StateAcknowledged}}}}},
		options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}))
	if err != nil {
		return nil, err
	}
	out := make([]notification.Alert, len(docs))
	for i, d := range docs {
		out[i] = d.alert()
	}
	return out, nil
}

// ---- events ----

// appendEvent inserts ev with the next event sequence number. An event id
// already in the log is not appended again.
func (s *Store) appendEvent(ctx context.Context, ev notification.Event) error {
	seq, err := s.next(ctx, "events")
	if err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	d := eventDoc{ID: ev.ID, Seq: seq, Type: ev.Type, Severity: ev.Severity, RoomID: ev.RoomID, SensorID: ev.SensorID,
		AlertID: ev.AlertID, RuleID: ev.RuleID, Message: ev.Message, Data: string(ev.Data), Time: ms(ev.Time), Recorded: ms(ev.RecordedAt)}
	if _, err := s.events.InsertOne(ctx, d); err != nil && !mongox.IsDuplicate(err) {
		return mongox.Wrap("append event", err)
	}
	return nil
}

// AppendEvent adds an event to the log.
func (s *Store) AppendEvent(ctx context.Context, ev notification.Event) error {
	if err := s.check("append event"); err != nil {
		return err
	}
	return s.serial.Do(func() error {
		if err := s.appendEvent(ctx, ev); err != nil {
			return fmt.Errorf("mongostore: %w", err)
		}
		return nil
	})
}

// Events lists events newest recorded first (by seq), a page at a time.
func (s *Store) Events(ctx context.Context, q notification.EventQuery) ([]notification.Event, string, error) {
	if err := s.check("events"); err != nil {
		return nil, "", err
	}
	filter := bson.D{}
	for _, f := range []struct{ field, v string }{{"type", q.Type}, {"sev", q.Severity}, {"room", q.RoomID}} {
		if f.v != "" {
			filter = append(filter, bson.E{Key: f.field, Value: f.v})
		}
	}
	if !q.Since.IsZero() {
		filter = append(filter, bson.E{Key: "time", Value: bson.D{{Key: "$gte", Value: ms(q.Since)}}})
	}
	docs, next, err := seqPage(ctx, s.events, "events", filter, q.Cursor, q.Limit, func(d eventDoc) int64 { return d.Seq })
	if err != nil {
		return nil, "", err
	}
	out := make([]notification.Event, len(docs))
	for i, d := range docs {
		out[i] = notification.Event{ID: d.ID, Type: d.Type, Severity: d.Severity, RoomID: d.RoomID, SensorID: d.SensorID,
			AlertID: d.AlertID, RuleID: d.RuleID, Message: d.Message, Time: d.Time.UTC(), RecordedAt: d.Recorded.UTC()}
		if d.Data != "" {
			out[i].Data = []byte(d.Data)
		}
	}
	return out, next, nil
}

// ---- sensors ----

type sensorDoc struct {
	ID      string    `bson:"_id"`
	RoomID  string    `bson:"room"`
	Last    time.Time `bson:"last"`
	Offline bool      `bson:"off"`
	Types   []string  `bson:"types,omitempty"`
}

// SaveSensors upserts sensor states: $max of last seen, room replaced when
// non-empty, offline replaced. Each update is idempotent.
func (s *Store) SaveSensors(ctx context.Context, ss []notification.SensorState) error {
	if err := s.check("save sensors"); err != nil {
		return err
	}
	if len(ss) == 0 {
		return nil
	}
	models := make([]mongo.WriteModel, len(ss))
	for i, x := range ss {
		set := bson.D{{Key: "off", Value: x.Offline}}
		if x.Types != nil {
			set = append(set, bson.E{Key: "types", Value: x.Types})
		}
		up := bson.D{{Key: "$max", Value: bson.D{{Key: "last", Value: ms(x.LastSeen)}}}}
		if x.RoomID != "" {
			set = append(set, bson.E{Key: "room", Value: x.RoomID})
		} else {
			up = append(up, bson.E{Key: "$setOnInsert", Value: bson.D{{Key: "room", Value: ""}}})
		}
		up = append(up, bson.E{Key: "$set", Value: set})
		models[i] = mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: x.ID}}).SetUpdate(up).SetUpsert(true)
	}
	return s.serial.Do(func() error {
		for attempt := 1; ; attempt++ {
			_, err := mongox.BulkWrite(ctx, s.sensors, models, true)
			if err == nil {
				return nil
			}
			// A concurrent first upsert of the same sensor: run the idempotent updates again.
			if !mongox.IsDuplicate(err) || attempt == 3 {
				return wrap("save sensors", err)
			}
		}
	})
}

// Sensors lists every sensor state by id.
func (s *Store) Sensors(ctx context.Context) ([]notification.SensorState, error) {
	if err := s.check("sensors"); err != nil {
		return nil, err
	}
	docs, err := mongox.FindAll[sensorDoc](ctx, s.sensors, "mongostore: sensors", bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	out := make([]notification.SensorState, len(docs))
	for i, d := range docs {
		out[i] = notification.SensorState{ID: d.ID, RoomID: d.RoomID, LastSeen: d.Last.UTC(), Offline: d.Offline, Types: d.Types}
		if d.Types == nil {
			out[i].Types = []string{}
		}
	}
	return out, nil
}
