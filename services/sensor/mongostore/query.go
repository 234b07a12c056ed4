package mongostore

import (
	"context"
	"fmt"
	"sort"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// ceilMilli is t rounded up to a millisecond: a bound between two milliseconds
// acts as the next one.
func ceilMilli(t time.Time) time.Time {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return time.UnixMilli(ms).UTC()
}

// Readings lists one sensor's readings ordered by (timestamp, type), ascending or
// descending, a page at a time: one range of the identity index (s, t, y).
func (s *Store) Readings(ctx context.Context, q sensor.ReadingQuery) ([]reading.Reading, string, error) {
	if err := s.conn.Check("mongostore: readings"); err != nil {
		return nil, "", err
	}
	limit := paging.Size(q.Limit)
	filter := bson.D{{Key: "s", Value: q.SensorID}}
	var from, to time.Time // inclusive, exclusive; zero: open
	if !q.From.IsZero() {
		from = ceilMilli(q.From)
	}
	if !q.To.IsZero() {
		to = ceilMilli(q.To)
	}
	var after bson.E // skips what the previous page returned
	c, ok, err := q.After()
	if err != nil {
		return nil, "", fmt.Errorf("mongostore: readings: %w", err)
	}
	if ok {
		// The cursor's millisecond bounds the index range; the $or skips the
		// readings of that millisecond already returned.
		ts := time.UnixMilli(c.TS).UTC()
		op := "$gt"
		if q.Desc {
			op = "$lt"
			if to.IsZero() || ts.Before(to) {
				to = ts.Add(time.Millisecond)
			}
		} else if from.IsZero() || ts.After(from) {
			from = ts
		}
		after = bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: "t", Value: bson.D{{Key: op, Value: ts}}}},
			bson.D{{Key: "t", Value: ts}, {Key: "y", Value: bson.D{{Key: op, Value: c.Type}}}},
		}}
	}
	filter = within(filter, "t", from, to)
	if after.Key != "" {
		filter = append(filter, after)
	}
	if q.Type != "" {
		filter = append(filter, bson.E{Key: "y", Value: q.Type})
	}
	dir := 1
	if q.Desc {
		dir = -1
	}
	opts := options.Find().
		SetSort(bson.D{{Key: "s", Value: dir}, {Key: "t", Value: dir}, {Key: "y", Value: dir}}).
		SetLimit(int64(limit + 1)).
		SetHint("identity").
		SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "b", Value: 0}, {Key: "rc", Value: 0}})
	if s.conn.Server.FerretDB {
		opts.SetHint(nil) // FerretDB 1.x plans its own SQL and rejects some hints
	}
	docs, err := mongox.FindAll[readingDoc](ctx, s.readings, "mongostore: readings", filter, opts)
	if err != nil {
		return nil, "", err
	}
	rs := make([]reading.Reading, len(docs))
	for i, d := range docs {
		rs[i] = d.reading()
	}
	rs, next := paging.Cut(rs, limit, func(last reading.Reading) string {
		return paging.EncodeCursor(sensor.ReadingCursor{TS: last.UnixMilli(), Type: last.Type, Desc: q.Desc})
	})
	return rs, next, nil
}

// within returns filter with the condition that the time of field key is in
// [from, to); a zero bound is open, and two zero bounds add nothing.
func within(filter bson.D, key string, from, to time.Time) bson.D {
	r := bson.D{}
	if !from.IsZero() {
		r = append(r, bson.E{Key: "$gte", Value: from})
	}
	if !to.IsZero() {
		r = append(r, bson.E{Key: "$lt", Value: to})
	}
	if len(r) == 0 {
		return filter
	}
	return append(filter, bson.E{Key: key, Value: r})
}

// sensorDoc is a document of sensors (the registry).
type sensorDoc struct {
	ID     string                  `bson:"_id"`
	Room   string                  `bson:"room"`
	Site   string                  `bson:"site"`
	First  time.Time               `bson:"first"`
	Last   time.Time               `bson:"last"`
	Types  []string                `bson:"types"`
	Latest map[string]lastValueDoc `bson:"lv"`
}

func (d sensorDoc) sensor() sensor.Sensor {
	x := sensor.Sensor{ID: d.ID, RoomID: d.Room, Site: d.Site, FirstSeen: d.First.UTC(), LastSeen: d.Last.UTC(),
		Types: []string{}, LastValues: map[string]sensor.LastValue{}}
	for typ, lv := range d.Latest {
		x.Types = append(x.Types, typ)
		x.LastValues[typ] = sensor.LastValue{Value: lv.Value, Unit: lv.Unit, Timestamp: lv.TS.UTC()}
	}
	sort.Strings(x.Types)
	return x
}

// Sensor returns the registry entry of id.
func (s *Store) Sensor(ctx context.Context, id string) (sensor.Sensor, error) {
	if err := s.conn.Check("mongostore: sensor " + id); err != nil {
		return sensor.Sensor{}, err
	}
	var d sensorDoc
	found, err := mongox.FindOne(ctx, s.sensors, "mongostore: sensor "+id, bson.D{{Key: "_id", Value: id}}, &d)
	if err != nil {
		return sensor.Sensor{}, err
	}
	if !found {
		return sensor.Sensor{}, fmt.Errorf("mongostore: %w: sensor %q", sensor.ErrNotFound, id)
	}
	return d.sensor(), nil
}

// Sensors lists registry entries ordered by id, a page at a time.
func (s *Store) Sensors(ctx context.Context, q sensor.SensorQuery) ([]sensor.Sensor, string, error) {
	if err := s.conn.Check("mongostore: sensors"); err != nil {
		return nil, "", err
	}
	limit := paging.Size(q.Limit)
	filter := bson.D{}
	c, ok, err := q.After()
	if err != nil {
		return nil, "", fmt.Errorf("mongostore: sensors: %w", err)
	}
	if ok {
		filter = append(filter, bson.E{Key: "_id", Value: bson.D{{Key: "$gt", Value: c.ID}}})
	}
	if q.RoomID != "" {
		filter = append(filter, bson.E{Key: "room", Value: q.RoomID})
	}
	if q.Type != "" {
		filter = append(filter, bson.E{Key: "types", Value: q.Type})
	}
	switch q.Status {
	case "":
	case sensor.StatusOnline:
		filter = append(filter, bson.E{Key: "last", Value: bson.D{{Key: "$gte", Value: q.OnlineSince}}})
	case sensor.StatusOffline:
		filter = append(filter, bson.E{Key: "last", Value: bson.D{{Key: "$lt", Value: q.OnlineSince}}})
	default:
		return nil, "", fmt.Errorf("mongostore: sensors: %w: unknown status %q", apperr.ErrInvalid, q.Status)
	}
	docs, err := mongox.FindAll[sensorDoc](ctx, s.sensors, "mongostore: sensors", filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit+1)))
	if err != nil {
		return nil, "", err
	}
	ss := make([]sensor.Sensor, 0, len(docs))
	for _, d := range docs {
		ss = append(ss, d.sensor())
	}
	ss, next := paging.Cut(ss, limit, func(last sensor.Sensor) string { return paging.EncodeCursor(sensor.SensorCursor{ID: last.ID}) })
	return ss, next, nil
}

// Rollup is an hourly bucket of one sensor's readings of one type.
type Rollup struct {
	SensorID string
	Type     string
	Hour     time.Time
	Count    int64
	// The sum of the readings is Sum + HugeSum·2^1000 (reading.SplitSum):
	// Sum adds the readings of at most 2^996 in magnitude.
	Sum, HugeSum float64
	Min, Max     float64
	First, Last  time.Time
}

// Mean is the mean of the readings, held within [Min, Max]
// (reading.MeanSplit): exact even when the sum overflows.
func (r Rollup) Mean() float64 { return reading.MeanSplit(r.Sum, r.HugeSum, r.Count, r.Min, r.Max) }

// rollupDoc is a document of rollups: a sensor's type's hourly bucket.
type rollupDoc struct {
	S     string     `bson:"s"`
	Y     string     `bson:"y"`
	H     time.Time  `bson:"h"`
	N     int64      `bson:"n"`
	Sum   mongox.Sum `bson:",inline"`
	Min   float64    `bson:"min"`
	Max   float64    `bson:"max"`
	First time.Time  `bson:"first"`
	Last  time.Time  `bson:"last"`
}

// Rollups lists the hourly buckets of a sensor's type whose hour starts in
// [from, to) (zero bounds are open), oldest first. They outlive the raw
// readings (Options.RollupRetention).
func (s *Store) Rollups(ctx context.Context, sensorID, typ string, from, to time.Time) ([]Rollup, error) {
	if err := s.conn.Check("mongostore: rollups"); err != nil {
		return nil, err
	}
	filter := bson.D{{Key: "s", Value: sensorID}, {Key: "y", Value: typ}}
	filter = within(filter, "h", from, to)
	// A bucket just created holds no count until its update lands (updateRollups).
	filter = append(filter, bson.E{Key: "n", Value: bson.D{{Key: "$gt", Value: 0}}})
	docs, err := mongox.FindAll[rollupDoc](ctx, s.rollups, "mongostore: rollups", filter, options.Find().SetSort(bson.D{{Key: "s", Value: 1}, {Key: "y", Value: 1}, {Key: "h", Value: 1}}))
	if err != nil {
		return nil, err
	}
	out := make([]Rollup, len(docs))
	for i, d := range docs {
		out[i] = Rollup{SensorID: d.S, Type: d.Y, Hour: d.H.UTC(), Count: d.N, Sum: d.Sum.Plain, HugeSum: d.Sum.Huge, Min: d.Min, Max: d.Max, First: d.First.UTC(), Last: d.Last.UTC()}
	}
	return out, nil
}
