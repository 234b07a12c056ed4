package mongostore

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// readingDoc is a document of readings. (s, t, y) is the identity; b is the
// batch that stored it, which lets a retry of a half-done batch recognise its
// own readings.
type readingDoc struct {
	SensorID string    `bson:"s"`
	TS       time.Time `bson:"t"`
	Type     string    `bson:"y"`
	RoomID   string    `bson:"r"`
	Site     string    `bson:"si"`
	Value    float64   `bson:"v"`
	Unit     string    `bson:"u"`
	Received time.Time `bson:"rc"`
	Batch    string    `bson:"b"`
}

func (d readingDoc) reading() reading.Reading {
	return reading.Reading{SensorID: d.SensorID, RoomID: d.RoomID, Site: d.Site, Type: d.Type, Value: d.Value, Unit: d.Unit, Timestamp: d.TS.UTC()}
}

// batchDoc is a document of batches: the claim on a batch's key (claimed while
// an Ingest works on it, done once its answer is recorded). Its _id is the
// batch's key (sensor.BatchKey); documents from before principals have the
// plain batch id there and no bid, p or fp.
type batchDoc struct {
	ID                 string `bson:"_id"`
	BatchID            string `bson:"bid,omitempty"`
	Principal          string `bson:"p,omitempty"`
	Fingerprint        string `bson:"fp,omitempty"`
	mongox.ClaimFields `bson:",inline"`
	Received           time.Time  `bson:"rc"`
	Result             *resultDoc `bson:"res,omitempty"`
	Event              bool       `bson:"ev"`
	Done               time.Time  `bson:"done,omitempty"`
}

type resultDoc struct {
	Accepted   int         `bson:"a"`
	Duplicates int         `bson:"d"`
	Rejected   []rejectDoc `bson:"rej"`
}

type rejectDoc struct {
	Index  int    `bson:"i"`
	Reason string `bson:"r"`
}

type outboxDoc struct {
	BatchID string `bson:"_id"`
	Seq     int64  `bson:"seq"`
	Body    []byte `bson:"body"`
}

// Ingest stores b; see sensor.Store. Without multi-document transactions it
// proceeds in steps, each idempotent, under a claim on the batch's key
// (b.Key(): the caller and the batch id), which every step below uses as the
// batch's id:
//
//  1. insert the batch document (state claimed, owner, lease, fingerprint); a
//     duplicate key means the key is known: with another fingerprint that is
//     sensor.ErrBatchConflict at once; else wait until its answer is recorded
//     and return it, or take the claim over once its lease ran out (its Ingest
//     died);
//  2. insert the readings (unordered; the unique identity index turns the
//     already-stored ones into E11000 errors, counted as duplicates), each marked
//     with the batch id;
//  3. update the registry ($min/$max/$addToSet upserts; last values replaced only
//     by newer timestamps) and the hourly rollups ($inc/$min/$max upserts, each
//     applied once per batch);
//  4. insert the outbox event (keyed by batch id) and record the answer.
//
// A retry of a batch whose Ingest died part-way redoes the steps: readings it
// finds marked with its batch id count as stored by it, so the answer, the event
// and the rollups are those of a run that never stopped.
func (s *Store) Ingest(ctx context.Context, b sensor.Batch) (sensor.Outcome, error) {
	if b.ID == "" {
		return sensor.Outcome{}, fmt.Errorf("mongostore: ingest: %w: empty batch id", apperr.ErrInvalid)
	}
	if err := s.conn.Check("mongostore: ingest " + b.ID); err != nil {
		return sensor.Outcome{}, err
	}
	owner, resume, out, err := s.claim(ctx, b)
	if err != nil || out != nil {
		if err != nil {
			return sensor.Outcome{}, fmt.Errorf("mongostore: ingest %s: %w", b.ID, err)
		}
		return *out, nil
	}
	// Once claimed, the batch is finished even if the caller goes away, so that
	// a retry finds an answer rather than a claim to wait out.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Lease)
	defer cancel()
	o, err := s.apply(wctx, b, owner, resume)
	if err != nil {
		return sensor.Outcome{}, fmt.Errorf("mongostore: ingest %s: %w", b.ID, err)
	}
	return o, nil
}

// claim claims a batch's key (see mongox.Claim). It returns the owner token of
// a claim (resume set when it took over a dead one), or the recorded outcome of
// a batch already done; a key claimed or done with another fingerprint is
// sensor.ErrBatchConflict.
func (s *Store) claim(ctx context.Context, b sensor.Batch) (owner string, resume bool, out *sensor.Outcome, err error) {
	id := b.Key()
	c, err := mongox.Claim(ctx, s.claims(), id, func(f mongox.ClaimFields) batchDoc {
		return batchDoc{ID: id, BatchID: b.ID, Principal: b.Principal, Fingerprint: b.Fingerprint, ClaimFields: f}
	}, func(cur batchDoc) error {
		if cur.Fingerprint != b.Fingerprint {
			return sensor.ErrBatchConflict
		}
		return nil
	})
	switch {
	case err != nil:
		return "", false, nil, err
	case c.Done != nil:
		o, err := s.replayed(ctx, *c.Done)
		return "", false, o, err
	case c.Resumed:
		s.conn.Log.Warn("mongo store resumes a batch whose ingest did not finish", "batch_id", id)
	}
	return c.Owner, c.Resumed, nil, nil
}

// claims is the claim protocol on the batches' keys.
func (s *Store) claims() mongox.Claims {
	return mongox.Claims{Coll: s.batches, Lease: s.opts.Lease, Now: s.conn.Now}
}

// replayed is the outcome of a batch id already done: its first answer and, while
// unacknowledged, its outbox event.
func (s *Store) replayed(ctx context.Context, d batchDoc) (*sensor.Outcome, error) {
	out := &sensor.Outcome{Replayed: true, Result: d.result()}
	if !d.Event {
		return out, nil
	}
	var ev outboxDoc
	found, err := mongox.FindOne(ctx, s.outbox, "read outbox", bson.D{{Key: "_id", Value: d.ID}}, &ev)
	if err != nil {
		return nil, err
	}
	if !found {
		return out, nil
	}
	out.Pending = &sensor.Event{BatchID: d.ID, Body: ev.Body}
	return out, nil
}

func (d batchDoc) result() sensor.Result {
	r := sensor.Result{BatchID: cmp.Or(d.BatchID, d.ID), Rejected: []sensor.Rejection{}}
	if d.Result == nil {
		return r
	}
	r.Accepted, r.Duplicates = d.Result.Accepted, d.Result.Duplicates
	for _, x := range d.Result.Rejected {
		r.Rejected = append(r.Rejected, sensor.Rejection{Index: x.Index, Reason: x.Reason})
	}
	return r
}

type identity struct {
	sensor string
	ms     int64
	typ    string
}

// apply runs steps 2–4 of Ingest for the owner of the batch's claim.
func (s *Store) apply(ctx context.Context, b sensor.Batch, owner string, resume bool) (sensor.Outcome, error) {
	received := b.ReceivedAt
	if received.IsZero() {
		received = s.conn.Now()
	}
	received = time.UnixMilli(received.UnixMilli()).UTC()
	key := b.Key()
	rs := make([]reading.Reading, 0, len(b.Readings))
	seen := make(map[identity]bool, len(b.Readings))
	for _, r := range b.Readings {
		r.Timestamp = time.UnixMilli(r.Timestamp.UnixMilli()).UTC()
		if r.Site == "" {
			r.Site = b.Site
		}
		k := identity{r.SensorID, r.Timestamp.UnixMilli(), r.Type}
		if seen[k] {
			continue // a duplicate within the batch: the first is kept
		}
		seen[k] = true
		rs = append(rs, r)
	}
	if err := s.fillRooms(ctx, rs); err != nil {
		return sensor.Outcome{}, err
	}
	stored, err := s.insertReadings(ctx, key, rs, received, resume)
	if err != nil {
		return sensor.Outcome{}, err
	}
	res := sensor.Result{BatchID: b.ID, Accepted: len(stored), Duplicates: len(b.Readings) - len(stored), Rejected: b.Rejected}
	if res.Rejected == nil {
		res.Rejected = []sensor.Rejection{}
	}
	out := sensor.Outcome{Result: res}
	if len(stored) > 0 {
		body := sensor.EventBody(key, b.Site, stored)
		err := s.serial.Do(func() error {
			if err := s.updateRegistry(ctx, stored, received); err != nil {
				return err
			}
			if err := s.updateRollups(ctx, key, stored); err != nil {
				return err
			}
			return s.insertEvent(ctx, key, body)
		})
		if err != nil {
			return sensor.Outcome{}, err
		}
		out.Pending = &sensor.Event{BatchID: key, Body: body}
	}
	rd := &resultDoc{Accepted: res.Accepted, Duplicates: res.Duplicates, Rejected: []rejectDoc{}}
	for _, x := range res.Rejected {
		rd.Rejected = append(rd.Rejected, rejectDoc{Index: x.Index, Reason: x.Reason})
	}
	_, err = s.claims().Finish(ctx, key, owner, bson.D{
		{Key: "res", Value: rd}, {Key: "ev", Value: len(stored) > 0},
		{Key: "rc", Value: received}, {Key: "done", Value: s.conn.Now()},
	})
	if err != nil {
		return sensor.Outcome{}, fmt.Errorf("record answer: %w", err)
	}
	// Not matched: a retry took the claim over after our lease ran out; it
	// records the same answer.
	return out, nil
}

// fillRooms gives each reading without a room the room of the latest earlier
// reading of its sensor in the batch, or else its sensor's registered room.
func (s *Store) fillRooms(ctx context.Context, rs []reading.Reading) error {
	var need []string
	rooms := make(map[string]string)
	empty := false
	for _, r := range rs {
		if r.RoomID != "" {
			rooms[r.SensorID] = r.RoomID
			continue
		}
		empty = true
		if _, ok := rooms[r.SensorID]; !ok {
			need = append(need, r.SensorID)
		}
	}
	if !empty {
		return nil
	}
	registered := make(map[string]string, len(need))
	if len(need) > 0 {
		if err := s.registeredRooms(ctx, need, registered); err != nil {
			return err
		}
	}
	clear(rooms)
	for i := range rs {
		r := &rs[i]
		if r.RoomID != "" {
			rooms[r.SensorID] = r.RoomID
			continue
		}
		if room, ok := rooms[r.SensorID]; ok {
			r.RoomID = room
		} else {
			r.RoomID = registered[r.SensorID]
		}
	}
	return nil
}

// registeredRooms reads the registered rooms of sensors into rooms.
func (s *Store) registeredRooms(ctx context.Context, need []string, rooms map[string]string) error {
	docs, err := mongox.FindAll[struct {
		ID   string `bson:"_id"`
		Room string `bson:"room"`
	}](ctx, s.sensors, "read rooms", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: need}}}},
		options.Find().SetProjection(bson.D{{Key: "room", Value: 1}}))
	if err != nil {
		return err
	}
	for _, d := range docs {
		rooms[d.ID] = d.Room
	}
	return nil
}

// insertReadings inserts rs (unordered) and returns those this batch stored, in
// batch order. When resuming, readings already marked with the batch id count as
// stored by it.
func (s *Store) insertReadings(ctx context.Context, batchID string, rs []reading.Reading, received time.Time, resume bool) ([]reading.Reading, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	docs := make([]any, len(rs))
	for i, r := range rs {
		docs[i] = readingDoc{SensorID: r.SensorID, TS: r.Timestamp, Type: r.Type, RoomID: r.RoomID, Site: r.Site,
			Value: r.Value, Unit: r.Unit, Received: received, Batch: batchID}
	}
	_, err := s.readings.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	dups, err := mongox.Duplicates(err)
	if err != nil {
		return nil, mongox.Wrap("insert readings", err)
	}
	if len(dups) == 0 {
		return rs, nil
	}
	dup := make(map[int]bool, len(dups))
	for _, i := range dups {
		dup[i] = true
	}
	if resume {
		ours, err := s.ownReadings(ctx, batchID, rs, dups)
		if err != nil {
			return nil, err
		}
		for k := range ours {
			delete(dup, k)
		}
	}
	stored := make([]reading.Reading, 0, len(rs)-len(dup))
	for i, r := range rs {
		if !dup[i] {
			stored = append(stored, r)
		}
	}
	return stored, nil
}

// ownReadings returns which of the duplicate readings rs[dups] a previous run of
// the batch stored.
func (s *Store) ownReadings(ctx context.Context, batchID string, rs []reading.Reading, dups []int) (map[int]bool, error) {
	ors := make(bson.A, 0, len(dups))
	at := make(map[identity]int, len(dups))
	for _, i := range dups {
		r := rs[i]
		ors = append(ors, bson.D{{Key: "s", Value: r.SensorID}, {Key: "t", Value: r.Timestamp}, {Key: "y", Value: r.Type}})
		at[identity{r.SensorID, r.Timestamp.UnixMilli(), r.Type}] = i
	}
	docs, err := mongox.FindAll[readingDoc](ctx, s.readings, "read own readings", bson.D{{Key: "b", Value: batchID}, {Key: "$or", Value: ors}})
	if err != nil {
		return nil, err
	}
	ours := make(map[int]bool, len(docs))
	for _, d := range docs {
		if i, ok := at[identity{d.SensorID, d.TS.UnixMilli(), d.Type}]; ok {
			ours[i] = true
		}
	}
	return ours, nil
}

// updateRegistry applies what the stored readings tell the registry, in one
// ordered bulk write: per sensor an upsert of first/last seen (received time),
// room and site (the latest non-empty ones of the batch) and its types; then per
// sensor and type the newest reading as last value, only where it is newer than
// the one stored. Every update is idempotent, so a resumed batch may redo them.
func (s *Store) updateRegistry(ctx context.Context, stored []reading.Reading, received time.Time) error {
	type reg struct {
		room, site string
		types      []string
	}
	type st struct{ sensor, typ string }
	var order []string
	sensors := make(map[string]*reg)
	latest := make(map[st]reading.Reading)
	var latestOrder []st
	for _, r := range stored {
		g, ok := sensors[r.SensorID]
		if !ok {
			g = &reg{}
			sensors[r.SensorID] = g
			order = append(order, r.SensorID)
		}
		if r.RoomID != "" {
			g.room = r.RoomID
		}
		if r.Site != "" {
			g.site = r.Site
		}
		k := st{r.SensorID, r.Type}
		l, ok := latest[k]
		if !ok {
			g.types = append(g.types, r.Type)
			latestOrder = append(latestOrder, k)
			latest[k] = r
		} else if r.Timestamp.After(l.Timestamp) {
			latest[k] = r
		}
	}
	models := make([]mongo.WriteModel, 0, len(order)+len(latestOrder))
	for _, id := range order {
		g := sensors[id]
		set, onInsert := bson.D{}, bson.D{}
		for _, f := range []struct{ name, v string }{{"room", g.room}, {"site", g.site}} {
			if f.v != "" {
				set = append(set, bson.E{Key: f.name, Value: f.v})
			} else {
				onInsert = append(onInsert, bson.E{Key: f.name, Value: ""})
			}
		}
		up := bson.D{
			{Key: "$min", Value: bson.D{{Key: "first", Value: received}}},
			{Key: "$max", Value: bson.D{{Key: "last", Value: received}}},
			{Key: "$addToSet", Value: bson.D{{Key: "types", Value: bson.D{{Key: "$each", Value: g.types}}}}},
		}
		if len(set) > 0 {
			up = append(up, bson.E{Key: "$set", Value: set})
		}
		if len(onInsert) > 0 {
			up = append(up, bson.E{Key: "$setOnInsert", Value: onInsert})
		}
		models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetUpdate(up).SetUpsert(true))
	}
	for _, k := range latestOrder {
		r := latest[k]
		field := "lv." + r.Type
		filter := bson.D{{Key: "_id", Value: r.SensorID}, {Key: "$or", Value: bson.A{
			bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: field + ".t", Value: bson.D{{Key: "$lt", Value: r.Timestamp}}}},
		}}}
		up := bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: lastValueDoc{Value: r.Value, Unit: r.Unit, TS: r.Timestamp}}}}}
		models = append(models, mongo.NewUpdateOneModel().SetFilter(filter).SetUpdate(up))
	}
	// Two batches upserting a new sensor at once: one of them fails with a
	// duplicate key (real MongoDB retries that itself, FerretDB does not). Every
	// update here is idempotent, so the loser runs them again. The write is
	// ordered: the sensors before the failed one exist, and so does the failed
	// one, so each retry fails (if at all) further on, and one attempt per
	// sensor is enough however many sensors other batches are creating.
	for attempt := 1; ; attempt++ {
		_, err := mongox.BulkWrite(ctx, s.sensors, models, true)
		if err == nil {
			return nil
		}
		if !mongox.IsDuplicate(err) || attempt > len(order) {
			return mongox.Wrap("update registry", err)
		}
	}
}

type lastValueDoc struct {
	Value float64   `bson:"v"`
	Unit  string    `bson:"u"`
	TS    time.Time `bson:"t"`
}

// rollupBatches is how many recent batch ids a rollup bucket remembers, so that a
// resumed batch does not count its readings twice.
const rollupBatches = 16

// rollupBucket is a bucket document of rollups_1h as first inserted: no count
// yet, so readers skip it until an update counts readings in it.
type rollupBucket struct {
	ID      string    `bson:"_id"`
	Sensor  string    `bson:"s"`
	Type    string    `bson:"y"`
	Hour    time.Time `bson:"h"`
	Batches []string  `bson:"bs"`
}

// updateRollups adds the stored readings to their hourly buckets (bucket
// pattern), in two steps that no duplicate key can interrupt:
//
//  1. insert the missing buckets, without counts (an unordered insert; the
//     duplicate keys of buckets that exist already are expected and ignored,
//     and inserts go on past them, also on FerretDB);
//  2. update each bucket: $inc of count and sum (in two parts, sum and hsum,
//     reading.SplitSum: FerretDB refuses an $inc whose result is infinite, so
//     no $inc may overflow), $min/$max of value and time and
//     $push of the batch id, filtered on the batch id not being listed yet, so a
//     redone (resumed) batch counts once. These updates do not upsert, so none
//     can fail with a duplicate key; FerretDB 1.24 stops an update command at
//     its first failed statement and silently skips the rest, which is why the
//     creation is not folded into the updates as upserts.
func (s *Store) updateRollups(ctx context.Context, batchID string, stored []reading.Reading) error {
	type key struct {
		sensor, typ string
		hour        int64
	}
	type agg struct {
		n           int64
		sum         mongox.Sum
		min, max    float64
		first, last time.Time
	}
	var order []key
	aggs := make(map[key]*agg)
	for _, r := range stored {
		k := key{r.SensorID, r.Type, r.Timestamp.Truncate(time.Hour).UnixMilli()}
		a, ok := aggs[k]
		if !ok {
			a = &agg{min: r.Value, max: r.Value, first: r.Timestamp, last: r.Timestamp}
			aggs[k] = a
			order = append(order, k)
		}
		a.n++
		a.sum.Add(r.Value)
		a.min, a.max = min(a.min, r.Value), max(a.max, r.Value)
		if r.Timestamp.Before(a.first) {
			a.first = r.Timestamp
		}
		if r.Timestamp.After(a.last) {
			a.last = r.Timestamp
		}
	}
	if len(order) == 0 {
		return nil
	}
	id := func(k key) string { return k.sensor + "|" + k.typ + "|" + strconv.FormatInt(k.hour, 10) }
	buckets := make([]any, len(order))
	for i, k := range order {
		buckets[i] = rollupBucket{ID: id(k), Sensor: k.sensor, Type: k.typ, Hour: time.UnixMilli(k.hour).UTC(), Batches: []string{}}
	}
	_, err := s.rollups.InsertMany(ctx, buckets, options.InsertMany().SetOrdered(false))
	if _, err := mongox.Duplicates(err); err != nil {
		return mongox.Wrap("update rollups: create buckets", err)
	}
	models := make([]mongo.WriteModel, len(order))
	for i, k := range order {
		a := aggs[k]
		inc := append(bson.D{{Key: "n", Value: a.n}}, a.sum.Fields(false)...)
		up := bson.D{
			{Key: "$inc", Value: inc},
			{Key: "$min", Value: bson.D{{Key: "min", Value: a.min}, {Key: "first", Value: a.first}}},
			{Key: "$max", Value: bson.D{{Key: "max", Value: a.max}, {Key: "last", Value: a.last}}},
			{Key: "$push", Value: bson.D{{Key: "bs", Value: bson.D{{Key: "$each", Value: bson.A{batchID}}, {Key: "$slice", Value: -rollupBatches}}}}},
		}
		filter := bson.D{{Key: "_id", Value: id(k)}, {Key: "bs", Value: bson.D{{Key: "$ne", Value: batchID}}}}
		models[i] = mongo.NewUpdateOneModel().SetFilter(filter).SetUpdate(up)
	}
	dups, err := mongox.BulkWrite(ctx, s.rollups, models, false)
	if err != nil {
		return mongox.Wrap("update rollups", err)
	}
	if len(dups) > 0 {
		return fmt.Errorf("update rollups: %d unexpected duplicate keys", len(dups))
	}
	return nil
}

// insertEvent adds the batch's event to the outbox with the next sequence number.
// A resumed batch may find its event there already.
func (s *Store) insertEvent(ctx context.Context, batchID string, body []byte) error {
	seq, err := mongox.Next(ctx, s.counters, "outbox")
	if err != nil {
		return fmt.Errorf("outbox sequence: %w", err)
	}
	_, err = s.outbox.InsertOne(ctx, outboxDoc{BatchID: batchID, Seq: seq, Body: body})
	if err != nil && !mongox.IsDuplicate(err) {
		return mongox.Wrap("insert outbox event", err)
	}
	return nil
}

// AckEvent deletes a batch's outbox event; unknown ids are not an error.
func (s *Store) AckEvent(ctx context.Context, batchID string) error {
	if err := s.conn.Check("mongostore: ack " + batchID); err != nil {
		return err
	}
	if _, err := s.outbox.DeleteOne(ctx, bson.D{{Key: "_id", Value: batchID}}); err != nil {
		return mongox.Wrap("mongostore: ack "+batchID, err)
	}
	return nil
}

// PendingEvents lists up to limit outbox events, oldest first.
func (s *Store) PendingEvents(ctx context.Context, limit int) ([]sensor.Event, error) {
	if err := s.conn.Check("mongostore: pending events"); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = paging.DefaultLimit
	}
	docs, err := mongox.FindAll[outboxDoc](ctx, s.outbox, "mongostore: pending events", bson.D{}, options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, err
	}
	evs := make([]sensor.Event, len(docs))
	for i, d := range docs {
		evs[i] = sensor.Event{BatchID: d.BatchID, Body: d.Body}
	}
	return evs, nil
}
