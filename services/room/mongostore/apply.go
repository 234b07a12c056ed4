package mongostore

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/room"
)

// appliedDoc is a document of applied: the claim on a batch id (claimed while
// an Apply works on it, done once it is applied).
type appliedDoc struct {
	ID                 string `bson:"_id"`
	mongox.ClaimFields `bson:",inline"`
	// At is the batch's Batch.At: Forget drops ids by it.
	At    time.Time `bson:"at"`
	Rooms []string  `bson:"rooms,omitempty"`
}

// rollupBatchCap bounds the batch ids a rollup bucket lists. An Apply removes
// its id once the batch is done, so a bucket lists only the batches being
// applied to it and those whose Apply died after recording them as done; the
// cap only keeps a bucket bounded if such leftovers pile up.
const rollupBatchCap = 64

// Apply applies b once per b.ID; see room.Store. Without multi-document
// transactions it proceeds in steps under a claim on the batch id:
//
//  1. insert the applied document (state claimed, owner token, lease); a
//     duplicate key means the id is known: wait until it is done and answer a
//     duplicate, or take the claim over once its lease ran out (its Apply died);
//  2. place the sensors and read where each is; create the rooms; move the latest
//     values forward (each update conditional, so redoing it changes nothing);
//  3. add the readings to their rollup buckets: per bucket an upsert creating
//     it, then an update that pushes the batch id and only matches a bucket
//     that does not list it yet, so a batch is counted once in each bucket
//     however often it is redone. Rollup and latest-value documents are this
//     process's own (Store.shard): a batch taken over from a process that died
//     skips the buckets that any process's document already counts it in;
//  4. record the batch as done, with its rooms;
//  5. remove the batch id from its buckets again (a crash before this only
//     leaves the id behind, which is harmless).
//
// A redelivery of a batch whose Apply died before step 4 redoes steps 2–5 and
// ends in the state of an Apply that never stopped.
func (s *Store) Apply(ctx context.Context, b room.Batch) (room.Applied, error) {
	if b.ID == "" {
		return room.Applied{}, fmt.Errorf("mongostore: apply: %w: empty batch id", apperr.ErrInvalid)
	}
	if err := s.conn.Check("mongostore: apply " + b.ID); err != nil {
		return room.Applied{}, err
	}
	at := b.At
	if at.IsZero() {
		at = s.conn.Now()
	}
	at = time.UnixMilli(at.UnixMilli()).UTC()
	owner, resumed, dup, err := s.claim(ctx, b.ID, at)
	if err != nil {
		return room.Applied{}, fmt.Errorf("mongostore: apply %s: %w", b.ID, err)
	}
	if dup != nil {
		return *dup, nil
	}
	// Once claimed, the batch is finished even if the caller goes away, so that a
	// redelivery finds it done rather than a claim to wait out; but not past
	// four fifths of the lease, so that its writes have stopped when a
	// redelivery may take the claim over.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.Lease*4/5)
	defer cancel()
	out, err := s.apply(wctx, b, owner, resumed, at)
	if err != nil {
		return room.Applied{}, fmt.Errorf("mongostore: apply %s: %w", b.ID, err)
	}
	return out, nil
}

// claim claims a batch id (see mongox.Claim) and returns its owner token, or
// the answer to a batch id already applied. resumed tells that the claim was
// taken over from an Apply that died, which may have counted the batch in some
// buckets.
func (s *Store) claim(ctx context.Context, id string, at time.Time) (owner string, resumed bool, dup *room.Applied, err error) {
	c, err := mongox.Claim(ctx, s.claims(), id, func(f mongox.ClaimFields) appliedDoc {
		return appliedDoc{ID: id, ClaimFields: f, At: at}
	}, nil)
	switch {
	case err != nil:
		return "", false, nil, err
	case c.Done != nil:
		out := room.Applied{Duplicate: true, Rooms: c.Done.Rooms}
		if out.Rooms == nil {
			out.Rooms = []string{}
		}
		return "", false, &out, nil
	case c.Resumed:
		s.conn.Log.Warn("mongo store resumes a batch whose apply did not finish", "batch_id", id)
	}
	return c.Owner, c.Resumed, nil, nil
}

// claims is the claim protocol on the applied batch ids.
func (s *Store) claims() mongox.Claims {
	return mongox.Claims{Coll: s.applied, Lease: s.opts.Lease, Now: s.conn.Now}
}

type bucketKey struct {
	room, typ string
	start     int64 // ms
}

func (k bucketKey) id() string { return k.room + "|" + k.typ + "|" + strconv.FormatInt(k.start, 10) }

func keyOf(r room.Rollup) bucketKey { return bucketKey{r.RoomID, r.Type, r.Start} }

// apply runs steps 2–5 of Apply for the owner of the batch's claim.
func (s *Store) apply(ctx context.Context, b room.Batch, owner string, resumed bool, at time.Time) (room.Applied, error) {
	var out room.Applied
	buckets := make([][]bucketKey, len(s.tiers))
	err := s.serial.Do(func() error {
		var err error
		out, buckets, err = s.write(ctx, b, resumed, at)
		return err
	})
	if err != nil {
		return room.Applied{}, err
	}
	ours, err := s.claims().Finish(ctx, b.ID, owner, bson.D{{Key: "rooms", Value: out.Rooms}})
	if err != nil {
		return room.Applied{}, fmt.Errorf("record batch: %w", err)
	}
	if !ours {
		// A redelivery took the claim over after our lease ran out: it finishes
		// the batch (counting nothing twice) and removes the batch ids.
		return out, nil
	}
	err = s.serial.Do(func() error { return s.release(ctx, b.ID, buckets) })
	if err != nil {
		s.conn.Log.Warn("mongo store could not remove a batch id from its rollups", "batch_id", b.ID, "err", err)
	}
	return out, nil
}

// write runs steps 2 and 3 of Apply. It returns the rollup buckets the batch
// went to, per tier.
func (s *Store) write(ctx context.Context, b room.Batch, resumed bool, at time.Time) (room.Applied, [][]bucketKey, error) {
	// Where each sensor is: its newest reading that names a room places it there
	// (unless it is assigned elsewhere, or has reported from elsewhere since).
	placed, ids := room.Placements(b.Readings)
	var models []mongo.WriteModel
	for _, p := range placed {
		models = append(models,
			mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: p.SensorID}}).SetUpdate(bson.D{
				{Key: "$setOnInsert", Value: bson.D{{Key: "room", Value: p.RoomID}, {Key: "seen", Value: p.Seen}, {Key: "assigned", Value: false}}},
			}).SetUpsert(true),
			mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: p.SensorID}, {Key: "assigned", Value: bson.D{{Key: "$ne", Value: true}}},
				{Key: "seen", Value: bson.D{{Key: "$lte", Value: p.Seen}}}}).SetUpdate(bson.D{
				{Key: "$set", Value: bson.D{{Key: "room", Value: p.RoomID}, {Key: "seen", Value: p.Seen}}},
			}))
	}
	if err := writeAll(ctx, s.sensors, models); err != nil {
		return room.Applied{}, nil, mongox.Wrap("place sensors", err)
	}
	where, err := s.placements(ctx, ids)
	if err != nil {
		return room.Applied{}, nil, err
	}
	plan := room.NewPlan(b.Readings, where, s.periods())
	out := plan.Applied
	buckets := make([][]bucketKey, len(s.tiers))
	for i, rs := range plan.Rollups {
		for _, r := range rs {
			buckets[i] = append(buckets[i], keyOf(r))
		}
	}

	models = models[:0]
	for _, id := range out.Rooms {
		models = append(models, mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).
			SetUpdate(bson.D{{Key: "$setOnInsert", Value: roomDoc{ID: id, Name: id, Created: at, Updated: at}.fields()}}).SetUpsert(true))
	}
	if err := writeAll(ctx, s.rooms, models); err != nil {
		return room.Applied{}, nil, mongox.Wrap("create rooms", err)
	}
	models = models[:0]
	for _, r := range plan.Latest {
		id := s.docID(r.RoomID + "|" + r.Type + "|" + r.SensorID)
		ts := time.UnixMilli(r.Timestamp.UnixMilli()).UTC()
		models = append(models,
			mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetUpdate(bson.D{
				{Key: "$setOnInsert", Value: latestDoc{Room: r.RoomID, Type: r.Type, Sensor: r.SensorID, Value: r.Value, Unit: r.Unit, TS: ts}},
			}).SetUpsert(true),
			mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: id}, {Key: "t", Value: bson.D{{Key: "$lt", Value: ts}}}}).
				SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: r.Value}, {Key: "u", Value: r.Unit}, {Key: "t", Value: ts}}}}))
	}
	if err := writeAll(ctx, s.latest, models); err != nil {
		return room.Applied{}, nil, mongox.Wrap("update latest values", err)
	}
	for i, t := range s.tiers {
		rollups := plan.Rollups[i]
		if resumed {
			var err error
			if rollups, err = s.uncounted(ctx, t, b.ID, rollups); err != nil {
				return room.Applied{}, nil, err
			}
		}
		if err := s.addRollups(ctx, t, b.ID, rollups); err != nil {
			return room.Applied{}, nil, err
		}
	}
	return out, buckets, nil
}

// docID is the id of this process's document of a bucket or latest value.
func (s *Store) docID(key string) string { return key + "|" + s.shard }

// uncounted returns the keys of the buckets that no process's document counts
// batchID in yet. Only a batch taken over from an Apply that died asks, so one
// indexed query per bucket is cheap enough.
func (s *Store) uncounted(ctx context.Context, t tier, batchID string, rollups []room.Rollup) ([]room.Rollup, error) {
	var out []room.Rollup
	for _, r := range rollups {
		n, err := t.coll.CountDocuments(ctx, bson.D{
			{Key: "r", Value: r.RoomID}, {Key: "y", Value: r.Type}, {Key: "st", Value: time.UnixMilli(r.Start).UTC()},
			{Key: "bs", Value: batchID},
		}, options.Count().SetLimit(1))
		if err != nil {
			return nil, mongox.Wrap("check "+t.name, err)
		}
		if n == 0 {
			out = append(out, r)
		}
	}
	return out, nil
}

// placement is where a sensor is.
type placement struct {
	ID       string `bson:"_id"`
	Room     string `bson:"room"`
	Assigned bool   `bson:"assigned"`
}

// placements reads where the sensors ids are.
func (s *Store) placements(ctx context.Context, ids []string) (map[string]room.Where, error) {
	where := make(map[string]room.Where, len(ids))
	for start := 0; start < len(ids); start += 256 {
		chunk := ids[start:min(start+256, len(ids))]
		docs, err := mongox.FindAll[placement](ctx, s.sensors, "read placements", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: chunk}}}},
			options.Find().SetProjection(bson.D{{Key: "room", Value: 1}, {Key: "assigned", Value: 1}}))
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			where[d.ID] = room.Where{Room: d.Room, Assigned: d.Assigned}
		}
	}
	return where, nil
}

// writeAll runs updates in order, each of them idempotent: an upsert that only
// sets fields on insert, then a conditional update. (FerretDB 1.24 ends an
// update command at its first failed statement even when unordered, so no
// statement here is meant to fail.) Two processes upserting one new document
// at once can fail one with a duplicate key; the updates are then run again.
func writeAll(ctx context.Context, coll *mongo.Collection, models []mongo.WriteModel) error {
	for attempt := 1; ; attempt++ {
		_, err := mongox.BulkWrite(ctx, coll, models, true)
		if err == nil || !mongox.IsDuplicate(err) || attempt == 3 {
			return err
		}
	}
}

// addRollups adds a batch to the buckets of one tier (bucket pattern). Per
// bucket: an upsert creating it (room, type, start: no counts yet), then an
// update with $inc of count and sum, $min/$max of value and $push of the batch
// id, whose filter skips a bucket that lists the batch already, so that a
// batch is counted once in each bucket however often it is redone. A bucket
// created by a batch that died before counting holds no count: readers skip it.
func (s *Store) addRollups(ctx context.Context, t tier, batchID string, rollups []room.Rollup) error {
	models := make([]mongo.WriteModel, 0, 2*len(rollups))
	for _, a := range rollups {
		k := keyOf(a)
		inc := append(bson.D{{Key: "n", Value: a.N}}, mongox.SplitSum(a.Sum).Fields(false)...)
		models = append(models,
			mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: s.docID(k.id())}}).SetUpdate(bson.D{
				{Key: "$setOnInsert", Value: bson.D{{Key: "r", Value: k.room}, {Key: "y", Value: k.typ}, {Key: "st", Value: time.UnixMilli(k.start).UTC()}}},
			}).SetUpsert(true),
			mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: s.docID(k.id())}, {Key: "bs", Value: bson.D{{Key: "$ne", Value: batchID}}}}).
				SetUpdate(bson.D{
					{Key: "$inc", Value: inc},
					{Key: "$min", Value: bson.D{{Key: "min", Value: a.Min}}},
					{Key: "$max", Value: bson.D{{Key: "max", Value: a.Max}}},
					{Key: "$push", Value: bson.D{{Key: "bs", Value: bson.D{{Key: "$each", Value: bson.A{batchID}}, {Key: "$slice", Value: -rollupBatchCap}}}}},
				}))
	}
	return mongox.Wrap("update "+t.name, writeAll(ctx, t.coll, models))
}

// release removes a done batch's id from its rollup buckets.
func (s *Store) release(ctx context.Context, batchID string, buckets [][]bucketKey) error {
	for i, t := range s.tiers {
		models := make([]mongo.WriteModel, len(buckets[i]))
		for j, k := range buckets[i] {
			models[j] = mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: s.docID(k.id())}}).
				SetUpdate(bson.D{{Key: "$pull", Value: bson.D{{Key: "bs", Value: batchID}}}})
		}
		if _, err := mongox.BulkWrite(ctx, t.coll, models, true); err != nil {
			return mongox.Wrap("release "+t.name, err)
		}
	}
	return nil
}

// Forget deletes the applied batch ids recorded before t.
func (s *Store) Forget(ctx context.Context, before time.Time) (int, error) {
	if err := s.conn.Check("mongostore: forget"); err != nil {
		return 0, err
	}
	res, err := s.applied.DeleteMany(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$lt", Value: before}}}})
	if err != nil {
		return 0, mongox.Wrap("mongostore: forget", err)
	}
	return int(res.DeletedCount), nil
}

// SetSeries replaces minutes of a derived series of several rooms, room by
// room, and rebuilds their coarser buckets; see room.Store. The series'
// documents have no shard suffix: their content is a function of the readings,
// so whichever replica writes last writes the same values.
func (s *Store) SetSeries(ctx context.Context, typ string, rooms []room.RoomPoints) error {
	for _, rp := range rooms {
		if err := s.setSeries(ctx, rp.RoomID, typ, rp.Points); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) setSeries(ctx context.Context, roomID, typ string, points []room.Point) error {
	if len(points) == 0 {
		return nil
	}
	if err := s.conn.Check("mongostore: set series " + typ + " of " + roomID); err != nil {
		return err
	}
	if found, err := s.hasRoom(ctx, "mongostore: set series "+typ+" of "+roomID, roomID); err != nil || !found {
		return err // not found: deleted meanwhile
	}
	set := func(t tier, start int64, n int64, sum, lo, hi float64) mongo.WriteModel {
		k := bucketKey{room: roomID, typ: typ, start: start}
		return mongo.NewUpdateOneModel().SetFilter(bson.D{{Key: "_id", Value: k.id()}}).SetUpdate(bson.D{
			{Key: "$set", Value: append(bson.D{{Key: "r", Value: roomID}, {Key: "y", Value: typ}, {Key: "st", Value: time.UnixMilli(start).UTC()},
				{Key: "n", Value: n}, {Key: "min", Value: lo}, {Key: "max", Value: hi}}, mongox.SplitSum(sum).Fields(true)...)},
		}).SetUpsert(true)
	}
	models := make([]mongo.WriteModel, 0, len(points))
	coarse := make([]map[int64]bool, len(s.tiers))
	for i := range coarse {
		coarse[i] = map[int64]bool{}
	}
	for _, p := range points {
		start := room.BucketStart(p.Start.UnixMilli(), s.tiers[0].period)
		models = append(models, set(s.tiers[0], start, 1, p.Value, p.Value, p.Value))
		for i := 1; i < len(s.tiers); i++ {
			coarse[i][room.BucketStart(start, s.tiers[i].period)] = true
		}
	}
	if err := writeAll(ctx, s.tiers[0].coll, models); err != nil {
		return mongox.Wrap("mongostore: set series "+typ+" of "+roomID, err)
	}
	for i := 1; i < len(s.tiers); i++ {
		t := s.tiers[i]
		per := t.period.Milliseconds()
		lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
		for start := range coarse[i] {
			lo, hi = min(lo, start), max(hi, start+per)
		}
		docs, err := mongox.FindAll[rollupDoc](ctx, s.tiers[0].coll, "mongostore: set series "+typ+" of "+roomID, bson.D{{Key: "r", Value: roomID}, {Key: "y", Value: typ},
			{Key: "st", Value: bson.D{{Key: "$gte", Value: time.UnixMilli(lo).UTC()}, {Key: "$lt", Value: time.UnixMilli(hi).UTC()}}}})
		if err != nil {
			return err
		}
		merged := map[int64]*room.Agg{}
		for _, d := range docs {
			start := room.BucketStart(d.Start.UnixMilli(), t.period)
			if !coarse[i][start] || d.N == 0 {
				continue
			}
			a := merged[start]
			if a == nil {
				a = &room.Agg{}
				merged[start] = a
			}
			a.Merge(d.agg())
		}
		models = models[:0]
		for start, a := range merged {
			models = append(models, set(t, start, a.N, a.Sum, a.Min, a.Max))
		}
		if err := writeAll(ctx, t.coll, models); err != nil {
			return mongox.Wrap("mongostore: set series "+typ+" of "+roomID, err)
		}
	}
	return nil
}
