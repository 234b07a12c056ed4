package forward

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/atrium-iot/atrium/agent/spool"
)

// TestAnswerMismatch: a cloud that answers a batch with something other than its own
// ingest answer (a broken or hostile cloud, or an answer kept for another request
// under the same id) never gets the batch deleted as stored: each answer is counted
// by reason, the batch is sent again, and after MismatchRetries it is dead-lettered
// with the reason. The next batch still goes.
func TestAnswerMismatch(t *testing.T) {
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	tests := []struct {
		name       string
		status     int
		header     http.Header
		body       func(id string, n int) string
		wantReason string // label
		wantText   string // in the dead letter's reason
	}{
		{"another batch id", 200, nil, func(_ string, n int) string { return okAnswer("b-guessed-by-someone", n) },
			MismatchBatchID, "the answer is for another batch id"},
		{"no batch id", 200, nil, func(_ string, n int) string {
			return fmt.Sprintf(`{"accepted":%d,"duplicates":0,"rejected":[]}`, n)
		}, MismatchBatchID, "the answer names no batch id"},
		{"an empty batch's answer under this id", 200, nil, func(id string, _ int) string { return okAnswer(id, 0) },
			MismatchCounts, "0 accepted, 0 duplicates and 0 rejected for 4 readings sent"},
		{"more than sent", 200, nil, func(id string, n int) string { return okAnswer(id, n+1) },
			MismatchCounts, "5 accepted, 0 duplicates and 0 rejected for 4 readings sent"},
		{"negative count", 200, nil, func(id string, n int) string {
			return fmt.Sprintf(`{"batch_id":%q,"accepted":%d,"duplicates":-1,"rejected":[]}`, id, n+1)
		}, MismatchCounts, "5 accepted, -1 duplicates"},
		{"rejected index out of range", 200, nil, func(id string, n int) string {
			return fmt.Sprintf(`{"batch_id":%q,"accepted":%d,"duplicates":0,"rejected":[{"index":%d,"reason":"x"}]}`, id, n-1, n)
		}, MismatchRejected, "the answer rejects reading 4 of 4"},
		{"rejected index twice", 200, nil, func(id string, n int) string {
			return fmt.Sprintf(`{"batch_id":%q,"accepted":%d,"duplicates":0,"rejected":[{"index":1,"reason":"x"},{"index":1,"reason":"y"}]}`, id, n-2)
		}, MismatchRejected, "the answer rejects reading 1 twice"},
		{"2xx not JSON", 200, nil, func(string, int) string { return "OK" }, MismatchBody, "not an ingest answer"},
		{"204 without a body", 204, nil, func(string, int) string { return "" }, MismatchBody, "not an ingest answer"},
		{"2xx without counts", 202, nil, func(id string, _ int) string { return fmt.Sprintf(`{"batch_id":%q}`, id) },
			MismatchBody, "no accepted or duplicates count"},
		{"422 conflict", 422, problem, func(id string, _ int) string {
			return fmt.Sprintf(`{"title":"Unprocessable Entity","status":422,"detail":"batch id %s was used with other readings"}`, id)
		}, MismatchConflict, "cloud answered 422: batch id <batch id> was used with other readings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t, func(_ int, r received) (int, http.Header, string) {
				if r.batchID != "b0" {
					return http.StatusOK, nil, okAnswer(r.batchID, len(r.readings))
				}
				return tc.status, tc.header, tc.body(r.batchID, len(r.readings))
			})
			q, f := flushTwoBatches(t, c)

			got := c.received()
			if len(got) != 4 {
				t.Fatalf("cloud got %d requests, want 3 attempts of b0 and one of b1", len(got))
			}
			for i, r := range got[:3] {
				if r.batchID != "b0" || r.header.Get("Idempotency-Key") != "b0" || string(r.body) != string(got[0].body) {
					t.Fatalf("attempt %d: batch %q: a retry must resend the same batch", i, r.batchID)
				}
			}
			if q.acked[0] != "b1" || len(q.acked) != 1 {
				t.Fatalf("acked %v, want only b1: b0 must not be deleted as stored", q.acked)
			}
			d := q.deadLetters()
			if len(d) != 1 || d[0].id != "b0" || d[0].readings != 4 {
				t.Fatalf("dead letters %+v, want b0 with its 4 readings", d)
			}
			if !strings.HasPrefix(d[0].reason, "cloud answer did not match the batch 3 times: ") || !strings.Contains(d[0].reason, tc.wantText) {
				t.Errorf("dead letter reason %q, want the count and %q", d[0].reason, tc.wantText)
			}
			st := f.Stats()
			for _, r := range MismatchReasons {
				want := int64(0)
				if r == tc.wantReason {
					want = 3
				}
				if st.AnswerMismatches[r] != want {
					t.Errorf("AnswerMismatches[%s] = %d, want %d (all: %v)", r, st.AnswerMismatches[r], want, st.AnswerMismatches)
				}
			}
			if strings.Contains(st.LastError, "b0") {
				t.Errorf("LastError %q names the batch id: it is shown on the status page", st.LastError)
			}
			if st.Forwarded != 4 || st.Batches != 1 || st.DeadLettered != 4 || st.Retries != 2 {
				t.Errorf("stats %+v, want b1 forwarded, b0 dead-lettered after 2 retries", st)
			}
		})
	}
}

// TestMismatchBudget: mismatches count against the budget, other failures do not;
// a batch whose answer matches in the end is acknowledged, and its count is forgotten.
func TestMismatchBudget(t *testing.T) {
	bad := func(r received) string { return okAnswer(r.batchID, 0) }
	steps := []func(received) (int, string){
		func(r received) (int, string) { return http.StatusOK, bad(r) },
		func(received) (int, string) { return http.StatusServiceUnavailable, "" },
		func(r received) (int, string) { return http.StatusOK, bad(r) },
		func(received) (int, string) { return http.StatusBadGateway, "" },
		func(r received) (int, string) { return http.StatusOK, okAnswer(r.batchID, len(r.readings)) },
		// the next batch: two more mismatches, then a match
		func(r received) (int, string) { return http.StatusOK, bad(r) },
		func(r received) (int, string) { return http.StatusOK, bad(r) },
	}
	c := newCloud(t, func(n int, r received) (int, http.Header, string) {
		if n < len(steps) {
			status, body := steps[n](r)
			return status, nil, body
		}
		return http.StatusOK, nil, ""
	})
	q, f := flushTwoBatches(t, c)
	if len(q.acked) != 2 || len(q.deadLetters()) != 0 {
		t.Fatalf("acked %v, dead letters %v: want both batches acked", q.acked, q.deadLetters())
	}
	if got := f.Stats().AnswerMismatches[MismatchCounts]; got != 4 {
		t.Errorf("AnswerMismatches[counts] = %d, want 4", got)
	}
	f.mu.Lock()
	left := len(f.mismatches)
	f.mu.Unlock()
	if left != 0 {
		t.Errorf("%d batches' mismatch counts kept after they left", left)
	}
}

// TestWindowMismatchNeverAcks: with batches in flight together (a real spool, Run),
// a cloud that answers every batch as if it had been empty makes the agent ack
// nothing: every reading ends in the dead letters, with the reason.
func TestWindowMismatchNeverAcks(t *testing.T) {
	s, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	const total = 32
	var rs [][]byte
	for n := range total {
		rs = append(rs, windowReading(n, 16))
	}
	if err := s.Append(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	c := newCloud(t, func(_ int, r received) (int, http.Header, string) {
		return http.StatusOK, nil, okAnswer(r.batchID, 0)
	})
	cfg := testConfig(c.srv.URL)
	cfg.MaxCount = 4
	cfg.MismatchRetries = 1
	f := New(NewSpoolQueue(s), cfg)
	stop := startRun(t, f)
	waitFor(t, "the spool to empty into dead letters", func() bool { st := s.Stats(); return st.Readings == 0 && st.OpenBatches == 0 })
	stop()

	st := s.Stats()
	if st.Acked != 0 || st.DeadLetters != total {
		t.Fatalf("spool acked %d and dead-lettered %d, want 0 and %d", st.Acked, st.DeadLetters, total)
	}
	dls, err := s.DeadLetters(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if !strings.Contains(d.Reason, "did not match the batch 2 times") || !strings.Contains(d.Reason, "0 accepted, 0 duplicates and 0 rejected for 4 readings sent") {
			t.Fatalf("dead letter reason %q", d.Reason)
		}
	}
	fst := f.Stats()
	if fst.Forwarded != 0 || fst.DeadLettered != total || fst.AnswerMismatches[MismatchCounts] != 2*total/4 {
		t.Errorf("forwarder stats %+v, want nothing forwarded, %d dead-lettered after %d mismatches", fst, total, 2*total/4)
	}
	// Each batch went exactly twice, under one id.
	tries := map[string]int{}
	for _, r := range c.received() {
		tries[r.batchID]++
	}
	if len(tries) != total/4 {
		t.Errorf("%d batch ids sent, want %d", len(tries), total/4)
	}
	for id, n := range tries {
		if n != 2 {
			t.Errorf("batch %s sent %d times, want 2", id, n)
		}
	}
}

// TestBatchIDsStableAcrossRetriesAndRestart: with the real spool, a batch keeps its
// id (128 random bits) and body across retries and across a restart of the
// forwarder and the spool.
func TestBatchIDsStableAcrossRetriesAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(t.Context(), readings(0, 8)); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		down = true
	)
	c := newCloud(t, func(_ int, r received) (int, http.Header, string) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			return http.StatusServiceUnavailable, nil, ""
		}
		return http.StatusOK, nil, ""
	})
	cfg := testConfig(c.srv.URL)
	cfg.MaxCount = 4
	cfg.Linger = 0
	f := New(NewSpoolQueue(s), cfg)
	stop := startRun(t, f)
	waitFor(t, "three attempts", func() bool { return len(c.received()) >= 3 })
	stop()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	before := c.received()
	sent := map[string]string{} // id → body
	for _, r := range before {
		raw, err := hex.DecodeString(r.batchID)
		if err != nil || len(raw) != 16 || r.header.Get("Idempotency-Key") != r.batchID {
			t.Fatalf("batch id %q (key %q): want 32 hex digits in body and header", r.batchID, r.header.Get("Idempotency-Key"))
		}
		if b, ok := sent[r.batchID]; ok && b != string(r.body) {
			t.Fatalf("batch %s resent with another body", r.batchID)
		}
		sent[r.batchID] = string(r.body)
	}

	s, err = spool.Open(path, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	mu.Lock()
	down = false
	mu.Unlock()
	f = New(NewSpoolQueue(s), cfg)
	stop = startRun(t, f)
	waitFor(t, "the spool to drain", func() bool { return s.Stats().Readings == 0 })
	stop()
	after := c.received()[len(before):]
	for _, r := range after {
		if b, ok := sent[r.batchID]; ok && b != string(r.body) {
			t.Fatalf("batch %s sent with another body after the restart", r.batchID)
		}
	}
	for id := range sent {
		found := false
		for _, r := range after {
			found = found || r.batchID == id
		}
		if !found {
			t.Errorf("batch %s, retried before the restart, was not sent again under its id", id)
		}
	}
	if st := s.Stats(); st.Acked != 8 || f.Stats().Forwarded != 8 {
		t.Errorf("acked %d, forwarded %d, want 8", st.Acked, f.Stats().Forwarded)
	}
}

// flushTwoBatches flushes eight readings to c as two batches of four, with a
// budget of two mismatch retries.
func flushTwoBatches(t *testing.T, c *cloud) (*memQueue, *Forwarder) {
	t.Helper()
	cfg := testConfig(c.srv.URL)
	cfg.MaxCount = 4
	cfg.MismatchRetries = 2
	return flushed(t, cfg, readings(0, 8)...)
}
