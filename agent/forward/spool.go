package forward

import (
	"time"

	"github.com/atrium-iot/atrium/agent/spool"
)

// SpoolQueue is the agent's spool as the forwarder's queue: batches are formed and
// kept in the spool until acknowledged, and the readings the cloud rejects in an
// answer that takes their batch stay there as dead letters with its reasons.
type SpoolQueue struct{ s *spool.Spool }

var (
	_ WindowQueue    = SpoolQueue{}
	_ RejectingQueue = SpoolQueue{}
)

// NewSpoolQueue is s as a queue to forward from.
func NewSpoolQueue(s *spool.Spool) SpoolQueue { return SpoolQueue{s} }

func fromSpool(b spool.Batch) Batch { return Batch{ID: b.ID, Readings: b.Readings} }

func fromSpoolAll(bs []spool.Batch) []Batch {
	out := make([]Batch, len(bs))
	for i, b := range bs {
		out[i] = fromSpool(b)
	}
	return out
}

func (q SpoolQueue) NextBatch(maxCount, maxBytes int) (Batch, bool, error) {
	b, ok, err := q.s.NextBatch(maxCount, maxBytes)
	return fromSpool(b), ok, err
}

func (q SpoolQueue) FormBatches(n, maxCount, maxBytes int) ([]Batch, error) {
	bs, err := q.s.FormBatches(n, maxCount, maxBytes)
	return fromSpoolAll(bs), err
}

func (q SpoolQueue) OpenBatches() ([]Batch, error) {
	bs, err := q.s.OpenBatches()
	return fromSpoolAll(bs), err
}

func (q SpoolQueue) AckBatch(id string) error                { return q.s.AckBatch(id) }
func (q SpoolQueue) DeadLetterBatch(id, reason string) error { return q.s.DeadLetterBatch(id, reason) }
func (q SpoolQueue) Ready() <-chan struct{}                  { return q.s.Ready() }

func (q SpoolQueue) Pending() (int, time.Time) {
	st := q.s.Stats()
	return int(st.Readings), st.OldestAppend
}

// AckBatchRejecting implements RejectingQueue: the readings the cloud rejected
// become dead letters with its reasons as their batch is acknowledged.
func (q SpoolQueue) AckBatchRejecting(id string, sent int, rejected []Rejection) error {
	rj := make([]spool.Rejection, len(rejected))
	for i, r := range rejected {
		rj[i] = spool.Rejection(r)
	}
	return q.s.AckBatchRejecting(id, sent, rj)
}
