package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/services/room"
)

const roomColumns = `id, name, floor, building, capacity, area_m2, created_ms, updated_ms,
	(SELECT count(*) FROM sensors WHERE sensors.room_id = rooms.id)`

func scanRoom(sc rowscan.Row) (room.Room, error) {
	var (
		r                room.Room
		floor, capacity  sql.NullInt64
		area             sql.NullFloat64
		created, updated int64
		sensorCount      int
	)
	if err := sc.Scan(&r.ID, &r.Name, &floor, &r.Building, &capacity, &area, &created, &updated, &sensorCount); err != nil {
		return r, err
	}
	if floor.Valid {
		v := int(floor.Int64)
		r.Floor = &v
	}
	if capacity.Valid {
		v := int(capacity.Int64)
		r.Capacity = &v
	}
	if area.Valid {
		v := area.Float64
		r.AreaM2 = &v
	}
	r.CreatedAt, r.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	r.SensorCount = sensorCount
	return r, nil
}

func nullInt(p *int) any {
	if p == nil {
		return nil
	}
	return int64(*p)
}

func nullFloat(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// CreateRoom stores a new room; see room.Store.
func (s *Store) CreateRoom(ctx context.Context, r room.Room) (room.Room, error) {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now()
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = r.CreatedAt
	}
	if r.Name == "" {
		r.Name = r.ID
	}
	_, err := s.db.Writer.ExecContext(ctx, `INSERT INTO rooms (id, name, floor, building, capacity, area_m2, created_ms, updated_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.Name, nullInt(r.Floor), r.Building, nullInt(r.Capacity), nullFloat(r.AreaM2), r.CreatedAt.UnixMilli(), r.UpdatedAt.UnixMilli())
	if isConstraint(err) {
		return room.Room{}, fmt.Errorf("sqlitestore: create room %s: %w", r.ID, room.ErrConflict)
	}
	if err != nil {
		return room.Room{}, wrapErr("sqlitestore: create room "+r.ID, err)
	}
	return s.Room(ctx, r.ID)
}

// UpdateRoom changes the fields set in p; see room.Store.
func (s *Store) UpdateRoom(ctx context.Context, id string, p room.Patch, at time.Time) (room.Room, error) {
	var name, building any
	if p.Name.Value != nil {
		name = *p.Name.Value
	}
	if p.Building.Value != nil {
		building = *p.Building.Value
	}
	res, err := s.db.Writer.ExecContext(ctx, `UPDATE rooms SET
		name     = CASE WHEN ?1 THEN coalesce(?2, id) ELSE name END,
		building = CASE WHEN ?3 THEN coalesce(?4, '') ELSE building END,
		floor    = CASE WHEN ?5 THEN ?6 ELSE floor END,
		capacity = CASE WHEN ?7 THEN ?8 ELSE capacity END,
		area_m2  = CASE WHEN ?9 THEN ?10 ELSE area_m2 END,
		updated_ms = ?11
		WHERE id = ?12`,
		p.Name.Set, name, p.Building.Set, building, p.Floor.Set, nullInt(p.Floor.Value),
		p.Capacity.Set, nullInt(p.Capacity.Value), p.AreaM2.Set, nullFloat(p.AreaM2.Value), at.UnixMilli(), id)
	if err != nil {
		return room.Room{}, wrapErr("sqlitestore: update room "+id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return room.Room{}, fmt.Errorf("sqlitestore: update room %s: %w", id, room.ErrNotFound)
	}
	return s.Room(ctx, id)
}

// DeleteRoom forgets a room and everything kept about it; see room.Store.
func (s *Store) DeleteRoom(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM rooms WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return room.ErrNotFound
		}
		for _, table := range []string{"sensors", "latest", "rollup_1m", "rollup_5m", "rollup_1h"} {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+table+" WHERE room_id = ?", id); err != nil {
				return err
			}
		}
		return nil
	})
	return wrapErr("sqlitestore: delete room "+id, err)
}

// AssignSensor puts a sensor in a room; see room.Store.
func (s *Store) AssignSensor(ctx context.Context, roomID, sensorID string, at time.Time) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, "SELECT 1 FROM rooms WHERE id = ?", roomID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
			return room.ErrNotFound
		} else if err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sensors (id, room_id, assigned, seen_ms) VALUES (?, ?, 1, 0)
			ON CONFLICT (id) DO UPDATE SET room_id = excluded.room_id, assigned = 1`, sensorID, roomID)
		return err
	})
	return wrapErr("sqlitestore: assign sensor "+sensorID+" to "+roomID, err)
}

func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.Writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Room returns one room with its sensors; see room.Store.
func (s *Store) Room(ctx context.Context, id string) (room.Room, error) {
	r, err := scanRoom(s.read(roomQuery).QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return room.Room{}, fmt.Errorf("sqlitestore: room %s: %w", id, room.ErrNotFound)
	}
	if err != nil {
		return room.Room{}, wrapErr("sqlitestore: room "+id, err)
	}
	rows, err := s.read(sensorsQuery).QueryContext(ctx, id)
	if err != nil {
		return room.Room{}, wrapErr("sqlitestore: room "+id, err)
	}
	r.Sensors, err = rowscan.Append([]string{}, rows, rowscan.Values[string]())
	if err != nil {
		return room.Room{}, wrapErr("sqlitestore: room "+id, err)
	}
	return r, nil
}

// Rooms lists rooms by id; see room.Store.
func (s *Store) Rooms(ctx context.Context, after string, limit int) ([]room.Room, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.read(roomsQuery).QueryContext(ctx, after, limit)
	if err != nil {
		return nil, wrapErr("sqlitestore: rooms", err)
	}
	out, err := rowscan.Append([]room.Room{}, rows, scanRoom)
	if err != nil {
		return nil, wrapErr("sqlitestore: rooms", err)
	}
	return out, nil
}

// The reads, prepared on the read pool at Open.
const (
	roomQuery    = "SELECT " + roomColumns + " FROM rooms WHERE id = ?"
	roomsQuery   = "SELECT " + roomColumns + " FROM rooms WHERE id > ? ORDER BY id LIMIT ?"
	sensorsQuery = "SELECT id FROM sensors WHERE room_id = ? ORDER BY id"
	latestQuery  = `SELECT l.type, l.sensor_id, l.value, l.unit, l.ts_ms
		FROM latest l JOIN sensors s ON s.id = l.sensor_id AND s.room_id = l.room_id
		WHERE l.room_id = ?`
)

func readQueries() []string {
	return append([]string{roomQuery, roomsQuery, sensorsQuery, latestQuery, windowQuery, estimateQuery}, historyQueries...)
}

// estimateQuery reads the newest minute of a room's occupied_estimate series.
const estimateQuery = "SELECT start_ms, n, vsum, vmin, vmax FROM rollup_1m WHERE room_id = ? AND type = '" +
	room.EstimateType + "' ORDER BY start_ms DESC LIMIT 1"

// windowQuery merges a room's minute rollups per type over a window: one primary
// key range per type the room has.
const windowQuery = `SELECT type, sum(n), sum(vsum), min(vmin), max(vmax) FROM rollup_1m
	WHERE room_id = ? AND type IN (SELECT DISTINCT type FROM latest WHERE room_id = ?)
	AND start_ms >= ? AND start_ms <= ? GROUP BY type`

// Snapshot returns what a room's current metrics are computed from; see room.Store.
func (s *Store) Snapshot(ctx context.Context, roomID string, from, to time.Time) (room.Snapshot, error) {
	var snap room.Snapshot
	r, err := scanRoom(s.read(roomQuery).QueryRowContext(ctx, roomID))
	if errors.Is(err, sql.ErrNoRows) {
		return snap, fmt.Errorf("sqlitestore: snapshot %s: %w", roomID, room.ErrNotFound)
	}
	if err != nil {
		return snap, wrapErr("sqlitestore: snapshot "+roomID, err)
	}
	snap.Room = r
	rows, err := s.read(latestQuery).QueryContext(ctx, roomID)
	if err != nil {
		return snap, wrapErr("sqlitestore: snapshot "+roomID, err)
	}
	snap.Latest, err = rowscan.All(rows, func(r rowscan.Row) (room.SensorValue, error) {
		var v room.SensorValue
		var ts int64
		err := r.Scan(&v.Type, &v.SensorID, &v.Value, &v.Unit, &ts)
		v.Timestamp = time.UnixMilli(ts).UTC()
		return v, err
	})
	if err != nil {
		return snap, wrapErr("sqlitestore: snapshot "+roomID, err)
	}
	var start int64
	var est room.Stat
	switch err := s.read(estimateQuery).QueryRowContext(ctx, roomID).Scan(&start, &est.Count, &est.Sum, &est.Min, &est.Max); {
	case err == nil:
		est.Type, est.Start = room.EstimateType, time.UnixMilli(start).UTC()
		snap.Estimate = &est
	case !errors.Is(err, sql.ErrNoRows):
		return snap, wrapErr("sqlitestore: snapshot "+roomID, err)
	}
	if len(snap.Latest) == 0 {
		return snap, nil
	}
	wrows, err := s.read(windowQuery).QueryContext(ctx, roomID, roomID, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return snap, wrapErr("sqlitestore: snapshot "+roomID, err)
	}
	snap.Window, err = rowscan.All(wrows, func(r rowscan.Row) (room.Stat, error) {
		var st room.Stat
		err := r.Scan(&st.Type, &st.Count, &st.Sum, &st.Min, &st.Max)
		return st, err
	})
	if err != nil {
		return snap, wrapErr("sqlitestore: snapshot "+roomID, err)
	}
	return snap, nil
}

// History returns the buckets of q; see room.Store. A bucket merges the rollups
// of the coarsest tier that divides it; the end of the range that does not fill
// a rollup of that tier is read from the finer tiers.
func (s *Store) History(ctx context.Context, q room.HistoryQuery) ([]room.Stat, error) {
	stats, err := room.History(q, periods, func(sp room.Span, m *room.Merger) error {
		return s.scanRollups(ctx, historyQueries[sp.Tier], q.RoomID, q.Type, sp.From, sp.To, m)
	})
	if err != nil {
		return nil, wrapErr("sqlitestore: history", err)
	}
	return stats, nil
}

// historyQueries reads the rollups of one tier in a range, in time order.
var historyQueries = func() []string {
	out := make([]string, len(tiers))
	for i, t := range tiers {
		out[i] = "SELECT start_ms, n, vsum, vmin, vmax FROM " + t.table +
			" WHERE room_id = ? AND type = ? AND start_ms >= ? AND start_ms < ? ORDER BY start_ms"
	}
	return out
}()

func (s *Store) scanRollups(ctx context.Context, query, roomID, typ string, from, to int64, m *room.Merger) error {
	rows, err := s.read(query).QueryContext(ctx, roomID, typ, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var start int64
		var a room.Agg
		if err := rows.Scan(&start, &a.N, &a.Sum, &a.Min, &a.Max); err != nil {
			return err
		}
		if !m.Add(start, a) {
			return nil
		}
	}
	return rows.Err()
}
