package sqlitestore

import (
	"cmp"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// registryChunk is the registry rows (5 columns) per multi-row upsert.
const registryChunk = 100

// prepared is a batch made ready for the writer on its caller's goroutine, so the
// single writer spends its time on the database. What depends on which readings
// turn out to be new (the event body, the registry rows) is computed assuming all
// of them are, the usual case; the writer redoes it when some were duplicates.
type prepared struct {
	b        sensor.Batch
	key      string            // b.Key()
	rs       []reading.Reading // millisecond timestamps, empty sites filled
	recvMs   int64
	needRoom bool     // some reading has no room_id
	body     []byte   // the event body if every reading is stored as it is
	event    []byte   // body's compact outbox form (see encodeEvent)
	reg      registry // the registry rows if every reading is stored
}

func prepare(b sensor.Batch, now func() time.Time) *prepared {
	received := b.ReceivedAt
	if received.IsZero() {
		received = now()
	}
	p := &prepared{b: b, key: b.Key(), rs: make([]reading.Reading, len(b.Readings)), recvMs: received.UnixMilli()}
	for i, r := range b.Readings {
		r.Timestamp = time.UnixMilli(r.Timestamp.UnixMilli()).UTC()
		if r.Site == "" {
			r.Site = b.Site
		}
		if r.RoomID == "" {
			p.needRoom = true
		}
		p.rs[i] = r
	}
	if len(p.rs) > 0 && !p.needRoom {
		p.body = sensor.EventBody(p.key, b.Site, p.rs)
		p.event = encodeEvent(b.Site, p.rs)
	}
	// An empty room filled in later changes nothing here: it is either the
	// registered room or that of an earlier reading of the batch.
	p.reg = newRegistry(p.rs, p.recvMs)
	return p
}

// registry is what a batch writes to the registry: one row per sensor (latest
// non-empty room and site) and, per sensor and type, the newest reading.
type registry struct {
	sensors []sensorRow
	latest  []reading.Reading
}

// sensorRow is a sensor's registry row as a batch (or a group) leaves it;
// first and last are the received times of the batches that saw it.
type sensorRow struct {
	id, room, site string
	first, last    int64
}

type sensorType struct{ sensor, typ string }

func newRegistry(stored []reading.Reading, recvMs int64) registry {
	var reg registry
	sensors := make(map[string]int)
	latest := make(map[sensorType]int)
	for _, r := range stored {
		i, ok := sensors[r.SensorID]
		if !ok {
			i = len(reg.sensors)
			sensors[r.SensorID] = i
			reg.sensors = append(reg.sensors, sensorRow{id: r.SensorID, first: recvMs, last: recvMs})
		}
		if r.RoomID != "" {
			reg.sensors[i].room = r.RoomID
		}
		if r.Site != "" {
			reg.sensors[i].site = r.Site
		}
		k := sensorType{r.SensorID, r.Type}
		j, ok := latest[k]
		if !ok {
			latest[k] = len(reg.latest)
			reg.latest = append(reg.latest, r)
		} else if r.Timestamp.After(reg.latest[j].Timestamp) {
			reg.latest[j] = r
		}
	}
	return reg
}

// ingest applies one batch inside the open transaction. A batch whose key is
// recorded with another fingerprint fails with sensor.ErrBatchConflict before
// anything is written.
func (w *writer) ingest(p *prepared) (sensor.Outcome, error) {
	b := p.b
	var raw, fp string
	err := w.getBatch.QueryRowContext(w.bg, p.key).Scan(&raw, &fp)
	if err == nil {
		if fp != b.Fingerprint {
			return sensor.Outcome{}, sensor.ErrBatchConflict
		}
		var event []byte
		err := w.getPending.QueryRowContext(w.bg, p.key).Scan(&event)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return sensor.Outcome{}, fmt.Errorf("read outbox: %w", err)
		}
		return replayedOutcome(p.key, raw, event)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return sensor.Outcome{}, fmt.Errorf("read batch: %w", err)
	}

	if p.needRoom {
		if err := w.fillRooms(p.rs); err != nil {
			return sensor.Outcome{}, err
		}
	}
	stored, ids, err := w.fresh(p.rs)
	if err != nil {
		return sensor.Outcome{}, err
	}
	reg, body, event := p.reg, p.body, p.event
	if len(stored) != len(p.rs) {
		reg = newRegistry(stored, p.recvMs)
	}
	if len(stored) != len(p.rs) || body == nil {
		body, event = nil, nil
		if len(stored) > 0 {
			body = sensor.EventBody(p.key, b.Site, stored)
			event = encodeEvent(b.Site, stored)
		}
	}

	res := sensor.Result{
		BatchID:    b.ID,
		Accepted:   len(stored),
		Duplicates: len(p.rs) - len(stored),
		Rejected:   append([]sensor.Rejection{}, b.Rejected...),
	}
	rawRes, err := json.Marshal(res)
	if err != nil {
		return sensor.Outcome{}, fmt.Errorf("encode result: %w", err)
	}
	if _, err := w.insBatch.ExecContext(w.bg, p.key, string(rawRes), p.recvMs, b.Principal, b.Fingerprint); err != nil {
		return sensor.Outcome{}, fmt.Errorf("insert batch: %w", err)
	}
	var seq int64
	if event != nil { // the stored readings, also the journal's row
		res, err := w.insJournal.ExecContext(w.bg, p.recvMs, event)
		if err != nil {
			return sensor.Outcome{}, fmt.Errorf("insert into journal: %w", err)
		}
		if seq, err = res.LastInsertId(); err != nil {
			return sensor.Outcome{}, fmt.Errorf("insert into journal: %w", err)
		}
	}
	out := sensor.Outcome{Result: res}
	if body != nil {
		if _, err := w.insOutbox.ExecContext(w.bg, p.key, event); err != nil {
			return sensor.Outcome{}, fmt.Errorf("insert outbox: %w", err)
		}
		out.Pending = &sensor.Event{BatchID: p.key, Body: body}
	}
	// The readings and registry rows join the group once the batch's savepoint
	// is released, and are written to readings and the registry tables by the
	// next merge of the journal (see groupRegistry and journal.go).
	w.batchOut = &appliedBatch{reg: reg, stored: stored, ids: ids, recvMs: p.recvMs, seq: seq}
	return out, nil
}

// groupRegistry merges the registry rows of many batches (those of one group
// commit, and those since the last merge of the journal), so that a sensor
// reporting in every batch is written once per merge, not once per batch.
// Merging gives the rows the batch-by-batch upserts would: the latest non-empty
// room and site, the earliest first and latest last received time, and per
// sensor and type the newest reading (the first of equals).
type groupRegistry struct {
	sensors map[string]int // index in reg.sensors
	latest  map[sensorType]int
	reg     registry
}

func (g *groupRegistry) reset() {
	clear(g.sensors)
	clear(g.latest)
	g.reg.sensors, g.reg.latest = g.reg.sensors[:0], g.reg.latest[:0]
}

func (g *groupRegistry) add(reg registry) {
	if g.sensors == nil {
		g.sensors, g.latest = make(map[string]int), make(map[sensorType]int)
	}
	for _, s := range reg.sensors {
		i, ok := g.sensors[s.id]
		if !ok {
			g.sensors[s.id] = len(g.reg.sensors)
			g.reg.sensors = append(g.reg.sensors, s)
			continue
		}
		m := &g.reg.sensors[i]
		if s.room != "" {
			m.room = s.room
		}
		if s.site != "" {
			m.site = s.site
		}
		m.first, m.last = min(m.first, s.first), max(m.last, s.last)
	}
	for _, r := range reg.latest {
		k := sensorType{r.SensorID, r.Type}
		j, ok := g.latest[k]
		if !ok {
			g.latest[k] = len(g.reg.latest)
			g.reg.latest = append(g.reg.latest, r)
		} else if r.Timestamp.After(g.reg.latest[j].Timestamp) {
			g.reg.latest[j] = r
		}
	}
}

// room is the room the group has registered for a sensor so far, if any.
func (g *groupRegistry) room(id string) string {
	if i, ok := g.sensors[id]; ok {
		return g.reg.sensors[i].room
	}
	return ""
}

// fillRooms gives each reading without a room the room of the latest earlier
// reading of its sensor in the batch, or else its sensor's registered room.
func (w *writer) fillRooms(rs []reading.Reading) error {
	rooms := make(map[string]string)
	for i := range rs {
		r := &rs[i]
		if r.RoomID != "" {
			rooms[r.SensorID] = r.RoomID
			continue
		}
		room, ok := rooms[r.SensorID]
		if !ok {
			// An earlier batch of this group, or one since the last merge,
			// registered it; not yet written.
			room = cmp.Or(w.group.room(r.SensorID), w.s.j.open.reg.room(r.SensorID), w.s.j.merging.reg.room(r.SensorID))
			if ok = room != ""; ok {
				rooms[r.SensorID] = room
			}
		}
		if !ok {
			err := w.roomOf.QueryRowContext(w.bg, r.SensorID).Scan(&room)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("read room of %s: %w", r.SensorID, err)
			}
			rooms[r.SensorID] = room
		}
		r.RoomID = room
	}
	return nil
}

// updateRegistry upserts registry rows, registryChunk per statement.
func (w *writer) updateRegistry(reg registry) error {
	args := make([]any, 0, 5*min(max(len(reg.sensors), len(reg.latest)), registryChunk))
	for start := 0; start < len(reg.sensors); start += registryChunk {
		chunk := reg.sensors[start:min(start+registryChunk, len(reg.sensors))]
		args = args[:0]
		for _, s := range chunk {
			args = append(args, s.id, s.room, s.site, s.first, s.last)
		}
		st, err := w.stmt(&w.upSensors, len(chunk))
		if err != nil {
			return fmt.Errorf("prepare sensors upsert: %w", err)
		}
		if _, err := st.ExecContext(w.bg, args...); err != nil {
			return fmt.Errorf("upsert sensors: %w", err)
		}
	}
	for start := 0; start < len(reg.latest); start += registryChunk {
		chunk := reg.latest[start:min(start+registryChunk, len(reg.latest))]
		args = args[:0]
		for _, r := range chunk {
			args = append(args, r.SensorID, r.Type, r.Value, r.Unit, r.Timestamp.UnixMilli())
		}
		st, err := w.stmt(&w.upTypes, len(chunk))
		if err != nil {
			return fmt.Errorf("prepare last values upsert: %w", err)
		}
		if _, err := st.ExecContext(w.bg, args...); err != nil {
			return fmt.Errorf("upsert last values: %w", err)
		}
	}
	return nil
}
