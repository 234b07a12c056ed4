package clickhousestore

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/atrium-iot/atrium/internal/rowscan"
)

// The aggregate tables. Each is written by a materialized view on readings, so
// the server derives it from every block inserted into readings within the same
// INSERT statement; the store never writes one itself, except to repair it
// (reconcile).
//
//   - minutes: per room, type and minute, the count, sum, min and max (with the
//     earliest time each was read); one row per insert block, summed at read time.
//     Series, extremes and report figures read it.
//   - type_minutes: the same building-wide per type and minute (without the
//     times of the extremes), as AggregatingMergeTree states merged in the
//     background. Counts, type statistics and building-wide series read it: a
//     day is 1,440 rows a type once merged, whatever the number of rooms.
//   - latest: the latest reading per room and type (ReplacingMergeTree on its
//     time). Latest values and the room list read it.
const (
	minutesDDL = ` (
    room_id   String,
    type      String,
    minute_ms Int64,
    n         UInt64,
    sum       Float64,
    min_v     Float64,
    min_ms    Int64,
    max_v     Float64,
    max_ms    Int64
) ENGINE = MergeTree
PARTITION BY toYYYYMM(toDateTime(intDiv(minute_ms, 1000)))
ORDER BY (room_id, type, minute_ms)`

	typeMinutesDDL = ` (
    type      String,
    minute_ms Int64,
    n         AggregateFunction(sum, UInt64),
    sum       AggregateFunction(sum, Float64),
    min_v     AggregateFunction(min, Float64),
    max_v     AggregateFunction(max, Float64)
) ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(toDateTime(intDiv(minute_ms, 1000)))
ORDER BY (minute_ms, type)`

	latestDDL = ` (
    room_id String,
    type    String,
    last_ms Int64,
    last_v  Float64
) ENGINE = ReplacingMergeTree(last_ms)
ORDER BY (room_id, type)`

	// checksDDL records, per aggregate table and partition of readings, how many
	// more rows readings had than the aggregate counted when they were last
	// found consistent (copies not yet merged away by the ReplacingMergeTree).
	checksDDL = ` (
    tbl     String,
    part    String,
    surplus Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (tbl, part)`
)

// minuteOf is the first millisecond of the minute of the Int64 milliseconds in
// col (rounded down, also before 1970; the Int64 casts keep ClickHouse from
// narrowing the remainder).
func minuteOf(col string) string {
	return col + ` - (` + col + ` % toInt64(60000) + 60000) % toInt64(60000)`
}

// views are the materialized views that derive the aggregates, by table.
func (s *Store) views() map[string]string {
	r := s.t("readings")
	return map[string]string{
		"minutes": `SELECT room_id, type, ` + minuteOf("ts_ms") + ` AS minute_ms, count() AS n, sum(value) AS sum,
       min(value) AS min_v, argMin(ts_ms, tuple(value, ts_ms)) AS min_ms,
       max(value) AS max_v, argMin(ts_ms, tuple(-value, ts_ms)) AS max_ms
FROM ` + r + ` GROUP BY room_id, type, minute_ms`,
		"type_minutes": `SELECT type, ` + minuteOf("ts_ms") + ` AS minute_ms, sumState(toUInt64(1)) AS n, sumState(value) AS sum,
       minState(value) AS min_v, maxState(value) AS max_v
FROM ` + r + ` GROUP BY type, minute_ms`,
		"latest": `SELECT room_id, type, max(ts_ms) AS last_ms, argMax(value, ts_ms) AS last_v
FROM ` + r + ` WHERE room_id != '' GROUP BY room_id, type`,
	}
}

// counted are the aggregate tables that count every reading, and the
// expression of that count.
var counted = []struct{ table, n string }{{"minutes", "sum(n)"}, {"type_minutes", "sumMerge(n)"}}

// migrateAggregates creates the aggregate tables and their views. minutes and
// type_minutes are made empty, and checkAggregates fills them from the
// readings; latest is built under another name, filled and renamed, so an
// interrupted build is redone at the next open. The views are created last: the
// writer is not running yet, so no insert falls between.
func (s *Store) migrateAggregates(ctx context.Context) error {
	if err := s.conn.Exec(ctx, `DROP TABLE IF EXISTS `+s.t("minutes_build")); err != nil { // left by an older release
		return err
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ` + s.t("minutes") + minutesDDL,
		`CREATE TABLE IF NOT EXISTS ` + s.t("type_minutes") + typeMinutesDDL,
		`CREATE TABLE IF NOT EXISTS ` + s.t("aggregate_checks") + checksDDL,
		`CREATE TABLE IF NOT EXISTS ` + s.t("cutoffs") + cutoffsDDL,
	} {
		if err := s.conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	if err := s.loadCutoffs(ctx); err != nil {
		return err
	}
	exists, err := s.tableExists(ctx, "latest")
	if err != nil {
		return err
	}
	if !exists {
		if err := s.buildLatest(ctx); err != nil {
			return err
		}
	}
	for table, sel := range s.views() {
		if err := s.conn.Exec(ctx, `CREATE MATERIALIZED VIEW IF NOT EXISTS `+s.t(table+"_mv")+` TO `+s.t(table)+` AS `+sel); err != nil {
			return err
		}
	}
	return nil
}

// buildLatest fills latest_build from the readings, a day at a time, and renames
// it latest.
func (s *Store) buildLatest(ctx context.Context) error {
	build := s.t("latest_build")
	for _, q := range []string{`DROP TABLE IF EXISTS ` + build, `CREATE TABLE ` + build + latestDDL} {
		if err := s.conn.Exec(ctx, q); err != nil {
			return err
		}
	}
	raw, _, err := s.partCounts(ctx)
	if err != nil {
		return err
	}
	for p := range raw {
		days, err := s.days(ctx, p, noCutoff)
		if err != nil {
			return err
		}
		for _, w := range days {
			if err := s.conn.Exec(ctx, `INSERT INTO `+build+` (room_id, type, last_ms, last_v)
SELECT room_id, type, max(ts_ms), argMax(value, ts_ms) FROM `+s.t("readings")+`
WHERE `+w.where("ts_ms", true)+` AND room_id != '' GROUP BY room_id, type`); err != nil {
				return err
			}
		}
	}
	return s.conn.Exec(ctx, `RENAME TABLE `+build+` TO `+s.t("latest"))
}

func (s *Store) tableExists(ctx context.Context, name string) (bool, error) {
	var n uint64
	err := s.conn.QueryRow(ctx, `SELECT count() FROM system.tables WHERE database = `+quote(s.db)+` AND name = `+quote(name)).Scan(&n)
	return n > 0, err
}

// window selects the readings whose aggregates a repair recomputes: those in
// [lo, hi) (whole minutes) of some types and rooms (nil: all).
type window struct {
	lo, hi       int64
	rooms, types map[string]struct{}
}

// where filters col (ts_ms of readings or minute_ms of an aggregate) and, with
// rooms, room_id.
func (w window) where(col string, rooms bool) string {
	q := col + ` >= ` + n64(w.lo) + ` AND ` + col + ` < ` + n64(w.hi)
	if w.types != nil {
		q += ` AND type IN (` + list(w.types) + `)`
	}
	if rooms && w.rooms != nil {
		q += ` AND room_id IN (` + list(w.rooms) + `)`
	}
	return q
}

// reconcile makes the aggregates of w's readings agree with the readings: per
// minute (and room), what the deduplicated readings hold beyond what the
// aggregate counts is added as one more row (count and sum the difference,
// extremes those of the readings, which a read combines with the others); the
// latest values are derived again (a ReplacingMergeTree keeps the newest). It is
// idempotent: once they agree it adds nothing. It must not run while an INSERT
// into readings is in flight, which the view would count too. Only the counted
// tables named in stale are reconciled (nil: all); latest always is.
func (s *Store) reconcile(ctx context.Context, w window, stale map[string]bool) error {
	mt, rt := w.where("minute_ms", true), w.where("ts_ms", true)
	tt, rtt := w.where("minute_ms", false), w.where("ts_ms", false)
	stmts := map[string]string{
		"minutes": `INSERT INTO ` + s.t("minutes") + ` (room_id, type, minute_ms, n, sum, min_v, min_ms, max_v, max_ms)
SELECT room_id, type, minute_ms, toUInt64(rn - an), rsum - asum, rmin, rmin_ms, rmax, rmax_ms FROM (
    SELECT room_id, type, ` + minuteOf("ts_ms") + ` AS minute_ms, count() AS rn, sum(v) AS rsum,
           min(v) AS rmin, argMin(ts_ms, tuple(v, ts_ms)) AS rmin_ms,
           max(v) AS rmax, argMin(ts_ms, tuple(-v, ts_ms)) AS rmax_ms
    FROM ` + s.deduped(rt) + ` GROUP BY room_id, type, minute_ms
) ANY LEFT JOIN (
    SELECT room_id, type, minute_ms, sum(n) AS an, sum(sum) AS asum FROM ` + s.t("minutes") + ` WHERE ` + mt + `
    GROUP BY room_id, type, minute_ms
) USING (room_id, type, minute_ms) WHERE rn > an`,
		"type_minutes": `INSERT INTO ` + s.t("type_minutes") + ` (type, minute_ms, n, sum, min_v, max_v)
SELECT type, minute_ms, sumState(toUInt64(rn - an)), sumState(rsum - asum), minState(rmin), maxState(rmax) FROM (
    SELECT type, ` + minuteOf("ts_ms") + ` AS minute_ms, count() AS rn, sum(v) AS rsum, min(v) AS rmin, max(v) AS rmax
    FROM ` + s.deduped(rtt) + ` GROUP BY type, minute_ms
) ANY LEFT JOIN (
    SELECT type, minute_ms, sumMerge(n) AS an, sumMerge(sum) AS asum FROM ` + s.t("type_minutes") + ` WHERE ` + tt + `
    GROUP BY type, minute_ms
) USING (type, minute_ms) WHERE rn > an GROUP BY type, minute_ms`,
		"latest": `INSERT INTO ` + s.t("latest") + ` (room_id, type, last_ms, last_v)
SELECT room_id, type, max(ts_ms), argMax(value, ts_ms) FROM ` + s.t("readings") + `
WHERE ` + rt + ` AND room_id != '' GROUP BY room_id, type`,
	}
	for _, table := range []string{"minutes", "type_minutes", "latest"} {
		if stale != nil && table != "latest" && !stale[table] {
			continue
		}
		if err := s.conn.Exec(ctx, stmts[table]); err != nil {
			return fmt.Errorf("reconcile %s: %w", table, err)
		}
	}
	return nil
}

// deduped is the readings matching where, one row per identity (its value v):
// a copy not yet merged away by the ReplacingMergeTree counts once.
func (s *Store) deduped(where string) string {
	return `(SELECT room_id, type, ts_ms, sensor_id, any(value) AS v FROM ` + s.t("readings") +
		` WHERE ` + where + ` GROUP BY room_id, type, ts_ms, sensor_id)`
}

// partCounts returns the rows of readings per partition and, per counted
// aggregate table and partition, the readings it counts from compareFrom on
// (before it, the readings were pruned).
func (s *Store) partCounts(ctx context.Context) (map[string]int64, map[string]map[string]int64, error) {
	scan := func(q string) (map[string]int64, error) {
		rows, err := s.conn.Query(ctx, q)
		if err != nil {
			return nil, err
		}
		return rowscan.Map(rows, func(r rowscan.Row) (string, int64, error) {
			var p string
			var n uint64
			err := r.Scan(&p, &n)
			return p, int64(n), err
		})
	}
	raw, err := scan(`SELECT partition, sum(rows) FROM system.parts WHERE database = ` + quote(s.db) + ` AND table = 'readings' AND active GROUP BY partition`)
	if err != nil {
		return nil, nil, err
	}
	agg := map[string]map[string]int64{}
	for _, c := range counted {
		if agg[c.table], err = scan(`SELECT toString(toYYYYMM(toDateTime(intDiv(minute_ms, 1000)))) AS p, toUInt64(` + c.n + `) FROM ` + s.t(c.table) +
			` WHERE minute_ms >= ` + n64(s.compareFrom()) + ` GROUP BY p`); err != nil {
			return nil, nil, err
		}
	}
	return raw, agg, nil
}

// checkAggregates compares, per partition, the rows of readings with the
// readings each aggregate counts, and reconciles the partitions where readings
// hold more than when last found consistent: readings stored by an INSERT whose
// views failed (or, before the views, by a writer that stopped between two
// INSERTs), and aggregates never filled. The surplus allowed is that of copies
// of a reading not yet merged away that the aggregates count once (a
// reconciliation dedupes); it is lowered when merges remove them. A copy two
// writers raced to store adds as much to both (the views count it twice).
func (s *Store) checkAggregates(ctx context.Context) error {
	raw, agg, err := s.partCounts(ctx)
	if err != nil {
		return fmt.Errorf("check aggregates: %w", err)
	}
	recorded, err := s.surpluses(ctx)
	if err != nil {
		return fmt.Errorf("check aggregates: %w", err)
	}
	repair := map[string]map[string]bool{} // partition → its stale tables
	lower := map[[2]string]int64{}
	for p := range raw {
		for _, c := range counted {
			k := [2]string{c.table, p}
			switch d := raw[p] - agg[c.table][p]; {
			case d > recorded[k]:
				if repair[p] == nil {
					repair[p] = map[string]bool{}
				}
				repair[p][c.table] = true
			case d < recorded[k]:
				lower[k] = d
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(repair)) {
		start := time.Now()
		if err := s.reconcilePart(ctx, p, repair[p]); err != nil {
			return fmt.Errorf("check aggregates: partition %s: %w", p, err)
		}
		s.log.Info("aggregates rebuilt from readings", "partition", p, "tables", slices.Sorted(maps.Keys(repair[p])),
			"readings", raw[p], "took", time.Since(start).Round(time.Millisecond))
	}
	if len(repair) > 0 {
		if raw, agg, err = s.partCounts(ctx); err != nil {
			return fmt.Errorf("check aggregates: %w", err)
		}
		for p := range repair {
			for _, c := range counted {
				lower[[2]string{c.table, p}] = raw[p] - agg[c.table][p]
			}
		}
	}
	return s.recordSurpluses(ctx, lower)
}

// reconcilePart reconciles the stale tables of a partition of readings a day at
// a time, from repairFrom on: before it, the readings or the aggregates were
// pruned, and the aggregates that are left must stay as they are.
func (s *Store) reconcilePart(ctx context.Context, p string, stale map[string]bool) error {
	days, err := s.days(ctx, p, s.repairFrom())
	if err != nil {
		return err
	}
	for _, w := range days {
		if err := s.reconcile(ctx, w, stale); err != nil {
			return err
		}
	}
	return nil
}

// days splits a partition of readings (a month of the server's time zone,
// YYYYMM) into windows of a day, from the millisecond from on: a statement over
// one stays well inside the client's read timeout (the server sends nothing
// while it runs an INSERT … SELECT), and its dedupe in memory.
func (s *Store) days(ctx context.Context, p string, from int64) ([]window, error) {
	lo, hi, err := s.monthBounds(ctx, p)
	if err != nil {
		return nil, err
	}
	const day = 24 * 60 * 60 * 1000
	var out []window
	for start := lo; start < hi; start += day {
		if w := (window{lo: max(start, from), hi: min(start+day, hi)}); w.lo < w.hi {
			out = append(out, w)
		}
	}
	return out, nil
}

// monthBounds returns the first millisecond of a partition (a month of the
// server's time zone, YYYYMM) and that of the next.
func (s *Store) monthBounds(ctx context.Context, p string) (lo, hi int64, err error) {
	if len(p) != 6 || strings.Trim(p, "0123456789") != "" {
		return 0, 0, fmt.Errorf("unexpected partition id %q", p)
	}
	err = s.conn.QueryRow(ctx, `SELECT toInt64(toUnixTimestamp(toDateTime(d))) * 1000, toInt64(toUnixTimestamp(toDateTime(addMonths(d, 1)))) * 1000
FROM (SELECT toDate('`+p[:4]+`-`+p[4:]+`-01') AS d)`).Scan(&lo, &hi)
	if err != nil {
		return 0, 0, fmt.Errorf("bounds of partition %s: %w", p, err)
	}
	return lo, hi, nil
}

func (s *Store) surpluses(ctx context.Context) (map[[2]string]int64, error) {
	rows, err := s.conn.Query(ctx, `SELECT tbl, part, argMax(surplus, version) FROM `+s.t("aggregate_checks")+` GROUP BY tbl, part`)
	if err != nil {
		return nil, err
	}
	return rowscan.Map(rows, func(r rowscan.Row) ([2]string, int64, error) {
		var k [2]string
		var v int64
		err := r.Scan(&k[0], &k[1], &v)
		return k, v, err
	})
}

func (s *Store) recordSurpluses(ctx context.Context, m map[[2]string]int64) error {
	if len(m) == 0 {
		return nil
	}
	batch, err := s.conn.PrepareBatch(ctx, `INSERT INTO `+s.t("aggregate_checks")+` (tbl, part, surplus, version)`)
	if err != nil {
		return fmt.Errorf("record checks: %w", err)
	}
	defer func() { _ = batch.Abort() }()
	for k, v := range m {
		if err := batch.Append(k[0], k[1], v, s.version()); err != nil {
			return fmt.Errorf("record checks: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("record checks: %w", err)
	}
	return nil
}

// suspect is the window of an INSERT into readings that failed: the server may
// have stored the readings and not run every view (a view's error fails the
// INSERT after the readings are written), and a redelivery would find them
// stored and skip them. The writer reconciles it before its next INSERT.
type suspect struct {
	queryID string
	w       window
}

// repairSuspects reconciles the windows of the failed INSERTs once the server
// no longer runs them, from repairFrom on (before it, what was pruned stays
// pruned). s.pmu is held.
func (s *Store) repairSuspects(ctx context.Context) error {
	for len(s.suspects) > 0 {
		sp := s.suspects[0]
		if err := s.awaitQuery(ctx, sp.queryID); err != nil {
			return fmt.Errorf("repair failed insert: %w", err)
		}
		if sp.w.lo = max(sp.w.lo, s.repairFrom()); sp.w.lo < sp.w.hi {
			if err := s.reconcile(ctx, sp.w, nil); err != nil {
				return fmt.Errorf("repair failed insert: %w", err)
			}
		}
		s.log.Info("aggregates of a failed insert reconciled", "query_id", sp.queryID)
		s.suspects = s.suspects[1:]
	}
	return nil
}

// awaitQuery waits until the server no longer runs the query id (an INSERT the
// client gave up on may still be running).
func (s *Store) awaitQuery(ctx context.Context, id string) error {
	for {
		var n uint64
		if err := s.conn.QueryRow(ctx, `SELECT count() FROM system.processes WHERE query_id = `+quote(id)).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// withQueryID tags ctx's next query with id.
func withQueryID(ctx context.Context, id string) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithQueryID(id))
}
