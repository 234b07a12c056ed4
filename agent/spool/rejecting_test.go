package spool

import (
	"path/filepath"
	"testing"
)

func TestAckBatchRejecting(t *testing.T) {
	per := int64(len(reading(100)) + recordOverhead)
	tests := []struct {
		name     string
		extra    int // readings appended after the batch was sent, beyond the free room (drop-oldest)
		rejected []Rejection
		wantDead map[int]string // reading number → reason
	}{
		{name: "rejected readings become dead letters",
			rejected: []Rejection{{Index: 1, Reason: "value: too hot"}, {Index: 3, Reason: "timestamp: too old"}},
			wantDead: map[int]string{101: "cloud rejected the reading: value: too hot", 103: "cloud rejected the reading: timestamp: too old"}},
		{name: "nothing rejected is a plain ack", wantDead: map[int]string{}},
		{name: "indexes out of range are ignored",
			rejected: []Rejection{{Index: -1, Reason: "x"}, {Index: 4, Reason: "x"}, {Index: 0, Reason: "first"}},
			wantDead: map[int]string{100: "cloud rejected the reading: first"}},
		{name: "a shrunk batch counts indexes from its newest reading", extra: 2,
			rejected: []Rejection{{Index: 0, Reason: "dropped since"}, {Index: 2, Reason: "third"}},
			wantDead: map[int]string{102: "cloud rejected the reading: third"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A full spool, roomy enough for the dead letters (a tenth of MaxBytes).
			const fill = 100
			s := openTest(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: fill * per})
			appendAll(t, s, readings(100, 100+fill))
			sent, ok, err := s.NextBatch(4, 0)
			if err != nil || !ok || len(sent.Readings) != 4 {
				t.Fatalf("NextBatch = %d readings, ok=%v err=%v", len(sent.Readings), ok, err)
			}
			appendAll(t, s, readings(100+fill, 100+fill+tc.extra))
			if err := s.AckBatchRejecting(sent.ID, len(sent.Readings), tc.rejected); err != nil {
				t.Fatal(err)
			}
			dls, err := s.DeadLetters(0)
			if err != nil {
				t.Fatal(err)
			}
			got := map[int]string{}
			for _, d := range dls {
				for n := 100; n < 104; n++ {
					if string(d.Payload) == string(reading(n)) {
						got[n] = d.Reason
					}
				}
				if d.Batch == "" || d.Topic != "" {
					t.Errorf("dead letter %+v: want the batch id and no topic", d)
				}
			}
			if len(dls) != len(tc.wantDead) || len(got) != len(tc.wantDead) {
				t.Fatalf("dead letters %+v, want readings %v", dls, tc.wantDead)
			}
			for n, why := range tc.wantDead {
				if got[n] != why {
					t.Errorf("reading %d: reason %q, want %q", n, got[n], why)
				}
			}
			st := s.Stats()
			if want := uint64(4 - tc.extra - len(tc.wantDead)); st.Acked != want || st.DeadLettered != uint64(len(tc.wantDead)) {
				t.Errorf("acked %d, dead-lettered %d; want %d and %d", st.Acked, st.DeadLettered, want, len(tc.wantDead))
			}
			if rest := drainAll(t, s, 1000); !equalReadings(rest, readings(104, 100+fill+tc.extra)) {
				t.Errorf("remaining %d readings, want %d", len(rest), fill+tc.extra-4)
			}
		})
	}
}
