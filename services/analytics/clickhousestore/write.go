package clickhousestore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/groupcommit"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

type identity struct {
	sensor, typ string
	ts          int64
}

// AddReadings hands the readings to the writer, which coalesces the waiting
// calls into one check and one INSERT, and waits for that INSERT.
func (s *Store) AddReadings(ctx context.Context, rs []reading.Reading) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	n, err := s.writer.Do(ctx, rs)
	if errors.Is(err, groupcommit.ErrClosed) {
		return 0, fmt.Errorf("clickhousestore: add readings: %w: store closed", analytics.ErrUnavailable)
	}
	return n, err
}

// write stores a group of AddReadings calls.
func (s *Store) write(group [][]reading.Reading) ([]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	counts, err := s.insert(ctx, group)
	if err != nil {
		return nil, wrapErr("clickhousestore: add readings", err)
	}
	return counts, nil
}

// insert stores the new readings of the group and returns how many each request
// added. The views derive the aggregates from the same INSERT. When it fails,
// its window is reconciled before the next one (see suspect).
func (s *Store) insert(ctx context.Context, group [][]reading.Reading) ([]int, error) {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if err := s.repairSuspects(ctx); err != nil {
		return nil, err
	}
	for i, rs := range group {
		group[i] = s.recent(rs)
	}
	existing, err := s.existing(ctx, group)
	if err != nil {
		return nil, err
	}
	counts := make([]int, len(group))
	w := window{rooms: map[string]struct{}{}, types: map[string]struct{}{}, lo: 1<<63 - 1, hi: -1 << 63}
	s.seq++
	id := fmt.Sprintf("atrium-readings-%d-%d", time.Now().UnixNano(), s.seq)
	batch, err := s.conn.PrepareBatch(withQueryID(ctx, id), `INSERT INTO `+s.t("readings")+` (room_id, type, ts_ms, sensor_id, value)`)
	if err != nil {
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	defer func() { _ = batch.Abort() }()
	for i, rs := range group {
		for _, rd := range rs {
			k := identity{rd.SensorID, rd.Type, rd.UnixMilli()}
			if _, ok := existing[k]; ok {
				continue
			}
			existing[k] = struct{}{}
			if err := batch.Append(rd.RoomID, rd.Type, k.ts, rd.SensorID, rd.Value); err != nil {
				return nil, fmt.Errorf("append reading: %w", err)
			}
			counts[i]++
			w.rooms[rd.RoomID] = struct{}{}
			w.types[rd.Type] = struct{}{}
			w.lo, w.hi = min(w.lo, k.ts), max(w.hi, k.ts)
		}
	}
	if batch.Rows() == 0 {
		return counts, nil
	}
	if err := batch.Send(); err != nil {
		w.lo, w.hi = floorMinute(w.lo), floorMinute(w.hi)+60000
		s.suspects = append(s.suspects, suspect{queryID: id, w: w})
		return nil, fmt.Errorf("insert readings: %w", err)
	}
	return counts, nil
}

// floorMinute is the first millisecond of the minute of ms.
func floorMinute(ms int64) int64 { return ms - ((ms%60000)+60000)%60000 }

// existing returns the identities of the group's readings that are already stored.
// It narrows the search by room, type, sensor and time range (the table's order
// key leads with room and type), then matches identities here.
func (s *Store) existing(ctx context.Context, group [][]reading.Reading) (map[identity]struct{}, error) {
	rooms, types, sensors := map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}
	lo, hi := int64(1<<62), int64(-1<<62)
	total := 0
	for _, rs := range group {
		total += len(rs)
		for _, rd := range rs {
			rooms[rd.RoomID] = struct{}{}
			types[rd.Type] = struct{}{}
			sensors[rd.SensorID] = struct{}{}
			ts := rd.UnixMilli()
			lo, hi = min(lo, ts), max(hi, ts)
		}
	}
	out := make(map[identity]struct{}, total)
	if total == 0 {
		return out, nil // all older than the cutoffs
	}
	q := `SELECT sensor_id, type, ts_ms FROM ` + s.t("readings") + ` WHERE room_id IN (` + list(rooms) + `) AND type IN (` + list(types) +
		`) AND ts_ms >= ` + strconv.FormatInt(lo, 10) + ` AND ts_ms <= ` + strconv.FormatInt(hi, 10) + ` AND sensor_id IN (` + list(sensors) + `)`
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("look up stored identities: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id identity
		if err := rows.Scan(&id.sensor, &id.typ, &id.ts); err != nil {
			return nil, fmt.Errorf("look up stored identities: %w", err)
		}
		out[id] = struct{}{}
	}
	return out, rows.Err()
}

// list writes a set of strings as ClickHouse string literals.
func list(set map[string]struct{}) string {
	var b strings.Builder
	for v := range set {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(quote(v))
	}
	return b.String()
}

// quote writes s as a ClickHouse string literal.
func quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// RecordAlert records that an alert was raised or resolved.
func (s *Store) RecordAlert(ctx context.Context, id, state string, at time.Time) error {
	if state != analytics.AlertRaised && state != analytics.AlertResolved {
		return fmt.Errorf("clickhousestore: record alert: unknown state %q", state)
	}
	err := s.insertRow(ctx, `INSERT INTO `+s.t("alerts")+` (id, state, at_ms)`, id, state, at.UnixMilli())
	return wrapErr("clickhousestore: record alert", err)
}

// SaveReport stores r as a new version of its row.
func (s *Store) SaveReport(ctx context.Context, r analytics.Report) error {
	meta, err := marshalMeta(r)
	if err != nil {
		return fmt.Errorf("clickhousestore: save report: %w", err)
	}
	err = s.insertRow(ctx, `INSERT INTO `+s.t("reports")+` (id, version, created_ms, status, meta, content)`,
		r.ID, s.version(), r.CreatedAt.UnixMilli(), r.Status, meta, string(r.Content))
	return wrapErr("clickhousestore: save report", err)
}

// insertRow inserts one row through a batch: ClickHouse 18.16 does not answer an
// INSERT … VALUES with bound parameters sent as a plain query.
func (s *Store) insertRow(ctx context.Context, insert string, values ...any) error {
	batch, err := s.conn.PrepareBatch(ctx, insert)
	if err != nil {
		return err
	}
	defer func() { _ = batch.Abort() }()
	if err := batch.Append(values...); err != nil {
		return err
	}
	return batch.Send()
}
