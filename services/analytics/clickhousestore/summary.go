package clickhousestore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

// The kinds of rows of the summary statement.
const (
	figType   = 1 // a type's statistics over the last hour: a, cnt, x (sum), y (min), z (max)
	figDay    = 2 // the readings of the day before the last hour: cnt
	figLatest = 3 // a room's latest reading of a type: a (room), b (type), x (value), ms (time)
	figAlert  = 4 // an alert active or raised in the window's day: a (its id), cnt (1 when active), ms (raised)
)

// SummaryFigures returns the summary's figures for now in one statement. Each
// table read costs the server about a millisecond however few rows it reads, so
// the statement reads as little as it can and the client derives the rest: the
// hour's count is the sum of the per-type counts, the day's adds the count of
// the day before the hour, the room list is the rooms of the latest values
// (filtered by time here), and the active alerts are counted here rather than
// by a nested query. The reads are joined by UNION ALL as rows of one shape
// tagged by kind, so the client scans plain columns, not tuples of arrays.
func (s *Store) SummaryFigures(ctx context.Context, now time.Time) (analytics.Figures, error) {
	hourAgo, dayAgo, end := analytics.SummaryWindow(now)
	tm := s.t("type_minutes")
	q := `SELECT toUInt8(` + n64(figType) + `) AS kind, type AS a, '' AS b, sumMerge(n) AS cnt,
       sumMerge(sum) AS x, minMerge(min_v) AS y, maxMerge(max_v) AS z, toInt64(0) AS ms
FROM ` + tm + ` WHERE ` + minuteRange(hourAgo, end) + ` GROUP BY type
UNION ALL
SELECT toUInt8(` + n64(figDay) + `), '', '', sumMerge(n), 0., 0., 0., toInt64(0)
FROM ` + tm + ` WHERE ` + minuteRange(dayAgo, hourAgo) + `
UNION ALL
SELECT toUInt8(` + n64(figLatest) + `), room_id, type, toUInt64(0), argMax(last_v, last_ms), 0., 0., max(last_ms)
FROM ` + s.t("latest") + ` WHERE room_id != '' GROUP BY room_id, type
UNION ALL
SELECT toUInt8(` + n64(figAlert) + `), id, '', toUInt64(max(state = 'resolved') = 0), 0., 0., 0., minIf(at_ms, state = 'raised') AS raised
FROM ` + s.t("alerts") + ` GROUP BY id HAVING max(state = 'raised') = 1 AND (max(state = 'resolved') = 0 OR raised >= ` + n64(dayAgo.UnixMilli()) + `)`
	f, err := s.scanFigures(ctx, q, hourAgo.UnixMilli(), dayAgo.UnixMilli(), end.UnixMilli())
	return f, wrapErr("clickhousestore: summary figures", err)
}

// scanFigures runs the summary statement q and assembles its rows; since is
// the start of the last hour, dayAgo and end the window's day, in Unix
// milliseconds.
func (s *Store) scanFigures(ctx context.Context, q string, since, dayAgo, end int64) (analytics.Figures, error) {
	var f analytics.Figures
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return f, err
	}
	defer rows.Close()
	var (
		day   uint64
		rooms []string
	)
	for rows.Next() {
		var (
			kind    uint8
			a, b    string
			cnt     uint64
			x, y, z float64
			ms      int64
		)
		if err := rows.Scan(&kind, &a, &b, &cnt, &x, &y, &z, &ms); err != nil {
			return f, err
		}
		switch kind {
		case figType:
			f.LastHour += int64(cnt)
			f.Types = append(f.Types, analytics.TypeStat{Type: a, Count: int64(cnt), Mean: reading.Mean(x, int64(cnt), y, z), Min: y, Max: z})
		case figDay:
			day += cnt
		case figLatest:
			rooms = append(rooms, a)
			if ms >= since {
				f.Latest = append(f.Latest, analytics.RoomValue{RoomID: a, Type: b, Value: x, At: fromMS(ms)})
			}
		case figAlert:
			f.ActiveAlerts += int64(cnt)
			if ms >= dayAgo && ms < end {
				f.AlertsLastDay++
			}
		default:
			return f, fmt.Errorf("row of unknown kind %d", kind)
		}
	}
	if err := rows.Err(); err != nil {
		return f, err
	}
	f.LastDay = f.LastHour + int64(day)
	slices.SortFunc(f.Types, func(p, q analytics.TypeStat) int { return strings.Compare(p.Type, q.Type) })
	slices.SortFunc(f.Latest, func(p, q analytics.RoomValue) int {
		return cmp.Or(strings.Compare(p.RoomID, q.RoomID), strings.Compare(p.Type, q.Type))
	})
	slices.Sort(rooms)
	f.Rooms = slices.Compact(rooms)
	return f, nil
}
