package mongostore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/room"
)

// roomDoc is a document of rooms. Cleared optional fields are null.
type roomDoc struct {
	ID       string    `bson:"_id"`
	Name     string    `bson:"name"`
	Floor    *int      `bson:"floor"`
	Building string    `bson:"building"`
	Capacity *int      `bson:"capacity"`
	AreaM2   *float64  `bson:"area_m2"`
	Created  time.Time `bson:"created"`
	Updated  time.Time `bson:"updated"`
}

// fields are the document's fields but _id, for $setOnInsert.
func (d roomDoc) fields() bson.D {
	return bson.D{
		{Key: "name", Value: d.Name}, {Key: "floor", Value: d.Floor}, {Key: "building", Value: d.Building},
		{Key: "capacity", Value: d.Capacity}, {Key: "area_m2", Value: d.AreaM2},
		{Key: "created", Value: d.Created}, {Key: "updated", Value: d.Updated},
	}
}

func (d roomDoc) room() room.Room {
	return room.Room{ID: d.ID, Name: d.Name, Floor: d.Floor, Building: d.Building, Capacity: d.Capacity, AreaM2: d.AreaM2,
		CreatedAt: d.Created.UTC(), UpdatedAt: d.Updated.UTC()}
}

func ms(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }

// CreateRoom stores a new room; see room.Store.
func (s *Store) CreateRoom(ctx context.Context, r room.Room) (room.Room, error) {
	if err := s.conn.Check("mongostore: create room " + r.ID); err != nil {
		return room.Room{}, err
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = s.conn.Now()
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	if r.Name == "" {
		r.Name = r.ID
	}
	doc := roomDoc{ID: r.ID, Name: r.Name, Floor: r.Floor, Building: r.Building, Capacity: r.Capacity, AreaM2: r.AreaM2,
		Created: ms(r.CreatedAt), Updated: ms(r.UpdatedAt)}
	if _, err := s.rooms.InsertOne(ctx, doc); mongox.IsDuplicate(err) {
		return room.Room{}, fmt.Errorf("mongostore: create room %s: %w", r.ID, room.ErrConflict)
	} else if err != nil {
		return room.Room{}, mongox.Wrap("mongostore: create room "+r.ID, err)
	}
	return s.Room(ctx, r.ID)
}

// UpdateRoom changes the fields set in p; see room.Store.
func (s *Store) UpdateRoom(ctx context.Context, id string, p room.Patch, at time.Time) (room.Room, error) {
	if err := s.conn.Check("mongostore: update room " + id); err != nil {
		return room.Room{}, err
	}
	set := bson.D{{Key: "updated", Value: ms(at)}}
	if p.Name.Set {
		name := id
		if p.Name.Value != nil {
			name = *p.Name.Value
		}
		set = append(set, bson.E{Key: "name", Value: name})
	}
	if p.Building.Set {
		building := ""
		if p.Building.Value != nil {
			building = *p.Building.Value
		}
		set = append(set, bson.E{Key: "building", Value: building})
	}
	if p.Floor.Set {
		set = append(set, bson.E{Key: "floor", Value: p.Floor.Value})
	}
	if p.Capacity.Set {
		set = append(set, bson.E{Key: "capacity", Value: p.Capacity.Value})
	}
	if p.AreaM2.Set {
		set = append(set, bson.E{Key: "area_m2", Value: p.AreaM2.Value})
	}
	var res *mongo.UpdateResult
	err := s.serial.Do(func() error {
		var err error
		res, err = s.rooms.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: set}})
		return err
	})
	if err != nil {
		return room.Room{}, mongox.Wrap("mongostore: update room "+id, err)
	}
	if res.MatchedCount == 0 {
		return room.Room{}, fmt.Errorf("mongostore: update room %s: %w", id, room.ErrNotFound)
	}
	return s.Room(ctx, id)
}

// DeleteRoom forgets a room and everything kept about it; see room.Store. The
// room's document goes last, so that a delete cut short is completed by
// deleting again.
func (s *Store) DeleteRoom(ctx context.Context, id string) error {
	if err := s.conn.Check("mongostore: delete room " + id); err != nil {
		return err
	}
	found, err := s.hasRoom(ctx, "mongostore: delete room "+id, id)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("mongostore: delete room %s: %w", id, room.ErrNotFound)
	}
	err = s.serial.Do(func() error {
		if _, err := s.sensors.DeleteMany(ctx, bson.D{{Key: "room", Value: id}}); err != nil {
			return err
		}
		if _, err := s.latest.DeleteMany(ctx, bson.D{{Key: "r", Value: id}}); err != nil {
			return err
		}
		for _, t := range s.tiers {
			if _, err := t.coll.DeleteMany(ctx, bson.D{{Key: "r", Value: id}}); err != nil {
				return err
			}
		}
		res, err := s.rooms.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
		if err == nil && res.DeletedCount == 0 {
			return room.ErrNotFound // deleted by another call meanwhile
		}
		return err
	})
	if errors.Is(err, room.ErrNotFound) {
		return fmt.Errorf("mongostore: delete room %s: %w", id, err)
	}
	return mongox.Wrap("mongostore: delete room "+id, err)
}

// AssignSensor puts a sensor in a room; see room.Store.
func (s *Store) AssignSensor(ctx context.Context, roomID, sensorID string, at time.Time) error {
	op := "mongostore: assign sensor " + sensorID + " to " + roomID
	if err := s.conn.Check(op); err != nil {
		return err
	}
	found, err := s.hasRoom(ctx, op, roomID)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%s: %w", op, room.ErrNotFound)
	}
	model := mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: sensorID}}).SetUpdate(bson.D{
		{Key: "$set", Value: bson.D{{Key: "room", Value: roomID}, {Key: "assigned", Value: true}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "seen", Value: time.UnixMilli(0).UTC()}}},
	}).SetUpsert(true)
	err = s.serial.Do(func() error { return writeAll(ctx, s.sensors, []mongo.WriteModel{model}) })
	return mongox.Wrap(op, err)
}

// hasRoom reports whether the room id is stored, for a call named op.
func (s *Store) hasRoom(ctx context.Context, op, id string) (bool, error) {
	return mongox.FindOne(ctx, s.rooms, op, bson.D{{Key: "_id", Value: id}}, nil, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}}))
}

// Room returns one room with its sensors; see room.Store.
func (s *Store) Room(ctx context.Context, id string) (room.Room, error) {
	if err := s.conn.Check("mongostore: room " + id); err != nil {
		return room.Room{}, err
	}
	r, err := s.room(ctx, id)
	if err != nil {
		return room.Room{}, fmt.Errorf("mongostore: room %s: %w", id, err)
	}
	return r, nil
}

// room reads a room and its sensors.
func (s *Store) room(ctx context.Context, id string) (room.Room, error) {
	var d roomDoc
	found, err := mongox.FindOne(ctx, s.rooms, "read room", bson.D{{Key: "_id", Value: id}}, &d)
	if err != nil {
		return room.Room{}, err
	}
	if !found {
		return room.Room{}, room.ErrNotFound
	}
	r := d.room()
	docs, err := mongox.FindAll[struct {
		ID string `bson:"_id"`
	}](ctx, s.sensors, "read sensors", bson.D{{Key: "room", Value: id}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 1}}).SetSort(bson.D{{Key: "room", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return room.Room{}, err
	}
	r.Sensors = make([]string, len(docs))
	for i, d := range docs {
		r.Sensors[i] = d.ID
	}
	r.SensorCount = len(docs)
	return r, nil
}

// Rooms lists rooms by id; see room.Store.
func (s *Store) Rooms(ctx context.Context, after string, limit int) ([]room.Room, error) {
	if err := s.conn.Check("mongostore: rooms"); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	docs, err := mongox.FindAll[roomDoc](ctx, s.rooms, "mongostore: rooms", bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: after}}}},
		options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	out := make([]room.Room, len(docs))
	if len(docs) == 0 {
		return out, nil
	}
	ids := make(bson.A, len(docs))
	for i, d := range docs {
		out[i] = d.room()
		ids[i] = d.ID
	}
	// Sensor counts: the sensors of these rooms (index room, _id), counted here.
	sdocs, err := mongox.FindAll[struct {
		Room string `bson:"room"`
	}](ctx, s.sensors, "mongostore: rooms", bson.D{{Key: "room", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "_id", Value: 0}, {Key: "room", Value: 1}}))
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(docs))
	for _, d := range sdocs {
		counts[d.Room]++
	}
	for i := range out {
		out[i].SensorCount = counts[out[i].ID]
	}
	return out, nil
}

// latestDoc is a document of latest: _id is "room|type|sensor".
type latestDoc struct {
	Room   string    `bson:"r"`
	Type   string    `bson:"y"`
	Sensor string    `bson:"s"`
	Value  float64   `bson:"v"`
	Unit   string    `bson:"u"`
	TS     time.Time `bson:"t"`
}

// rollupDoc is a document of a rollup collection: _id is "room|type|start-ms|shard"
// (without the shard for documents written before shards).
type rollupDoc struct {
	Type  string     `bson:"y"`
	Start time.Time  `bson:"st"`
	N     int64      `bson:"n"`
	Sum   mongox.Sum `bson:",inline"`
	Min   float64    `bson:"min"`
	Max   float64    `bson:"max"`
}

// agg is the bucket's count, sum (held within ±math.MaxFloat64: sum and hsum
// are the parts of reading.SplitSum), minimum and maximum.
func (d rollupDoc) agg() room.Agg {
	return room.Agg{N: d.N, Sum: d.Sum.Total(), Min: d.Min, Max: d.Max}
}

// Snapshot returns what a room's current metrics are computed from; see
// room.Store. The window merges the room's minute buckets of the types it has
// latest values of.
func (s *Store) Snapshot(ctx context.Context, roomID string, from, to time.Time) (room.Snapshot, error) {
	var snap room.Snapshot
	if err := s.conn.Check("mongostore: snapshot " + roomID); err != nil {
		return snap, err
	}
	r, err := s.room(ctx, roomID)
	if err != nil {
		return snap, fmt.Errorf("mongostore: snapshot %s: %w", roomID, err)
	}
	snap.Room = r
	docs, err := mongox.FindAll[latestDoc](ctx, s.latest, "mongostore: snapshot "+roomID, bson.D{{Key: "r", Value: roomID}})
	if err != nil {
		return snap, err
	}
	in := make(map[string]bool, len(r.Sensors))
	for _, id := range r.Sensors {
		in[id] = true
	}
	var types bson.A
	seen := map[string]bool{}
	// Each process that applied readings of a sensor has a document of its own:
	// the newest of them is the value.
	at := map[[2]string]int{}
	for _, d := range docs {
		if !seen[d.Type] {
			seen[d.Type] = true
			types = append(types, d.Type)
		}
		if !in[d.Sensor] { // only the sensors now in the room
			continue
		}
		v := room.SensorValue{SensorID: d.Sensor, Type: d.Type, Value: d.Value, Unit: d.Unit, Timestamp: d.TS.UTC()}
		k := [2]string{d.Sensor, d.Type}
		if i, ok := at[k]; !ok {
			at[k] = len(snap.Latest)
			snap.Latest = append(snap.Latest, v)
		} else if v.Timestamp.After(snap.Latest[i].Timestamp) {
			snap.Latest[i] = v
		}
	}
	var est rollupDoc
	found, err := mongox.FindOne(ctx, s.tiers[0].coll, "mongostore: snapshot "+roomID, bson.D{{Key: "r", Value: roomID}, {Key: "y", Value: room.EstimateType}, {Key: "n", Value: bson.D{{Key: "$gt", Value: 0}}}}, &est,
		options.FindOne().SetSort(bson.D{{Key: "r", Value: 1}, {Key: "y", Value: 1}, {Key: "st", Value: -1}}))
	if err != nil {
		return snap, err
	}
	if found {
		a := est.agg()
		snap.Estimate = &room.Stat{Type: room.EstimateType, Start: est.Start.UTC(), Count: a.N, Sum: a.Sum, Min: a.Min, Max: a.Max}
	}
	if len(snap.Latest) == 0 {
		return snap, nil
	}
	rs, err := mongox.FindAll[rollupDoc](ctx, s.tiers[0].coll, "mongostore: snapshot "+roomID, bson.D{
		{Key: "r", Value: roomID}, {Key: "y", Value: bson.D{{Key: "$in", Value: types}}},
		{Key: "st", Value: bson.D{{Key: "$gte", Value: ms(from)}, {Key: "$lte", Value: ms(to)}}},
		{Key: "n", Value: bson.D{{Key: "$gt", Value: 0}}},
	})
	if err != nil {
		return snap, err
	}
	// Merged here: FerretDB has no $min/$max accumulators.
	win := map[string]int{}
	for _, d := range rs {
		a := d.agg()
		i, ok := win[d.Type]
		if !ok {
			win[d.Type] = len(snap.Window)
			snap.Window = append(snap.Window, room.Stat{Type: d.Type, Count: a.N, Sum: a.Sum, Min: a.Min, Max: a.Max})
			continue
		}
		st := &snap.Window[i]
		st.Count += a.N
		st.Sum = reading.AddSum(st.Sum, a.Sum)
		st.Min = min(st.Min, a.Min)
		st.Max = max(st.Max, a.Max)
	}
	return snap, nil
}

// History returns the buckets of q; see room.Store. A bucket merges the rollups
// of the coarsest tier whose period divides it; the end of the range that does
// not fill a bucket of that tier is read from the finer tiers.
func (s *Store) History(ctx context.Context, q room.HistoryQuery) ([]room.Stat, error) {
	if err := s.conn.Check("mongostore: history"); err != nil {
		return nil, err
	}
	stats, err := room.History(q, s.periods(), func(sp room.Span, m *room.Merger) error {
		return s.scan(ctx, s.tiers[sp.Tier], q.RoomID, q.Type, sp.From, sp.To, m)
	})
	if err != nil {
		return nil, fmt.Errorf("mongostore: history: %w", err)
	}
	return stats, nil
}

// scan feeds the buckets of one tier starting in [from, to), in time order, to m
// until it has enough.
func (s *Store) scan(ctx context.Context, t tier, roomID, typ string, from, to int64, m *room.Merger) error {
	cur, err := t.coll.Find(ctx, bson.D{
		{Key: "r", Value: roomID}, {Key: "y", Value: typ},
		{Key: "st", Value: bson.D{{Key: "$gte", Value: time.UnixMilli(from).UTC()}, {Key: "$lt", Value: time.UnixMilli(to).UTC()}}},
		{Key: "n", Value: bson.D{{Key: "$gt", Value: 0}}}, // created by a batch that died before counting
	}, options.Find().SetSort(bson.D{{Key: "r", Value: 1}, {Key: "y", Value: 1}, {Key: "st", Value: 1}}).
		SetProjection(bson.D{{Key: "bs", Value: 0}}).SetBatchSize(int32(min(m.Limit+1, 1000))))
	if err != nil {
		return mongox.Wrap("read "+t.name, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var d rollupDoc
		if err := cur.Decode(&d); err != nil {
			return fmt.Errorf("decode %s: %w", t.name, err)
		}
		if !m.Add(d.Start.UnixMilli(), d.agg()) {
			return nil
		}
	}
	return mongox.Wrap("read "+t.name, cur.Err())
}
