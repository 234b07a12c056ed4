package room

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestHistorySpans(t *testing.T) {
	periods := []time.Duration{time.Minute, 5 * time.Minute, time.Hour}
	at := func(d time.Duration) time.Time { return planBase.Add(d) }
	ms := func(d time.Duration) int64 { return planBase.Add(d).UnixMilli() }
	tests := []struct {
		name     string
		bucket   time.Duration
		from, to time.Duration
		want     []Span
	}{
		{"minutes from the minute tier", time.Minute, 0, 10 * time.Minute, []Span{{0, ms(0), ms(10 * time.Minute)}}},
		{"ten minutes from five-minute rollups, the rest from minutes", 10 * time.Minute, 0, 17 * time.Minute,
			[]Span{{1, ms(0), ms(15 * time.Minute)}, {0, ms(15 * time.Minute), ms(17 * time.Minute)}}},
		{"a day from hours, five minutes and minutes", 24 * time.Hour, 0, 2*time.Hour + 7*time.Minute,
			[]Span{{2, ms(0), ms(2 * time.Hour)}, {1, ms(2 * time.Hour), ms(2*time.Hour + 5*time.Minute)},
				{0, ms(2*time.Hour + 5*time.Minute), ms(2*time.Hour + 7*time.Minute)}}},
		{"a range shorter than the coarse tier", time.Hour, 0, 3 * time.Minute, []Span{{0, ms(0), ms(3 * time.Minute)}}},
		{"an empty range", time.Hour, time.Hour, time.Hour, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HistorySpans(periods, tt.bucket, at(tt.from), at(tt.to)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("HistorySpans = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMerger(t *testing.T) {
	ms := planBase.UnixMilli()
	m := &Merger{Size: 5 * time.Minute, Limit: 2, Type: "co2"}
	adds := []struct {
		start int64
		a     Agg
		ok    bool
	}{
		{ms, Agg{1, 400, 400, 400}, true},
		{ms + 60_000, Agg{2, 1000, 450, 550}, true},
		{ms + 300_000, Agg{1, 700, 700, 700}, true},
		{ms + 360_000, Agg{1, 300, 300, 300}, true},
		{ms + 600_000, Agg{1, 1, 1, 1}, false},
	}
	for i, a := range adds {
		if ok := m.Add(a.start, a.a); ok != a.ok {
			t.Fatalf("add %d = %v, want %v", i, ok, a.ok)
		}
	}
	if !m.Full() {
		t.Error("Full = false after a refused rollup")
	}
	want := []Stat{
		{Type: "co2", Start: planBase, Count: 3, Sum: 1400, Min: 400, Max: 550},
		{Type: "co2", Start: planBase.Add(5 * time.Minute), Count: 2, Sum: 1000, Min: 300, Max: 700},
	}
	if got := m.Stats(); !reflect.DeepEqual(got, want) {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestHistoryOverTiers(t *testing.T) {
	periods := []time.Duration{time.Minute, time.Hour}
	ms := planBase.UnixMilli()
	// scan gives every span one rollup a minute from its start, as a store
	// of full tiers would, and records the spans it was asked for.
	var spans []Span
	scan := func(sp Span, m *Merger) error {
		spans = append(spans, sp)
		for st := sp.From; st < sp.To; st += 60_000 {
			if !m.Add(st, Agg{1, 1, 1, 1}) {
				return nil
			}
		}
		return nil
	}
	q := HistoryQuery{Type: "co2", From: planBase, To: planBase.Add(3*time.Hour + 2*time.Minute), Bucket: time.Hour, Limit: 2}
	got, err := History(q, periods, scan)
	if err != nil || len(got) != 2 || !got[1].Start.Equal(planBase.Add(time.Hour)) || got[1].Count != 60 {
		t.Fatalf("History = %+v, %v; want two hours of 60 rollups", got, err)
	}
	if want := []Span{{1, ms, ms + 3*3_600_000}}; !reflect.DeepEqual(spans, want) {
		t.Errorf("scanned %v, want only the hour tier %v: the merger was full", spans, want)
	}

	q.Limit = 0
	if got, err := History(q, periods, scan); err != nil || len(got) != 4 {
		t.Errorf("History with no limit = %d buckets, %v; want 4", len(got), err)
	}
	boom := errors.New("boom")
	if _, err := History(q, periods, func(Span, *Merger) error { return boom }); err != boom {
		t.Errorf("History with a failing scan = %v, want its error as it is", err)
	}
	q.Bucket = 90 * time.Second
	if _, err := History(q, periods, scan); err == nil || !strings.Contains(err.Error(), "whole number of minutes") {
		t.Errorf("History by 90s = %v, want a whole number of minutes", err)
	}
}
