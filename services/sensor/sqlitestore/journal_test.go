package sqlitestore

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/services/sensor"
)

// journalRows counts the readings in the journal and readings tables.
func journalRows(t *testing.T, s *Store) (journal, readings int) {
	t.Helper()
	if err := s.db.Readers.QueryRowContext(t.Context(), "SELECT count(*) FROM readings").Scan(&readings); err != nil {
		t.Fatal(err)
	}
	rows, err := s.db.Readers.QueryContext(t.Context(), "SELECT body FROM journal")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			t.Fatal(err)
		}
		_, rs, err := decodeEvent(body)
		if err != nil {
			t.Fatal(err)
		}
		journal += len(rs)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return journal, readings
}

// TestJournalDuplicates: a reading is a duplicate whether its twin waits in the
// journal, is in the same group, or was merged into readings; an older reading
// that is new is stored, and every reading is merged exactly once.
func TestJournalDuplicates(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "dup.db"), Options{mergeIdle: -1})
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	ingest := func(id string, rs ...reading.Reading) sensor.Result {
		t.Helper()
		out, err := s.Ingest(t.Context(), sensor.Batch{ID: id, ReceivedAt: base, Readings: rs})
		if err != nil {
			t.Fatal(err)
		}
		return out.Result
	}
	check := func(name string, got sensor.Result, accepted, duplicates int) {
		t.Helper()
		if got.Accepted != accepted || got.Duplicates != duplicates {
			t.Errorf("%s: %d accepted, %d duplicates; want %d and %d", name, got.Accepted, got.Duplicates, accepted, duplicates)
		}
	}

	check("first", ingest("b1", reading1("s1", at(10), 1), reading1("s1", at(20), 2)), 2, 0)
	if j, r := journalRows(t, s); j != 2 || r != 0 {
		t.Fatalf("after one batch: %d journal rows, %d readings; want 2 and 0", j, r)
	}
	check("twin in the journal", ingest("b2", reading1("s1", at(20), 9), reading1("s1", at(30), 3)), 1, 1)

	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if j, r := journalRows(t, s); j != 0 || r != 3 {
		t.Fatalf("after the merge: %d journal rows, %d readings; want 0 and 3", j, r)
	}
	check("twin merged", ingest("b3", reading1("s1", at(10), 9)), 0, 1)
	check("older but new", ingest("b4", reading1("s1", at(5), 0.5), reading1("s1", at(5), 0.5)), 1, 1)
	check("other type, same time", ingest("b5", reading.Reading{SensorID: "s1", Type: "temperature", Value: 21, Unit: "Cel", Timestamp: at(10)}), 1, 0)

	rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: "s1", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	for _, r := range rs {
		got = append(got, r.Value)
	}
	want := []float64{0.5, 1, 21, 2, 3}
	if len(got) != len(want) {
		t.Fatalf("readings = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("readings = %v, want %v", got, want)
		}
	}
	if j, r := journalRows(t, s); j != 0 || r != 5 {
		t.Errorf("after a read: %d journal rows, %d readings; want 0 and 5", j, r)
	}
}

// TestJournalLeftAtOpen: readings committed to the journal and never merged, or
// only partly (the process stopped first), are merged when the store is opened
// again, once each, with the registry rows they would have written, and still
// count as duplicates.
func TestJournalLeftAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "left.db")
	s, err := Open(t.Context(), path, Options{mergeIdle: -1})
	if err != nil {
		t.Fatal(err)
	}
	batches := []sensor.Batch{
		{ID: "b1", ReceivedAt: base, Readings: []reading.Reading{reading1("s1", base, 400), reading1("s2", base, 500)}},
		// No room: the room s1 registered in b1, which only the journal knows yet.
		{ID: "b2", ReceivedAt: base.Add(time.Minute), Readings: []reading.Reading{
			{SensorID: "s1", Type: "co2", Value: 450, Unit: "ppm", Timestamp: base.Add(30 * time.Second)}}},
	}
	for _, b := range batches {
		if _, err := s.Ingest(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	if j, r := journalRows(t, s); j != 3 || r != 0 {
		t.Fatalf("before close: %d journal rows, %d readings; want 3 and 0", j, r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// As if a merge had stopped half-way: one of the journal's readings is
	// already in readings.
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = other.ExecContext(t.Context(), `INSERT INTO readings (sensor_id, ts_ms, type, room_id, site, value, unit, received_ms)
		VALUES ('s2', ?, 'co2', 'r1', '', 500, 'ppm', ?)`, base.UnixMilli(), base.UnixMilli())
	if cerr := other.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}

	s = openTest(t, path, Options{mergeIdle: -1})
	if j, r := journalRows(t, s); j != 0 || r != 3 {
		t.Fatalf("after open: %d journal rows, %d readings; want 0 and 3", j, r)
	}
	sn, err := s.Sensor(t.Context(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	if sn.RoomID != "r1" || !sn.FirstSeen.Equal(base) || !sn.LastSeen.Equal(base.Add(time.Minute)) {
		t.Errorf("s1 = room %q, first seen %s, last seen %s; want r1, %s, %s", sn.RoomID, sn.FirstSeen, sn.LastSeen, base, base.Add(time.Minute))
	}
	if lv, ok := sn.LastValues["co2"]; !ok || lv.Value != 450 {
		t.Errorf("s1 last values = %+v, want co2 450", sn.LastValues)
	}
	rs, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].RoomID != "r1" {
		t.Errorf("s1 readings = %+v, want 2, the second in r1", rs)
	}
	out, err := s.Ingest(t.Context(), sensor.Batch{ID: "b3", ReceivedAt: base, Readings: batches[0].Readings})
	if err != nil {
		t.Fatal(err)
	}
	if out.Result.Accepted != 0 || out.Result.Duplicates != 2 {
		t.Errorf("b1's readings again: %+v, want 2 duplicates", out.Result)
	}
}

// TestJournalMergedInSteps ingests from many goroutines into a store whose
// merges start every few readings and go a few readings a step, while readers
// query: every reading is accepted once (a batch repeating another's readings
// gets them as duplicates, whether they wait in the journal, are being merged,
// or are merged), every query sees what its sensor was accepted, and the
// registry ends with each sensor's newest value.
func TestJournalMergedInSteps(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "steps.db"), Options{mergeRows: 40, mergeStep: 7, mergeIdle: -1})
	const (
		senders = 8
		batches = 40
		sensors = 13
	)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }
	var (
		mu       sync.Mutex
		accepted = map[string]int{} // per sensor
		wg       sync.WaitGroup
	)
	for g := range senders {
		wg.Go(func() {
			for b := range batches {
				// Sender g sends readings b*10 … b*10+9 of its sensors; sender
				// g+1 (mod senders) sends the same ones again under its own ids.
				var rs []reading.Reading
				owner := g - g%2
				for i := b * 10; i < b*10+10; i++ {
					id := fmt.Sprintf("s%d-%d", owner, i%sensors)
					rs = append(rs, reading1(id, at(i), float64(i)))
				}
				out, err := s.Ingest(t.Context(), sensor.Batch{ID: fmt.Sprintf("g%d-b%d", g, b), ReceivedAt: base, Readings: rs})
				if err != nil {
					t.Error(err)
					return
				}
				if out.Result.Accepted+out.Result.Duplicates != len(rs) {
					t.Errorf("batch g%d-b%d: %+v", g, b, out.Result)
				}
				mu.Lock()
				accepted[fmt.Sprint(owner)] += out.Result.Accepted
				mu.Unlock()
				if b%5 == 0 { // what was answered is there, merged or not
					r := rs[len(rs)-1]
					got, _, err := s.Readings(t.Context(), sensor.ReadingQuery{SensorID: r.SensorID, From: r.Timestamp, Limit: 1})
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) != 1 || !got[0].Timestamp.Equal(r.Timestamp) {
						t.Errorf("sensor %s after batch g%d-b%d: %+v, want its reading at %s", r.SensorID, g, b, got, r.Timestamp)
					}
				}
			}
		})
	}
	wg.Wait()
	for owner, n := range accepted {
		if n != batches*10 {
			t.Errorf("owner %s: %d readings accepted, want %d (each once)", owner, n, batches*10)
		}
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if j, r := journalRows(t, s); j != 0 || r != senders/2*batches*10 {
		t.Errorf("after the last merge: %d journal readings, %d readings; want 0 and %d", j, r, senders/2*batches*10)
	}
	for owner := 0; owner < senders; owner += 2 {
		for i := range sensors {
			id := fmt.Sprintf("s%d-%d", owner, i)
			sn, err := s.Sensor(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			newest := batches*10 - 1
			for newest%sensors != i {
				newest--
			}
			if lv := sn.LastValues["co2"]; lv.Value != float64(newest) {
				t.Errorf("%s: last value %v, want %d", id, lv.Value, newest)
			}
		}
	}
}

// TestIDSet: identities are found whether a sensor's readings came in time
// order (binary search, several types at one time) or not (a set), also when
// added after the set was built, and whether they were added one by one or
// absorbed from other sets (a batch's into its group, a group's into the
// journal).
func TestIDSet(t *testing.T) {
	k := func(sensor, typ string, ts int64) readingKey { return readingKey{sensor, typ, ts} }
	tests := []struct {
		name    string
		add     []readingKey
		present []readingKey
		absent  []readingKey
	}{
		{"in order",
			[]readingKey{k("a", "co2", 1), k("a", "temperature", 1), k("a", "co2", 2), k("a", "co2", 2000), k("b", "co2", 1)},
			[]readingKey{k("a", "co2", 1), k("a", "temperature", 1), k("a", "co2", 2), k("a", "co2", 2000), k("b", "co2", 1)},
			[]readingKey{k("a", "humidity", 1), k("a", "co2", 3), k("a", "co2", 0), k("a", "co2", 2001), k("b", "co2", 2), k("c", "co2", 1)}},
		{"out of order",
			[]readingKey{k("a", "co2", 5), k("a", "co2", 3), k("a", "temperature", 5), k("a", "co2", 4)},
			[]readingKey{k("a", "co2", 3), k("a", "co2", 4), k("a", "co2", 5), k("a", "temperature", 5)},
			[]readingKey{k("a", "co2", 1), k("a", "temperature", 3), k("a", "co2", 6)}},
		{"out of order across sets",
			[]readingKey{k("a", "co2", 5), k("a", "co2", 6), k("a", "co2", 3), k("a", "co2", 4)},
			[]readingKey{k("a", "co2", 3), k("a", "co2", 4), k("a", "co2", 5), k("a", "co2", 6)},
			[]readingKey{k("a", "co2", 1), k("a", "co2", 7), k("a", "temperature", 5)}},
	}
	for _, tt := range tests {
		// The identities added one by one; absorbed in two halves; and
		// absorbed after a lookup of the first half built its set.
		build := map[string]func() idSet{
			"add": func() idSet {
				s := idSet{}
				for i, key := range tt.add {
					s.add(key, 0, int32(i))
				}
				return s
			},
			"absorb": func() idSet {
				s := idSet{}
				for h, keys := range [][]readingKey{tt.add[:len(tt.add)/2], tt.add[len(tt.add)/2:]} {
					part := idSet{}
					for i, key := range keys {
						part.add(key, 0, int32(i))
					}
					s.absorb(part, int32(h))
				}
				return s
			},
			"absorb after lookup": func() idSet {
				s := idSet{}
				for i, key := range tt.add[:len(tt.add)/2] {
					s.add(key, 0, int32(i))
				}
				s.has(k("a", "co2", 0))
				part := idSet{}
				for i, key := range tt.add[len(tt.add)/2:] {
					part.add(key, 0, int32(i))
				}
				s.absorb(part, 1)
				return s
			},
		}
		for how, set := range build {
			t.Run(tt.name+"/"+how, func(t *testing.T) {
				s := set()
				for _, key := range tt.present {
					if !s.has(key) {
						t.Errorf("%v not found", key)
					}
				}
				for _, key := range tt.absent {
					if s.has(key) {
						t.Errorf("%v found", key)
					}
				}
				// Added after a lookup (which may have built the set).
				late := k("a", "pm25", 2)
				s.add(late, 0, 99)
				if !s.has(late) {
					t.Errorf("%v added late not found", late)
				}
			})
		}
	}
}

// TestMergeRuns: a merge writes every column of every reading as it came,
// whatever runs the readings form: a series longer than one statement, types
// interleaved at each time, short series between others, and a sensor whose
// room, site or unit changes on the way.
func TestMergeRuns(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "runs.db"), Options{mergeIdle: -1})
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	r := func(sensor, typ, unit, room, site string, sec int) reading.Reading {
		return reading.Reading{SensorID: sensor, RoomID: room, Site: site, Type: typ, Unit: unit,
			Value: float64(sec) + 0.25, Timestamp: at(sec)}
	}
	var rs []reading.Reading
	for sec := range 300 { // one series, over a statement's rows
		rs = append(rs, r("a", "co2", "ppm", "r1", "hq", sec))
	}
	for sec := range 50 { // three types at each time
		for _, typ := range []string{"co2", "humidity", "temperature"} {
			rs = append(rs, r("b", typ, "u", "r1", "hq", sec))
		}
	}
	for sec := range 40 { // short series between longer ones
		typ := "co2"
		if sec >= 10 && sec < 13 {
			typ = "humidity"
		}
		rs = append(rs, r("c", typ, "u", "r1", "hq", sec))
	}
	for sec := range 30 { // room, site and unit change on the way
		room, site, unit := "r1", "hq", "u1"
		switch {
		case sec >= 25:
			unit = "u2"
		case sec >= 20:
		case sec >= 15:
			site = "b2"
		case sec >= 10:
			room = "r2"
		}
		rs = append(rs, r("d", "x", unit, room, site, sec))
	}
	type row struct {
		sensor, typ, room, site, unit string
		ts, recv                      int64
		value                         float64
	}
	want := map[row]bool{}
	for i := 0; i < len(rs); i += 97 { // batches received at different times
		b := sensor.Batch{ID: fmt.Sprintf("b%d", i), ReceivedAt: base.Add(time.Duration(i) * time.Millisecond), Readings: rs[i:min(i+97, len(rs))]}
		if _, err := s.Ingest(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		for _, r := range b.Readings {
			want[row{r.SensorID, r.Type, r.RoomID, r.Site, r.Unit, r.Timestamp.UnixMilli(), b.ReceivedAt.UnixMilli(), r.Value}] = true
		}
	}
	if err := s.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := s.db.Readers.QueryContext(t.Context(), "SELECT sensor_id, type, room_id, site, unit, ts_ms, received_ms, value FROM readings")
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	n := 0
	for got.Next() {
		var w row
		if err := got.Scan(&w.sensor, &w.typ, &w.room, &w.site, &w.unit, &w.ts, &w.recv, &w.value); err != nil {
			t.Fatal(err)
		}
		if !want[w] {
			t.Errorf("stored %+v, which no batch sent", w)
		}
		n++
	}
	if err := got.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Errorf("%d readings stored, want %d", n, len(want))
	}
}
