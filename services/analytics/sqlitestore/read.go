package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"time"

	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/services/analytics"
)

// CountReadings counts the readings in [from, to).
func (s *Store) CountReadings(ctx context.Context, from, to time.Time) (int64, error) {
	var n int64
	err := s.db.Readers.QueryRowContext(ctx, `SELECT coalesce(sum(n), 0) FROM type_minute WHERE minute >= ? AND minute < ?`,
		analytics.Minute(from), analytics.Minute(to)).Scan(&n)
	return n, wrapErr("analytics sqlitestore: count readings", err)
}

// TypeStats aggregates the readings in [from, to) per type.
func (s *Store) TypeStats(ctx context.Context, from, to time.Time) ([]analytics.TypeStat, error) {
	out, err := rowscan.Query(ctx, s.db.Readers, scanTypeStat, `SELECT type, sum(n), sum(s), min(mn), max(mx) FROM type_minute
WHERE minute >= ? AND minute < ? GROUP BY type ORDER BY type`, analytics.Minute(from), analytics.Minute(to))
	return out, wrapErr("analytics sqlitestore: type stats", err)
}

func scanTypeStat(r rowscan.Row) (analytics.TypeStat, error) {
	var t analytics.TypeStat
	var sum float64
	err := r.Scan(&t.Type, &t.Count, &sum, &t.Min, &t.Max)
	t.Mean = reading.Mean(sum, t.Count, t.Min, t.Max)
	return t, err
}

// Latest returns the latest reading per room and type at or after since.
func (s *Store) Latest(ctx context.Context, since time.Time) ([]analytics.RoomValue, error) {
	out, err := rowscan.Query(ctx, s.db.Readers, func(r rowscan.Row) (analytics.RoomValue, error) {
		var v analytics.RoomValue
		var ts int64
		err := r.Scan(&v.RoomID, &v.Type, &v.Value, &ts)
		v.At = fromMS(ts)
		return v, err
	}, `SELECT room_id, type, value, ts FROM latest WHERE ts >= ? AND room_id <> '' ORDER BY room_id, type`, ms(since))
	return out, wrapErr("analytics sqlitestore: latest", err)
}

// Rooms lists the rooms that have readings.
func (s *Store) Rooms(ctx context.Context) ([]string, error) {
	out, err := rowscan.Query(ctx, s.db.Readers, rowscan.Values[string](), `SELECT DISTINCT room_id FROM latest WHERE room_id <> '' ORDER BY room_id`)
	return out, wrapErr("analytics sqlitestore: rooms", err)
}

// rollup is the table and filter of a SeriesQuery: a room's rollup or the type's.
func rollup(q analytics.SeriesQuery) (table, where string, args []any) {
	if q.RoomID == "" {
		return "type_minute", "type = ? AND minute >= ? AND minute < ?",
			[]any{q.Type, analytics.Minute(q.From), analytics.Minute(q.To)}
	}
	return "room_minute", "room_id = ? AND type = ? AND minute >= ? AND minute < ?",
		[]any{q.RoomID, q.Type, analytics.Minute(q.From), analytics.Minute(q.To)}
}

// Series aggregates q's readings per bucket.
func (s *Store) Series(ctx context.Context, q analytics.SeriesQuery) ([]analytics.Bucket, error) {
	bk := int64(q.Bucket / time.Minute)
	if bk < 1 {
		return nil, fmt.Errorf("analytics sqlitestore: series: %w: bucket %s is less than a minute", analytics.ErrInvalid, q.Bucket)
	}
	table, where, args := rollup(q)
	out, err := rowscan.Query(ctx, s.db.Readers, func(r rowscan.Row) (analytics.Bucket, error) {
		var b analytics.Bucket
		var start int64
		var sum float64
		err := r.Scan(&start, &b.Count, &sum, &b.Min, &b.Max)
		b.Start, b.Mean = time.Unix(start*60, 0).UTC(), reading.Mean(sum, b.Count, b.Min, b.Max)
		return b, err
	}, `SELECT (minute / ?) * ? AS b, sum(n), sum(s), min(mn), max(mx) FROM `+table+
		` WHERE `+where+` GROUP BY b ORDER BY b`, append([]any{bk, bk}, args...)...)
	return out, wrapErr("analytics sqlitestore: series", err)
}

// Extreme returns the lowest or highest reading of q's range and its earliest time.
func (s *Store) Extreme(ctx context.Context, q analytics.SeriesQuery, max bool) (analytics.Extreme, bool, error) {
	table, where, args := rollup(q)
	query := `SELECT mn, mn_ts FROM ` + table + ` WHERE ` + where + ` ORDER BY mn ASC, mn_ts ASC LIMIT 1`
	if max {
		query = `SELECT mx, mx_ts FROM ` + table + ` WHERE ` + where + ` ORDER BY mx DESC, mx_ts ASC LIMIT 1`
	}
	var e analytics.Extreme
	var ts int64
	err := s.db.Readers.QueryRowContext(ctx, query, args...).Scan(&e.Value, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		return analytics.Extreme{}, false, nil
	}
	if err != nil {
		return analytics.Extreme{}, false, wrapErr("analytics sqlitestore: extreme", err)
	}
	e.At = fromMS(ts)
	return e, true, nil
}

// RoomFigures computes one room's report figures over [from, to).
func (s *Store) RoomFigures(ctx context.Context, room string, from, to time.Time) (analytics.RoomFigures, error) {
	f := analytics.RoomFigures{RoomID: room}
	lo, hi := analytics.Minute(from), analytics.Minute(to)
	var err error
	f.Types, err = rowscan.Query(ctx, s.db.Readers, scanTypeStat, `SELECT type, sum(n), sum(s), min(mn), max(mx) FROM room_minute
WHERE room_id = ? AND minute >= ? AND minute < ? GROUP BY type ORDER BY type`, room, lo, hi)
	if err != nil {
		return f, wrapErr("analytics sqlitestore: room figures", err)
	}
	err = s.db.Readers.QueryRowContext(ctx, `SELECT count(*), coalesce(sum((t IS NULL OR t BETWEEN ? AND ?) AND (h IS NULL OR h BETWEEN ? AND ?)), 0)
FROM (SELECT max(CASE WHEN type = 'temperature' THEN s / n END) AS t, max(CASE WHEN type = 'humidity' THEN s / n END) AS h
      FROM room_minute WHERE room_id = ? AND type IN ('temperature', 'humidity') AND minute >= ? AND minute < ?
      GROUP BY minute)`,
		analytics.ComfortTempMin, analytics.ComfortTempMax, analytics.ComfortHumidityMin, analytics.ComfortHumidityMax,
		room, lo, hi).Scan(&f.ComfortMinutes, &f.CompliantMinutes)
	if err != nil {
		return f, wrapErr("analytics sqlitestore: room comfort", err)
	}
	err = s.db.Readers.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(s / n >= ?), 0) FROM room_minute
WHERE room_id = ? AND type = 'co2' AND minute >= ? AND minute < ?`, analytics.PoorAirCO2, room, lo, hi).Scan(&f.CO2Minutes, &f.PoorAirMinutes)
	if err != nil {
		return f, wrapErr("analytics sqlitestore: room air", err)
	}
	for _, t := range analytics.OccupancyTypes {
		if slices.ContainsFunc(f.Types, func(ts analytics.TypeStat) bool { return ts.Type == t }) {
			f.OccupancyType = t
			break
		}
	}
	if f.OccupancyType != "" {
		err = s.db.Readers.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(s / n > 0), 0), coalesce(avg(s / n), 0) FROM room_minute
WHERE room_id = ? AND type = ? AND minute >= ? AND minute < ?`, room, f.OccupancyType, lo, hi).Scan(&f.OccupancyMinutes, &f.OccupiedMinutes, &f.MeanOccupancy)
		if err != nil {
			return f, wrapErr("analytics sqlitestore: room occupancy", err)
		}
	}
	return f, nil
}

// ActiveAlerts counts the alerts raised and not resolved.
func (s *Store) ActiveAlerts(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.Readers.QueryRowContext(ctx, `SELECT count(*) FROM alerts WHERE raised_at IS NOT NULL AND resolved_at IS NULL`).Scan(&n)
	return n, wrapErr("analytics sqlitestore: active alerts", err)
}

// SaveReport stores r, replacing the report with the same id.
func (s *Store) SaveReport(ctx context.Context, r analytics.Report) error {
	meta, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("analytics sqlitestore: save report: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Check("analytics sqlitestore: save report"); err != nil {
		return err
	}
	_, err = s.wconn.ExecContext(ctx, `INSERT INTO reports (id, created_at, status, meta, content) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, status = excluded.status, meta = excluded.meta, content = excluded.content`,
		r.ID, ms(r.CreatedAt), r.Status, string(meta), r.Content)
	return wrapErr("analytics sqlitestore: save report", err)
}

func scanReport(sc rowscan.Row, withContent bool) (analytics.Report, error) {
	var r analytics.Report
	var meta string
	var content []byte
	dest := []any{&meta}
	if withContent {
		dest = append(dest, &content)
	}
	if err := sc.Scan(dest...); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(meta), &r); err != nil {
		return r, fmt.Errorf("decode report: %w", err)
	}
	r.Content = content
	return r, nil
}

// scanMeta scans a report without its content.
func scanMeta(r rowscan.Row) (analytics.Report, error) { return scanReport(r, false) }

// Report returns one report with its content.
func (s *Store) Report(ctx context.Context, id string) (analytics.Report, error) {
	r, err := scanReport(s.db.Readers.QueryRowContext(ctx, `SELECT meta, content FROM reports WHERE id = ?`, id), true)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("report %q: %w", id, analytics.ErrNotFound)
	}
	return r, wrapErr("analytics sqlitestore: report", err)
}

// Reports lists reports newest first, a page at a time.
func (s *Store) Reports(ctx context.Context, limit int, cursor string) ([]analytics.Report, string, error) {
	if limit <= 0 {
		limit = 100
	}
	query, args := `SELECT meta FROM reports ORDER BY created_at DESC, id DESC LIMIT ?`, []any{limit + 1}
	if cursor != "" {
		created, id, err := analytics.ParseReportCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		query = `SELECT meta FROM reports WHERE (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT ?`
		args = []any{ms(created), id, limit + 1}
	}
	out, err := rowscan.Query(ctx, s.db.Readers, scanMeta, query, args...)
	if err != nil {
		return nil, "", wrapErr("analytics sqlitestore: reports", err)
	}
	out, next := paging.Cut(out, limit, func(last analytics.Report) string { return analytics.ReportCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// PendingReports lists the pending reports, oldest first.
func (s *Store) PendingReports(ctx context.Context) ([]analytics.Report, error) {
	out, err := rowscan.Query(ctx, s.db.Readers, scanMeta, `SELECT meta FROM reports WHERE status = ? ORDER BY created_at, id`, analytics.StatusPending)
	return out, wrapErr("analytics sqlitestore: pending reports", err)
}
