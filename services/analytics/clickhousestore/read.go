package clickhousestore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/services/analytics"
)

func n64(v int64) string { return strconv.FormatInt(v, 10) }

func f64(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func msOf(t time.Time) string { return n64(t.UnixMilli()) }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// minuteRange is the filter of the minutes in [from, to) (whole minutes).
func minuteRange(from, to time.Time) string {
	return `minute_ms >= ` + msOf(from) + ` AND minute_ms < ` + msOf(to)
}

// CountReadings counts the readings in [from, to).
func (s *Store) CountReadings(ctx context.Context, from, to time.Time) (int64, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, `SELECT sumMerge(n) FROM `+s.t("type_minutes")+` WHERE `+minuteRange(from, to)).Scan(&n)
	return int64(n), wrapErr("clickhousestore: count readings", err)
}

// TypeStats aggregates the readings in [from, to) per type.
func (s *Store) TypeStats(ctx context.Context, from, to time.Time) ([]analytics.TypeStat, error) {
	out, err := s.typeStats(ctx, `SELECT type, sumMerge(n), sumMerge(sum), minMerge(min_v), maxMerge(max_v) FROM `+s.t("type_minutes")+
		` WHERE `+minuteRange(from, to)+` GROUP BY type ORDER BY type`)
	return out, wrapErr("clickhousestore: type stats", err)
}

func (s *Store) typeStats(ctx context.Context, q string) ([]analytics.TypeStat, error) {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return rowscan.All(rows, func(r rowscan.Row) (analytics.TypeStat, error) {
		var t analytics.TypeStat
		var n uint64
		var sum float64
		err := r.Scan(&t.Type, &n, &sum, &t.Min, &t.Max)
		t.Count = int64(n)
		t.Mean = reading.Mean(sum, t.Count, t.Min, t.Max)
		return t, err
	})
}

// Latest returns the latest reading per room and type at or after since.
func (s *Store) Latest(ctx context.Context, since time.Time) ([]analytics.RoomValue, error) {
	// The latest reading of a room and type at or after since is its latest one,
	// if that is not older.
	rows, err := s.conn.Query(ctx, `SELECT room_id, type, argMax(last_v, last_ms), max(last_ms) AS at FROM `+s.t("latest")+
		` GROUP BY room_id, type HAVING at >= `+msOf(since)+` ORDER BY room_id, type`)
	if err != nil {
		return nil, wrapErr("clickhousestore: latest", err)
	}
	out, err := rowscan.All(rows, func(r rowscan.Row) (analytics.RoomValue, error) {
		var v analytics.RoomValue
		var ts int64
		err := r.Scan(&v.RoomID, &v.Type, &v.Value, &ts)
		v.At = fromMS(ts)
		return v, err
	})
	return out, wrapErr("clickhousestore: latest", err)
}

// Rooms lists the rooms that have readings.
func (s *Store) Rooms(ctx context.Context) ([]string, error) {
	rows, err := s.conn.Query(ctx, `SELECT DISTINCT room_id FROM `+s.t("latest")+` WHERE room_id != '' ORDER BY room_id`)
	if err != nil {
		return nil, wrapErr("clickhousestore: rooms", err)
	}
	out, err := rowscan.All(rows, rowscan.Values[string]())
	return out, wrapErr("clickhousestore: rooms", err)
}

// seriesWhere is the filter of a SeriesQuery's minutes.
func seriesWhere(q analytics.SeriesQuery) string {
	w := `type = ` + quote(q.Type) + ` AND ` + minuteRange(q.From, q.To)
	if q.RoomID != "" {
		w = `room_id = ` + quote(q.RoomID) + ` AND ` + w
	}
	return w
}

// Series aggregates q's readings per bucket.
func (s *Store) Series(ctx context.Context, q analytics.SeriesQuery) ([]analytics.Bucket, error) {
	bk := q.Bucket.Milliseconds()
	if bk < 60000 {
		return nil, fmt.Errorf("clickhousestore: series: %w: bucket %s is less than a minute", analytics.ErrInvalid, q.Bucket)
	}
	// A room's series sums its minutes; the building's merges the type's.
	sel := `sum(n), sum(sum), min(min_v), max(max_v) FROM ` + s.t("minutes")
	if q.RoomID == "" {
		sel = `sumMerge(n), sumMerge(sum), minMerge(min_v), maxMerge(max_v) FROM ` + s.t("type_minutes")
	}
	rows, err := s.conn.Query(ctx, `SELECT intDiv(minute_ms, `+n64(bk)+`) * `+n64(bk)+` AS b, `+sel+` WHERE `+seriesWhere(q)+` GROUP BY b ORDER BY b`)
	if err != nil {
		return nil, wrapErr("clickhousestore: series", err)
	}
	out, err := rowscan.All(rows, func(r rowscan.Row) (analytics.Bucket, error) {
		var b analytics.Bucket
		var start int64
		var n uint64
		var sum float64
		err := r.Scan(&start, &n, &sum, &b.Min, &b.Max)
		b.Start, b.Count = fromMS(start), int64(n)
		b.Mean = reading.Mean(sum, b.Count, b.Min, b.Max)
		return b, err
	})
	return out, wrapErr("clickhousestore: series", err)
}

// Extreme returns the lowest or highest reading of q's range and its earliest time.
func (s *Store) Extreme(ctx context.Context, q analytics.SeriesQuery, max bool) (analytics.Extreme, bool, error) {
	cols, order := `min_v, min_ms`, `min_v ASC, min_ms ASC`
	if max {
		cols, order = `max_v, max_ms`, `max_v DESC, max_ms ASC`
	}
	rows, err := s.conn.Query(ctx, `SELECT `+cols+` FROM `+s.t("minutes")+` WHERE `+seriesWhere(q)+` ORDER BY `+order+` LIMIT 1`)
	if err != nil {
		return analytics.Extreme{}, false, wrapErr("clickhousestore: extreme", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return analytics.Extreme{}, false, wrapErr("clickhousestore: extreme", rows.Err())
	}
	var e analytics.Extreme
	var ts int64
	if err := rows.Scan(&e.Value, &ts); err != nil {
		return analytics.Extreme{}, false, wrapErr("clickhousestore: extreme", err)
	}
	e.At = fromMS(ts)
	return e, true, nil
}

// RoomFigures computes one room's report figures over [from, to).
func (s *Store) RoomFigures(ctx context.Context, room string, from, to time.Time) (analytics.RoomFigures, error) {
	f := analytics.RoomFigures{RoomID: room}
	where := `room_id = ` + quote(room) + ` AND ` + minuteRange(from, to)
	mins := s.t("minutes")
	var err error
	f.Types, err = s.typeStats(ctx, `SELECT type, sum(n), sum(sum), min(min_v), max(max_v) FROM `+mins+` WHERE `+where+` GROUP BY type ORDER BY type`)
	if err != nil {
		return f, wrapErr("clickhousestore: room figures", err)
	}
	// Per minute: the mean of each type (NaN when absent: its count is 0).
	var comfort, compliant uint64
	err = s.conn.QueryRow(ctx, `SELECT count(), sum((tn = 0 OR (t >= `+f64(analytics.ComfortTempMin)+` AND t <= `+f64(analytics.ComfortTempMax)+
		`)) AND (hn = 0 OR (h >= `+f64(analytics.ComfortHumidityMin)+` AND h <= `+f64(analytics.ComfortHumidityMax)+`))) FROM (
  SELECT minute_ms,
         sumIf(n, type = 'temperature') AS tn, sumIf(sum, type = 'temperature') / tn AS t,
         sumIf(n, type = 'humidity') AS hn, sumIf(sum, type = 'humidity') / hn AS h
  FROM `+mins+` WHERE `+where+` AND type IN ('temperature', 'humidity') GROUP BY minute_ms)`).Scan(&comfort, &compliant)
	if err != nil {
		return f, wrapErr("clickhousestore: room comfort", err)
	}
	f.ComfortMinutes, f.CompliantMinutes = int64(comfort), int64(compliant)
	var co2, poor uint64
	err = s.conn.QueryRow(ctx, `SELECT count(), sum(v >= `+f64(analytics.PoorAirCO2)+`) FROM (
  SELECT minute_ms, sum(sum) / sum(n) AS v FROM `+mins+` WHERE `+where+` AND type = 'co2' GROUP BY minute_ms)`).Scan(&co2, &poor)
	if err != nil {
		return f, wrapErr("clickhousestore: room air", err)
	}
	f.CO2Minutes, f.PoorAirMinutes = int64(co2), int64(poor)
	for _, t := range analytics.OccupancyTypes {
		if slices.ContainsFunc(f.Types, func(ts analytics.TypeStat) bool { return ts.Type == t }) {
			f.OccupancyType = t
			break
		}
	}
	if f.OccupancyType != "" {
		var minutes, occupied uint64
		var mean float64
		err = s.conn.QueryRow(ctx, `SELECT count(), sum(v > 0), avg(v) FROM (
  SELECT minute_ms, sum(sum) / sum(n) AS v FROM `+mins+` WHERE `+where+` AND type = `+quote(f.OccupancyType)+` GROUP BY minute_ms)`).Scan(&minutes, &occupied, &mean)
		if err != nil {
			return f, wrapErr("clickhousestore: room occupancy", err)
		}
		f.OccupancyMinutes, f.OccupiedMinutes, f.MeanOccupancy = int64(minutes), int64(occupied), mean
	}
	return f, nil
}

// ActiveAlerts counts the alerts raised and not resolved.
func (s *Store) ActiveAlerts(ctx context.Context) (int64, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, `SELECT count() FROM (SELECT id FROM `+s.t("alerts")+
		` GROUP BY id HAVING max(state = 'raised') = 1 AND max(state = 'resolved') = 0)`).Scan(&n)
	return int64(n), wrapErr("clickhousestore: active alerts", err)
}

// reportMeta is a Report as stored in the meta column.
func marshalMeta(r analytics.Report) (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}

// latestReports is every report at its latest version.
func (s *Store) latestReports() string {
	return `(SELECT id, argMax(created_ms, version) AS created, argMax(status, version) AS st, argMax(meta, version) AS m FROM ` +
		s.t("reports") + ` GROUP BY id)`
}

// Report returns one report with its content.
func (s *Store) Report(ctx context.Context, id string) (analytics.Report, error) {
	rows, err := s.conn.Query(ctx, `SELECT argMax(meta, version), argMax(content, version) FROM `+s.t("reports")+
		` WHERE id = `+quote(id)+` GROUP BY id`)
	if err != nil {
		return analytics.Report{}, wrapErr("clickhousestore: report", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return analytics.Report{}, wrapErr("clickhousestore: report", err)
		}
		return analytics.Report{}, fmt.Errorf("report %q: %w", id, analytics.ErrNotFound)
	}
	var meta, content string
	if err := rows.Scan(&meta, &content); err != nil {
		return analytics.Report{}, wrapErr("clickhousestore: report", err)
	}
	var r analytics.Report
	if err := json.Unmarshal([]byte(meta), &r); err != nil {
		return r, fmt.Errorf("clickhousestore: report: decode: %w", err)
	}
	if content != "" {
		r.Content = []byte(content)
	}
	return r, nil
}

func (s *Store) scanMetas(ctx context.Context, q string) ([]analytics.Report, error) {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	return rowscan.All(rows, func(row rowscan.Row) (analytics.Report, error) {
		var meta string
		var r analytics.Report
		if err := row.Scan(&meta); err != nil {
			return r, err
		}
		if err := json.Unmarshal([]byte(meta), &r); err != nil {
			return r, fmt.Errorf("decode report: %w", err)
		}
		return r, nil
	})
}

// Reports lists reports newest first, a page at a time.
func (s *Store) Reports(ctx context.Context, limit int, cursor string) ([]analytics.Report, string, error) {
	if limit <= 0 {
		limit = 100
	}
	where := ""
	if cursor != "" {
		created, id, err := analytics.ParseReportCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		c := msOf(created)
		where = ` WHERE created < ` + c + ` OR (created = ` + c + ` AND id < ` + quote(id) + `)`
	}
	out, err := s.scanMetas(ctx, `SELECT m FROM `+s.latestReports()+where+` ORDER BY created DESC, id DESC LIMIT `+strconv.Itoa(limit+1))
	if err != nil {
		return nil, "", wrapErr("clickhousestore: reports", err)
	}
	out, next := paging.Cut(out, limit, func(last analytics.Report) string { return analytics.ReportCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// PendingReports lists the pending reports, oldest first.
func (s *Store) PendingReports(ctx context.Context) ([]analytics.Report, error) {
	out, err := s.scanMetas(ctx, `SELECT m FROM `+s.latestReports()+` WHERE st = `+quote(analytics.StatusPending)+` ORDER BY created, id`)
	return out, wrapErr("clickhousestore: pending reports", err)
}
