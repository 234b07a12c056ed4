package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/services/room"
)

// chunkSizes are the row counts of the prepared multi-row statements: n rows go
// out as a sum of these (at most one of each size but the largest), so that a
// few statements prepared at Open serve every batch.
var chunkSizes = []int{128, 64, 32, 16, 8, 4, 2, 1}

// upsert is a multi-row INSERT: head, then "(?,…)" once per row, then tail.
type upsert struct {
	name string
	head string
	cols int
	tail string
}

var (
	upSensors = upsert{"sensors", "INSERT INTO sensors (id, room_id, seen_ms) VALUES ", 3,
		` ON CONFLICT (id) DO UPDATE SET
		room_id = CASE WHEN sensors.assigned = 0 AND excluded.seen_ms >= sensors.seen_ms THEN excluded.room_id ELSE sensors.room_id END,
		seen_ms = max(sensors.seen_ms, excluded.seen_ms)
		RETURNING id, room_id, assigned`}
	upRooms = upsert{"rooms", "INSERT INTO rooms (id, name, created_ms, updated_ms) VALUES ", 4,
		" ON CONFLICT (id) DO NOTHING"}
	upLatest = upsert{"latest", "INSERT INTO latest (room_id, type, sensor_id, value, unit, ts_ms) VALUES ", 6,
		` ON CONFLICT (room_id, type, sensor_id) DO UPDATE SET
		value = excluded.value, unit = excluded.unit, ts_ms = excluded.ts_ms
		WHERE excluded.ts_ms > latest.ts_ms`}
)

// tier is one rollup table: its period and its upsert.
type tier struct {
	table  string
	period time.Duration
	up     upsert
}

// tiers are the rollup tables, finest first.
var tiers = []tier{
	{"rollup_1m", time.Minute, rollupUpsert("rollup_1m")},
	{"rollup_5m", 5 * time.Minute, rollupUpsert("rollup_5m")},
	{"rollup_1h", time.Hour, rollupUpsert("rollup_1h")},
}

// periods are the periods of tiers.
var periods = []time.Duration{tiers[0].period, tiers[1].period, tiers[2].period}

func rollupUpsert(table string) upsert {
	return upsert{table, "INSERT INTO " + table + " (room_id, type, start_ms, n, vsum, vmin, vmax) VALUES ", 7,
		` ON CONFLICT (room_id, type, start_ms) DO UPDATE SET
		n = n + excluded.n, vsum = vsum + excluded.vsum,
		vmin = min(vmin, excluded.vmin), vmax = max(vmax, excluded.vmax)`}
}

func (u upsert) sql(rows int) string {
	var b strings.Builder
	b.WriteString(u.head)
	row := "(" + strings.Repeat("?,", u.cols-1) + "?)"
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	b.WriteString(u.tail)
	return b.String()
}

// upserts are every multi-row statement, prepared at Open.
var upserts = []upsert{upSensors, upRooms, upLatest, tiers[0].up, tiers[1].up, tiers[2].up, setMinute}

// run executes u over args (cols values per row) in chunks; each returned row, if
// any, goes to scan.
func (s *Store) run(ctx context.Context, tx *sql.Tx, u upsert, args []any, scan func(*sql.Rows) error) error {
	n := len(args) / u.cols
	for i := 0; i < n; {
		k := chunkSizes[0]
		for _, c := range chunkSizes {
			if c <= n-i {
				k = c
				break
			}
		}
		st := s.stmts[stmtKey{u.name, k}]
		a := args[i*u.cols : (i+k)*u.cols]
		i += k
		if scan == nil {
			if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, a...); err != nil {
				return fmt.Errorf("upsert %s: %w", u.name, err)
			}
			continue
		}
		rows, err := tx.StmtContext(ctx, st).QueryContext(ctx, a...)
		if err != nil {
			return fmt.Errorf("upsert %s: %w", u.name, err)
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return fmt.Errorf("upsert %s: %w", u.name, err)
			}
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("upsert %s: %w", u.name, err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("upsert %s: %w", u.name, err)
		}
	}
	return nil
}

// Apply applies b in one transaction; see room.Store.
func (s *Store) Apply(ctx context.Context, b room.Batch) (room.Applied, error) {
	if b.ID == "" {
		return room.Applied{}, fmt.Errorf("sqlitestore: apply: %w: empty batch id", apperr.ErrInvalid)
	}
	out, err := s.apply(ctx, b)
	if err != nil {
		return room.Applied{}, wrapErr("sqlitestore: apply "+b.ID, err)
	}
	return out, nil
}

func (s *Store) apply(ctx context.Context, b room.Batch) (room.Applied, error) {
	tx, err := s.db.Writer.BeginTx(ctx, nil)
	if err != nil {
		return room.Applied{}, err
	}
	defer tx.Rollback()

	var prev string
	switch err := tx.QueryRowContext(ctx, "SELECT rooms FROM applied WHERE batch_id = ?", b.ID).Scan(&prev); {
	case err == nil:
		out := room.Applied{Duplicate: true, Rooms: []string{}}
		if prev != "" {
			out.Rooms = strings.Split(prev, ",")
		}
		return out, nil
	case !errors.Is(err, sql.ErrNoRows):
		return room.Applied{}, err
	}

	// Where each sensor is once the batch's placements are stored: the upsert
	// returns it for the sensors placed; the others are looked up.
	placed, sensors := room.Placements(b.Readings)
	args := make([]any, 0, 3*len(placed))
	for _, p := range placed {
		args = append(args, p.SensorID, p.RoomID, p.Seen.UnixMilli())
	}
	where := make(map[string]room.Where, len(sensors))
	if err := s.run(ctx, tx, upSensors, args, func(rows *sql.Rows) error {
		var id string
		var w room.Where
		if err := rows.Scan(&id, &w.Room, &w.Assigned); err != nil {
			return err
		}
		where[id] = w
		return nil
	}); err != nil {
		return room.Applied{}, err
	}
	for _, id := range sensors {
		if _, ok := where[id]; ok {
			continue
		}
		var w room.Where
		err := tx.QueryRowContext(ctx, "SELECT room_id, assigned FROM sensors WHERE id = ?", id).Scan(&w.Room, &w.Assigned)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return room.Applied{}, err
		}
		where[id] = w
	}
	plan := room.NewPlan(b.Readings, where, periods)
	out := plan.Applied

	at := b.At.UnixMilli()
	if b.At.IsZero() {
		at = time.Now().UnixMilli()
	}
	args = args[:0]
	for _, id := range out.Rooms {
		args = append(args, id, id, at, at)
	}
	if err := s.run(ctx, tx, upRooms, args, nil); err != nil {
		return room.Applied{}, err
	}
	args = args[:0]
	for _, l := range plan.Latest {
		args = append(args, l.RoomID, l.Type, l.SensorID, l.Value, l.Unit, l.UnixMilli())
	}
	if err := s.run(ctx, tx, upLatest, args, nil); err != nil {
		return room.Applied{}, err
	}
	for i, t := range tiers {
		args = args[:0]
		for _, r := range plan.Rollups[i] {
			args = append(args, r.RoomID, r.Type, r.Start, r.N, r.Sum, r.Min, r.Max)
		}
		if err := s.run(ctx, tx, t.up, args, nil); err != nil {
			return room.Applied{}, err
		}
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO applied (batch_id, at_ms, rooms) VALUES (?, ?, ?)",
		b.ID, at, strings.Join(out.Rooms, ",")); err != nil {
		return room.Applied{}, err
	}
	if err := tx.Commit(); err != nil {
		return room.Applied{}, err
	}
	return out, nil
}

// Forget deletes the applied batch ids recorded before t.
func (s *Store) Forget(ctx context.Context, before time.Time) (int, error) {
	res, err := s.db.Writer.ExecContext(ctx, "DELETE FROM applied WHERE at_ms < ?", before.UnixMilli())
	if err != nil {
		return 0, wrapErr("sqlitestore: forget", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// SetSeries replaces minutes of a derived series of several rooms, in one
// transaction, and rebuilds their coarser rollups; see room.Store.
func (s *Store) SetSeries(ctx context.Context, typ string, rooms []room.RoomPoints) error {
	n := 0
	for _, rp := range rooms {
		n += len(rp.Points)
	}
	if n == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		args := make([]any, 0, 7*n)
		coarse := make([]map[[2]any]bool, len(tiers))
		for i := range coarse {
			coarse[i] = map[[2]any]bool{}
		}
		for _, rp := range rooms {
			if len(rp.Points) == 0 {
				continue
			}
			var one int
			if err := tx.QueryRowContext(ctx, "SELECT 1 FROM rooms WHERE id = ?", rp.RoomID).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				continue // deleted meanwhile
			} else if err != nil {
				return err
			}
			for _, p := range rp.Points {
				ms := room.BucketStart(p.Start.UnixMilli(), tiers[0].period)
				args = append(args, rp.RoomID, typ, ms, 1, p.Value, p.Value, p.Value)
				for i := 1; i < len(tiers); i++ {
					coarse[i][[2]any{rp.RoomID, room.BucketStart(ms, tiers[i].period)}] = true
				}
			}
		}
		if len(args) == 0 {
			return nil
		}
		if err := s.run(ctx, tx, setMinute, args, nil); err != nil {
			return err
		}
		for i := 1; i < len(tiers); i++ {
			q := "INSERT INTO " + tiers[i].table + ` (room_id, type, start_ms, n, vsum, vmin, vmax)
				SELECT room_id, type, ?, sum(n), sum(vsum), min(vmin), max(vmax) FROM rollup_1m
				WHERE room_id = ? AND type = ? AND start_ms >= ? AND start_ms < ? GROUP BY room_id, type
				ON CONFLICT (room_id, type, start_ms) DO UPDATE SET
				n = excluded.n, vsum = excluded.vsum, vmin = excluded.vmin, vmax = excluded.vmax`
			for k := range coarse[i] {
				start := k[1].(int64)
				if _, err := tx.ExecContext(ctx, q, start, k[0], typ, start, start+tiers[i].period.Milliseconds()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return wrapErr("sqlitestore: set series "+typ, err)
}

// setMinute replaces minute rollups (of a derived series).
var setMinute = upsert{"set_1m", "INSERT INTO rollup_1m (room_id, type, start_ms, n, vsum, vmin, vmax) VALUES ", 7,
	` ON CONFLICT (room_id, type, start_ms) DO UPDATE SET
		n = excluded.n, vsum = excluded.vsum, vmin = excluded.vmin, vmax = excluded.vmax`}
