package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/broker"
)

// pipeline takes QoS 0 and 1 publishes off the connections' read loops. mochi
// handles one packet of a connection at a time, so an ingest hook that waits for
// the fsync limits every device to one message per commit. Instead the hook hands
// the decoded message to the pipeline and tells mochi not to answer it; the
// pipeline spools whatever queued meanwhile, from every connection, in one commit,
// and only then sends each PUBACK and hands the message to subscribers. A PUBACK
// still means "on disk", devices can keep their whole window in flight, and the
// queue is FIFO, so each connection's PUBACKs go out in the order of its PUBLISHes
// (MQTT 3.1.1 §4.6).
type pipeline struct {
	a    *Agent
	mu   sync.Mutex
	q    []*job
	shut bool
	wake chan struct{}
	done chan struct{}

	// Each connection's answers (PUBACK, then delivery to subscribers) are sent by
	// a goroutine of its own, in order: a device that stops reading its socket
	// delays only its own answers, never the pipeline or the other devices.
	amu     sync.Mutex
	answers map[*mqtt.Client][]*job // present while that connection's sender runs
	senders sync.WaitGroup
}

func newPipeline(a *Agent) *pipeline {
	p := &pipeline{a: a, wake: make(chan struct{}, 1), done: make(chan struct{}), answers: map[*mqtt.Client][]*job{}}
	go p.run()
	return p
}

// add queues a job; false once the pipeline is closed (the caller handles it).
func (p *pipeline) add(j *job) bool {
	p.mu.Lock()
	if p.shut {
		p.mu.Unlock()
		return false
	}
	p.q = append(p.q, j)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

func (p *pipeline) run() {
	defer close(p.done)
	for range p.wake {
		for {
			p.gather()
			p.mu.Lock()
			jobs, shut := p.q, p.shut
			p.q = nil
			p.mu.Unlock()
			if len(jobs) == 0 {
				if shut {
					return
				}
				break
			}
			p.process(jobs)
		}
	}
}

// Before each commit the pipeline waits up to gatherWait for gatherJobs messages
// to queue, when some already are: a commit costs two fdatasyncs and a bbolt
// transaction however many messages it carries, and on a disk that syncs fast,
// commits under load carried only 20–40 messages each. It adds at most
// gatherWait to a PUBACK. Measured (docs/benchmarks-agent.md): agent/bare mochi
// messages/s with 50 publishing connections 0.46× with no wait, 0.57× with
// 300 µs, 0.63× with 2 ms; and at 1,000 devices × 1 msg/s the agent's CPU went
// from 27–30 % to 23 % of a core.
const (
	gatherWait = 2 * time.Millisecond
	gatherJobs = 64
)

// gather waits, with jobs queued, until gatherJobs are, gatherWait has passed,
// or the pipeline is closing.
func (p *pipeline) gather() {
	deadline := time.Now().Add(gatherWait)
	for {
		p.mu.Lock()
		n, shut := len(p.q), p.shut
		p.mu.Unlock()
		d := time.Until(deadline)
		if n == 0 || n >= gatherJobs || shut || d <= 0 {
			return
		}
		t := time.NewTimer(d)
		select {
		case <-p.wake:
			t.Stop()
		case <-t.C:
			return
		}
	}
}

// close stops taking jobs, finishes the queued ones and waits. Call it after the
// broker stopped taking input.
func (p *pipeline) close() {
	p.mu.Lock()
	p.shut = true
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	<-p.done
	p.senders.Wait()
}

func (p *pipeline) process(jobs []*job) {
	a := p.a
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.AppendTimeout)
	defer cancel()
	_ = a.commit(ctx, jobs)
	for _, j := range jobs {
		if j.err != nil {
			a.metrics.refused.Inc()
			a.log.Warn("message not spooled; refusing it", "topic", j.topic, "err", j.err)
		}
		a.taken(j)
		p.answer(j)
	}
}

// answer queues j's answer on its connection's sender, starting one if needed.
func (p *pipeline) answer(j *job) {
	p.amu.Lock()
	queued, running := p.answers[j.cl]
	p.answers[j.cl] = append(queued, j)
	p.amu.Unlock()
	if running {
		return
	}
	p.senders.Add(1)
	go func() {
		defer p.senders.Done()
		for {
			p.amu.Lock()
			batch := p.answers[j.cl]
			if len(batch) == 0 {
				delete(p.answers, j.cl)
				p.amu.Unlock()
				return
			}
			p.answers[j.cl] = []*job{} // empty but present: still running
			p.amu.Unlock()
			for _, x := range batch {
				p.send(x)
			}
		}
	}()
}

// send writes one message's PUBACK (success, or the refusal) and, when it was
// taken, hands it to the broker's subscribers.
func (p *pipeline) send(j *job) {
	a := p.a
	code := packets.CodeSuccess
	if j.err != nil {
		code = packets.ErrUnspecifiedError
		if errors.Is(j.err, spool.ErrFull) {
			code = packets.ErrQuotaExceeded
		}
	}
	if err := broker.Ack(j.cl, j.qos, j.packetID, code); err != nil {
		a.log.Debug("puback not sent", "topic", j.topic, "err", err)
	}
	if j.err == nil {
		if err := a.broker.Deliver(j.topic, j.payload, j.retain, j.qos); err != nil {
			a.log.Debug("delivery to subscribers failed", "topic", j.topic, "err", err)
		}
	}
}

// commit makes the jobs durable: their dead letters, then all their readings in
// one spool append (group-committed with any other appender). It sets each job's
// err; the returned error is that of the first failed job.
func (a *Agent) commit(ctx context.Context, jobs []*job) error {
	var (
		wg  sync.WaitGroup
		emu sync.Mutex // guards the jobs' err while their dead letters are written
	)
	for _, j := range jobs {
		for i := range j.dead {
			wg.Go(func() { // concurrent calls share one spool commit
				if err := a.spool.DeadLetter(ctx, j.dead[i]); err != nil {
					emu.Lock()
					j.err = err
					emu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	var all [][]byte
	var with []*job
	for _, j := range jobs {
		if j.err == nil && len(j.data) > 0 {
			all = append(all, j.data...)
			with = append(with, j)
		}
	}
	if len(all) > 0 {
		err := a.spool.Append(ctx, all)
		switch {
		case err == nil:
		case errors.Is(err, spool.ErrFull) && len(with) > 1:
			// Full under reject-new: take what still fits, message by message.
			for _, j := range with {
				j.err = a.spool.Append(ctx, j.data)
			}
		default:
			for _, j := range with {
				j.err = err
			}
		}
	}
	for _, j := range jobs {
		if j.err != nil {
			return j.err
		}
	}
	return nil
}
