package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/sensor"
)

// ceilMilli is t in Unix milliseconds, rounded up: a bound between two
// milliseconds acts as the next one.
func ceilMilli(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

// Readings lists one sensor's readings ordered by (timestamp, type), ascending or
// descending, one page at a time. It is one range scan of the primary key, after
// a merge of the journal when the sensor has readings there.
func (s *Store) Readings(ctx context.Context, q sensor.ReadingQuery) ([]reading.Reading, string, error) {
	if err := s.db.Check("sqlitestore: readings"); err != nil {
		return nil, "", err
	}
	if s.j.has(q.SensorID) {
		if err := s.flush(ctx); err != nil {
			return nil, "", wrapErr("sqlitestore: readings", err)
		}
	}
	limit := paging.Size(q.Limit)
	var sb strings.Builder
	sb.WriteString("SELECT ts_ms, type, room_id, site, value, unit FROM readings WHERE sensor_id = ?")
	args := []any{q.SensorID}
	if !q.From.IsZero() {
		sb.WriteString(" AND ts_ms >= ?")
		args = append(args, ceilMilli(q.From))
	}
	if !q.To.IsZero() {
		sb.WriteString(" AND ts_ms < ?")
		args = append(args, ceilMilli(q.To))
	}
	if q.Type != "" {
		sb.WriteString(" AND type = ?")
		args = append(args, q.Type)
	}
	c, ok, err := q.After()
	if err != nil {
		return nil, "", fmt.Errorf("sqlitestore: readings: %w", err)
	}
	if ok {
		// The first condition bounds the index range; the second skips the few
		// readings of the cursor's own millisecond already returned.
		if q.Desc {
			sb.WriteString(" AND ts_ms <= ? AND (ts_ms < ? OR type < ?)")
		} else {
			sb.WriteString(" AND ts_ms >= ? AND (ts_ms > ? OR type > ?)")
		}
		args = append(args, c.TS, c.TS, c.Type)
	}
	if q.Desc {
		sb.WriteString(" ORDER BY ts_ms DESC, type DESC")
	} else {
		sb.WriteString(" ORDER BY ts_ms, type")
	}
	sb.WriteString(" LIMIT ?")
	args = append(args, limit+1)

	rows, err := s.db.Readers.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return nil, "", wrapErr("sqlitestore: readings", err)
	}
	rs, err := rowscan.Append(make([]reading.Reading, 0, min(limit+1, 64)), rows, func(row rowscan.Row) (reading.Reading, error) {
		var ms int64
		r := reading.Reading{SensorID: q.SensorID}
		err := row.Scan(&ms, &r.Type, &r.RoomID, &r.Site, &r.Value, &r.Unit)
		r.Timestamp = time.UnixMilli(ms).UTC()
		return r, err
	})
	if err != nil {
		return nil, "", wrapErr("sqlitestore: readings", err)
	}
	rs, next := paging.Cut(rs, limit, func(last reading.Reading) string {
		return paging.EncodeCursor(sensor.ReadingCursor{TS: last.UnixMilli(), Type: last.Type, Desc: q.Desc})
	})
	return rs, next, nil
}

const sensorColumns = "id, room_id, site, first_seen_ms, last_seen_ms"

// Sensor returns the registry entry of id.
func (s *Store) Sensor(ctx context.Context, id string) (sensor.Sensor, error) {
	if s.db.Closed() {
		return sensor.Sensor{}, fmt.Errorf("sqlitestore: sensor %s: %w", id, sqlitex.ErrClosed)
	}
	if s.j.has(id) { // its registry rows are written with the merge
		if err := s.flush(ctx); err != nil {
			return sensor.Sensor{}, wrapErr("sqlitestore: sensor "+id, err)
		}
	}
	rows, err := s.db.Readers.QueryContext(ctx, "SELECT "+sensorColumns+" FROM sensors WHERE id = ?", id)
	if err != nil {
		return sensor.Sensor{}, wrapErr("sqlitestore: sensor "+id, err)
	}
	ss, err := s.scanSensors(ctx, rows)
	if err != nil {
		return sensor.Sensor{}, wrapErr("sqlitestore: sensor "+id, err)
	}
	if len(ss) == 0 {
		return sensor.Sensor{}, fmt.Errorf("sqlitestore: %w: sensor %q", sensor.ErrNotFound, id)
	}
	return ss[0], nil
}

// Sensors lists registry entries ordered by id, one page at a time.
func (s *Store) Sensors(ctx context.Context, q sensor.SensorQuery) ([]sensor.Sensor, string, error) {
	if err := s.db.Check("sqlitestore: sensors"); err != nil {
		return nil, "", err
	}
	if !s.j.empty() { // registry rows are written with the merge
		if err := s.flush(ctx); err != nil {
			return nil, "", wrapErr("sqlitestore: sensors", err)
		}
	}
	limit := paging.Size(q.Limit)
	var sb strings.Builder
	sb.WriteString("SELECT " + sensorColumns + " FROM sensors WHERE 1")
	var args []any
	c, ok, err := q.After()
	if err != nil {
		return nil, "", fmt.Errorf("sqlitestore: sensors: %w", err)
	}
	if ok {
		sb.WriteString(" AND id > ?")
		args = append(args, c.ID)
	}
	if q.RoomID != "" {
		sb.WriteString(" AND room_id = ?")
		args = append(args, q.RoomID)
	}
	if q.Type != "" {
		sb.WriteString(" AND EXISTS (SELECT 1 FROM sensor_types t WHERE t.sensor_id = sensors.id AND t.type = ?)")
		args = append(args, q.Type)
	}
	switch q.Status {
	case "":
	case sensor.StatusOnline:
		sb.WriteString(" AND last_seen_ms >= ?")
		args = append(args, q.OnlineSince.UnixMilli())
	case sensor.StatusOffline:
		sb.WriteString(" AND last_seen_ms < ?")
		args = append(args, q.OnlineSince.UnixMilli())
	default:
		return nil, "", fmt.Errorf("sqlitestore: sensors: %w: unknown status %q", apperr.ErrInvalid, q.Status)
	}
	sb.WriteString(" ORDER BY id LIMIT ?")
	args = append(args, limit+1)

	rows, err := s.db.Readers.QueryContext(ctx, sb.String(), args...)
	if err != nil {
		return nil, "", wrapErr("sqlitestore: sensors", err)
	}
	ss, err := s.scanSensors(ctx, rows)
	if err != nil {
		return nil, "", wrapErr("sqlitestore: sensors", err)
	}
	ss, next := paging.Cut(ss, limit, func(last sensor.Sensor) string { return paging.EncodeCursor(sensor.SensorCursor{ID: last.ID}) })
	return ss, next, nil
}

// scanSensors reads registry rows (closing them), then their types and last values.
func (s *Store) scanSensors(ctx context.Context, rows *sql.Rows) ([]sensor.Sensor, error) {
	ss := []sensor.Sensor{}
	index := make(map[string]int)
	err := func() error {
		defer rows.Close()
		for rows.Next() {
			var first, last int64
			x := sensor.Sensor{Types: []string{}, LastValues: map[string]sensor.LastValue{}}
			if err := rows.Scan(&x.ID, &x.RoomID, &x.Site, &first, &last); err != nil {
				return err
			}
			x.FirstSeen = time.UnixMilli(first).UTC()
			x.LastSeen = time.UnixMilli(last).UTC()
			index[x.ID] = len(ss)
			ss = append(ss, x)
		}
		return rows.Err()
	}()
	if err != nil || len(ss) == 0 {
		return ss, err
	}

	args := make([]any, len(ss))
	for i, x := range ss {
		args[i] = x.ID
	}
	q := "SELECT sensor_id, type, value, unit, ts_ms FROM sensor_types WHERE sensor_id IN (?" +
		strings.Repeat(", ?", len(ss)-1) + ") ORDER BY sensor_id, type"
	trows, err := s.db.Readers.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer trows.Close()
	for trows.Next() {
		var id, typ string
		var lv sensor.LastValue
		var ms int64
		if err := trows.Scan(&id, &typ, &lv.Value, &lv.Unit, &ms); err != nil {
			return nil, err
		}
		lv.Timestamp = time.UnixMilli(ms).UTC()
		i, ok := index[id]
		if !ok {
			return nil, errors.New("last value of an unlisted sensor")
		}
		ss[i].Types = append(ss[i].Types, typ)
		ss[i].LastValues[typ] = lv
	}
	if err := trows.Err(); err != nil {
		return nil, err
	}
	for i := range ss {
		sort.Strings(ss[i].Types)
	}
	return ss, nil
}
