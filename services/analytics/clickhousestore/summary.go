package clickhousestore

import (
	"context"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/services/analytics"
)

// SummaryFigures returns the summary's figures for now in one statement: each
// figure is a scalar subquery over an aggregate table (lists folded into arrays
// by groupArray), so the summary costs one round trip.
func (s *Store) SummaryFigures(ctx context.Context, now time.Time) (analytics.Figures, error) {
	hourAgo, dayAgo, end := analytics.SummaryWindow(now)
	tm, lt := s.t("type_minutes"), s.t("latest")
	q := `SELECT
  (SELECT sumMerge(n) FROM ` + tm + ` WHERE ` + minuteRange(hourAgo, end) + `),
  (SELECT sumMerge(n) FROM ` + tm + ` WHERE ` + minuteRange(dayAgo, end) + `),
  (SELECT (groupArray(type), groupArray(c), groupArray(s), groupArray(lo), groupArray(hi)) FROM (
     SELECT type, sumMerge(n) AS c, sumMerge(sum) AS s, minMerge(min_v) AS lo, maxMerge(max_v) AS hi
     FROM ` + tm + ` WHERE ` + minuteRange(hourAgo, end) + ` GROUP BY type ORDER BY type)),
  (SELECT groupArray(room_id) FROM (SELECT DISTINCT room_id FROM ` + lt + ` WHERE room_id != '' ORDER BY room_id)),
  (SELECT (groupArray(room_id), groupArray(type), groupArray(v), groupArray(at)) FROM (
     SELECT room_id, type, argMax(last_v, last_ms) AS v, max(last_ms) AS at FROM ` + lt + `
     GROUP BY room_id, type HAVING at >= ` + msOf(hourAgo) + ` ORDER BY room_id, type)),
  (SELECT count() FROM (SELECT id FROM ` + s.t("alerts") + `
     GROUP BY id HAVING max(state = 'raised') = 1 AND max(state = 'resolved') = 0))`
	var (
		hour, day, alerts uint64
		types, latest     []any
		rooms             []string
	)
	if err := s.conn.QueryRow(ctx, q).Scan(&hour, &day, &types, &rooms, &latest, &alerts); err != nil {
		return analytics.Figures{}, wrapErr("clickhousestore: summary figures", err)
	}
	f := analytics.Figures{LastHour: int64(hour), LastDay: int64(day), Rooms: rooms, ActiveAlerts: int64(alerts)}
	var err error
	if f.Types, err = typeStatsOf(types); err != nil {
		return f, err
	}
	f.Latest, err = latestOf(latest)
	return f, err
}

// column is element i of a tuple of arrays scanned into t, as a []E.
func column[E any](t []any, i int) ([]E, error) {
	if i >= len(t) {
		return nil, fmt.Errorf("clickhousestore: summary figures: tuple has %d elements, want more than %d", len(t), i)
	}
	c, ok := t[i].([]E)
	if !ok {
		return nil, fmt.Errorf("clickhousestore: summary figures: element %d is %T, want %T", i, t[i], c)
	}
	return c, nil
}

// typeStatsOf reads the tuple (types, counts, sums, minima, maxima).
func typeStatsOf(t []any) ([]analytics.TypeStat, error) {
	types, err := column[string](t, 0)
	if err != nil {
		return nil, err
	}
	counts, err := column[uint64](t, 1)
	if err != nil {
		return nil, err
	}
	sums, err := column[float64](t, 2)
	if err != nil {
		return nil, err
	}
	lo, err := column[float64](t, 3)
	if err != nil {
		return nil, err
	}
	hi, err := column[float64](t, 4)
	if err != nil {
		return nil, err
	}
	if err := sameLen(len(types), len(counts), len(sums), len(lo), len(hi)); err != nil {
		return nil, err
	}
	var out []analytics.TypeStat
	for i, typ := range types {
		n := int64(counts[i])
		out = append(out, analytics.TypeStat{Type: typ, Count: n, Mean: sums[i] / float64(n), Min: lo[i], Max: hi[i]})
	}
	return out, nil
}

// latestOf reads the tuple (rooms, types, values, times).
func latestOf(t []any) ([]analytics.RoomValue, error) {
	rooms, err := column[string](t, 0)
	if err != nil {
		return nil, err
	}
	types, err := column[string](t, 1)
	if err != nil {
		return nil, err
	}
	vals, err := column[float64](t, 2)
	if err != nil {
		return nil, err
	}
	ats, err := column[int64](t, 3)
	if err != nil {
		return nil, err
	}
	if err := sameLen(len(rooms), len(types), len(vals), len(ats)); err != nil {
		return nil, err
	}
	var out []analytics.RoomValue
	for i, room := range rooms {
		out = append(out, analytics.RoomValue{RoomID: room, Type: types[i], Value: vals[i], At: fromMS(ats[i])})
	}
	return out, nil
}

func sameLen(ns ...int) error {
	for _, n := range ns[1:] {
		if n != ns[0] {
			return fmt.Errorf("clickhousestore: summary figures: arrays of lengths %v", ns)
		}
	}
	return nil
}
