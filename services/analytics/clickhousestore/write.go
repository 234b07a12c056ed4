package clickhousestore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/analytics"
)

// writeReq is one AddReadings call waiting for the writer.
type writeReq struct {
	ctx  context.Context
	rs   []reading.Reading
	done chan writeRes
}

type writeRes struct {
	n   int
	err error
}

type identity struct {
	sensor, typ string
	ts          int64
}

// AddReadings hands the readings to the writer and waits for their INSERT.
func (s *Store) AddReadings(ctx context.Context, rs []reading.Reading) (int, error) {
	if len(rs) == 0 {
		return 0, nil
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, fmt.Errorf("clickhousestore: add readings: %w: store closed", analytics.ErrUnavailable)
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()
	req := &writeReq{ctx: ctx, rs: rs, done: make(chan writeRes, 1)}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case res := <-req.done:
		return res.n, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// writer coalesces the waiting AddReadings calls into one check and one INSERT.
func (s *Store) writer() {
	defer close(s.done)
	for {
		var first *writeReq
		select {
		case first = <-s.reqs:
		case <-s.quit:
			return
		}
		group := []*writeReq{first}
		n := len(first.rs)
	gather:
		for n < s.opts.MaxBatch {
			select {
			case r := <-s.reqs:
				group = append(group, r)
				n += len(r.rs)
			default:
				break gather
			}
		}
		s.write(group)
	}
}

func (s *Store) write(group []*writeReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	live := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.done <- writeRes{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	counts, err := s.insert(ctx, live)
	for i, r := range live {
		if err != nil {
			r.done <- writeRes{err: wrapErr("clickhousestore: add readings", err)}
			continue
		}
		r.done <- writeRes{n: counts[i]}
	}
}

// insert stores the new readings of the group and returns how many each request added.
func (s *Store) insert(ctx context.Context, group []*writeReq) ([]int, error) {
	existing, err := s.existing(ctx, group)
	if err != nil {
		return nil, err
	}
	counts := make([]int, len(group))
	batch, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.t("readings")+` (room_id, type, ts_ms, sensor_id, value)`)
	if err != nil {
		return nil, fmt.Errorf("prepare insert: %w", err)
	}
	defer func() { _ = batch.Abort() }()
	newRooms := map[string]int64{}
	mins := map[minuteKey]*minuteAgg{}
	for i, r := range group {
		for _, rd := range r.rs {
			id := identity{rd.SensorID, rd.Type, rd.UnixMilli()}
			if _, ok := existing[id]; ok {
				continue
			}
			existing[id] = struct{}{}
			if err := batch.Append(rd.RoomID, rd.Type, id.ts, rd.SensorID, rd.Value); err != nil {
				return nil, fmt.Errorf("append reading: %w", err)
			}
			counts[i]++
			addToMinute(mins, rd.RoomID, rd.Type, id.ts, rd.Value)
			if rd.RoomID != "" {
				if first, ok := newRooms[rd.RoomID]; !ok || id.ts < first {
					newRooms[rd.RoomID] = id.ts
				}
			}
		}
	}
	if batch.Rows() > 0 {
		if err := batch.Send(); err != nil {
			return nil, fmt.Errorf("insert readings: %w", err)
		}
		if err := s.insertMinutes(ctx, mins); err != nil {
			return nil, err
		}
	}
	if err := s.addRooms(ctx, newRooms); err != nil {
		return nil, err
	}
	return counts, nil
}

// minuteKey is one row of the minutes table: a room's readings of one type in
// one minute (minute is its first millisecond).
type minuteKey struct {
	room, typ string
	minute    int64
}

// minuteAgg is the count, sum and extremes (with the earliest time each was
// read) of a minute's readings.
type minuteAgg struct {
	n          uint64
	sum        float64
	lo, hi     float64
	loAt, hiAt int64
}

func addToMinute(mins map[minuteKey]*minuteAgg, room, typ string, ts int64, v float64) {
	k := minuteKey{room, typ, ts - ((ts%60000)+60000)%60000}
	a := mins[k]
	if a == nil {
		mins[k] = &minuteAgg{n: 1, sum: v, lo: v, hi: v, loAt: ts, hiAt: ts}
		return
	}
	a.n++
	a.sum += v
	if v < a.lo || v == a.lo && ts < a.loAt {
		a.lo, a.loAt = v, ts
	}
	if v > a.hi || v == a.hi && ts < a.hiAt {
		a.hi, a.hiAt = v, ts
	}
}

// insertMinutes adds the per-minute aggregates of the readings just inserted as
// one batch. Queries sum the rows of a minute, so a minute spread over several
// batches needs no merge. A failure is retried a few times: the readings are
// already stored and a redelivery would skip them.
func (s *Store) insertMinutes(ctx context.Context, mins map[minuteKey]*minuteAgg) error {
	var err error
	for try := range 3 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("insert minutes: %w", err)
			case <-time.After(time.Duration(try) * 200 * time.Millisecond):
			}
		}
		if err = s.sendMinutes(ctx, mins); err == nil {
			return nil
		}
	}
	return fmt.Errorf("insert minutes: %w", err)
}

func (s *Store) sendMinutes(ctx context.Context, mins map[minuteKey]*minuteAgg) error {
	batch, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.t("minutes")+` (`+minuteColumns+`)`)
	if err != nil {
		return err
	}
	defer func() { _ = batch.Abort() }()
	for k, a := range mins {
		if err := batch.Append(k.room, k.typ, k.minute, a.n, a.sum, a.lo, a.loAt, a.hi, a.hiAt); err != nil {
			return err
		}
	}
	return batch.Send()
}

// existing returns the identities of the group's readings that are already stored.
// It narrows the search by room, type, sensor and time range (the table's order
// key leads with room and type), then matches identities here.
func (s *Store) existing(ctx context.Context, group []*writeReq) (map[identity]struct{}, error) {
	rooms, types, sensors := map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}
	lo, hi := int64(1<<62), int64(-1<<62)
	total := 0
	for _, r := range group {
		total += len(r.rs)
		for _, rd := range r.rs {
			rooms[rd.RoomID] = struct{}{}
			types[rd.Type] = struct{}{}
			sensors[rd.SensorID] = struct{}{}
			ts := rd.UnixMilli()
			lo, hi = min(lo, ts), max(hi, ts)
		}
	}
	out := make(map[identity]struct{}, total)
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

func (s *Store) addRooms(ctx context.Context, seen map[string]int64) error {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	var fresh []string
	for r := range seen {
		if _, ok := s.rooms[r]; !ok {
			fresh = append(fresh, r)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.t("rooms")+` (room_id, first_ms)`)
	if err != nil {
		return fmt.Errorf("prepare rooms insert: %w", err)
	}
	defer func() { _ = batch.Abort() }()
	for _, r := range fresh {
		if err := batch.Append(r, seen[r]); err != nil {
			return fmt.Errorf("append room: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert rooms: %w", err)
	}
	for _, r := range fresh {
		s.rooms[r] = struct{}{}
	}
	return nil
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
