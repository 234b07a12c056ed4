package agent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
// and only then hands each message to subscribers and sends its PUBACK. A PUBACK
// still means "on disk", devices can keep their whole window in flight, and the
// queue is FIFO, so each connection's PUBACKs go out in the order of its PUBLISHes
// (MQTT 3.1.1 §4.6).
type pipeline struct {
	a    *Agent
	mu   sync.Mutex
	q    []*job
	shut bool
	// quietUntil, when above 0, is the queue length below which add does not
	// wake run: while a commit fills under heavy load, run waits for its
	// timer or for that many messages, and waking it for each message that
	// joins would only cost the cores a goroutine switch (see filling).
	quietUntil int
	wake       chan struct{}
	done       chan struct{}

	// The group commit's view of the last commits, owned by run (conns is also
	// read under mu by missing): the connections of the last three commits, the
	// siblings among them, the commits so far, how many messages the last one
	// carried, and a moving average of the commit time.
	conns      map[*mqtt.Client]*connCommits
	siblings   []*mqtt.Client
	commits    uint64
	round      uint64
	lastJobs   int
	commitTime time.Duration
	timer      *time.Timer

	// Each connection's answers (PUBACK, then delivery to subscribers) are sent by
	// one sender at a time, in order, each sender serving one connection: a device
	// that stops reading its socket delays only its own answers, never the pipeline
	// or the other devices. A sender that has sent all of its connection's answers
	// waits for the next connection (up to idleSenders wait), so under load the
	// pipeline hands connections to running goroutines instead of starting one per
	// connection per commit.
	amu     sync.Mutex
	answers map[*mqtt.Client][]*job // present while a sender serves that connection
	work    chan *mqtt.Client       // to an idle sender; unbuffered
	idle    atomic.Int32            // senders waiting on work
	stop    chan struct{}           // closed when no more answers come: idle senders end
	senders sync.WaitGroup
}

// idleSenders bounds the senders that wait for work; more are started when all
// are busy, and end once their connection's answers are sent.
const idleSenders = 16

func newPipeline(a *Agent) *pipeline {
	p := &pipeline{a: a, wake: make(chan struct{}, 1), done: make(chan struct{}), answers: map[*mqtt.Client][]*job{},
		work: make(chan *mqtt.Client), stop: make(chan struct{}), conns: map[*mqtt.Client]*connCommits{}}
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
	quiet := p.quietUntil > 0 && len(p.q) < p.quietUntil
	p.mu.Unlock()
	if quiet {
		return true
	}
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

// The pipeline commits as soon as the previous commit has finished, whatever queued
// meanwhile (the leader/follower group commit of databases): a lone publisher's
// message is committed the moment it arrives, and under load each commit carries
// what arrived during the one before. It waits a little only when that pays
// (PostgreSQL's commit_delay with commit_siblings): the last commit was small
// (fewer than enough: gatherJobs messages, or fillJobs under heavy load), and some
// of its connections that publish back to back (siblings: they were also in one of
// the two commits before it) have not published again yet, while messages of
// others are queued. A sibling has just had
// its PUBACKs and usually publishes again within a round trip; without the wait, a
// few publishers with one message in flight each split into halves that take turns,
// each waiting for the other's commit. The wait ends as soon as every sibling has a
// message queued, enough are queued, or gatherLimit has passed. A lone publisher
// never waits (it is the only sibling, and its own message is the one queued), nor
// do devices that publish now and then (they are nobody's siblings).
const (
	gatherJobs = 64
	// gatherBusy is how many connections in the last three commits make heavy
	// load (see heavy).
	gatherBusy = 16
	// gatherMin and gatherMax bound the wait for siblings (see gatherLimit).
	gatherMin = 50 * time.Microsecond
	gatherMax = time.Millisecond
	// fillJobs and fillWait are a commit's size and longest wait under heavy
	// load (see filling).
	fillJobs = 256
	fillWait = 1500 * time.Microsecond
)

// gatherLimit is the longest the pipeline waits before a commit. For siblings:
// half the recent commit time, within [gatherMin, gatherMax]; waiting w for a
// sibling saves it a whole commit (it would otherwise wait for this one and then
// its own) and costs the messages already queued w, so w stays below the commit
// time. Under heavy load, fillWait (see filling).
func (p *pipeline) gatherLimit() time.Duration {
	if p.heavy() {
		return fillWait
	}
	return min(max(p.commitTime/2, gatherMin), gatherMax)
}

// gather waits for the siblings, when that pays (see gatherJobs), or for a
// commit's worth under heavy load (see filling).
func (p *pipeline) gather() {
	var deadline time.Time
	for p.waiting() > 0 || p.filling() {
		now := time.Now()
		if deadline.IsZero() {
			deadline = now.Add(p.gatherLimit())
		}
		d := deadline.Sub(now)
		if d <= 0 {
			return
		}
		if p.timer == nil {
			p.timer = time.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		p.quiet(p.filling())
		select {
		case <-p.wake:
			p.timer.Stop()
			p.quiet(false)
		case <-p.timer.C:
			p.quiet(false)
			return
		}
	}
}

// quiet tells add whether to wake run for every message (false) or only once
// fillJobs are queued (true).
func (p *pipeline) quiet(on bool) {
	p.mu.Lock()
	p.quietUntil = 0
	if on {
		p.quietUntil = fillJobs
	}
	p.mu.Unlock()
}

// waiting is how many siblings gather waits for now: 0 after a commit of
// enough or more, with nothing queued, enough queued, the pipeline closing, or
// every sibling queued.
func (p *pipeline) waiting() int {
	enough := p.enough()
	if p.lastJobs >= enough || len(p.siblings) == 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.q); n == 0 || n >= enough || p.shut {
		return 0
	}
	return p.missing()
}

// heavy reports heavy load: at least gatherBusy connections published in the
// last three commits (conns is written by run alone, under mu for missing, so
// run reads it without the lock).
func (p *pipeline) heavy() bool {
	return len(p.conns) >= gatherBusy
}

// enough is the commit that needs no wait: gatherJobs, or fillJobs under heavy
// load (see filling).
func (p *pipeline) enough() int {
	if p.heavy() {
		return fillJobs
	}
	return gatherJobs
}

// filling reports whether the pipeline should wait for more messages although
// every sibling has one queued: under heavy load (see heavy), with some
// connections publishing back to back, after a commit of fewer than fillJobs,
// while fewer than fillJobs are queued, for at most fillWait. Each commit costs
// the CPU about the same (the bbolt commit, two fdatasyncs, waking the senders:
// ~0.4 ms of CPU on the machine of docs/benchmarks.md) however many messages it
// carries. Committing whatever queued during the last commit, 32 connections × 8
// in flight made commits of ~30 messages, and that fixed cost took a fifth of the
// CPU; under heavy load the pipeline therefore waits for siblings and for more
// messages up to fillWait and fillJobs (instead of half a commit time and
// gatherJobs), commits carry ~90–100 and the CPU goes to the messages (issue 17
// in docs/benchmarks.md). The wait costs a heavy-load message up to fillWait,
// while its round trip, bounded by the cores, shrinks. A few publishers, let
// alone a lone one, never cause it, nor do devices that publish now and then.
func (p *pipeline) filling() bool {
	if p.lastJobs >= fillJobs || !p.heavy() || len(p.siblings) == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.q)
	return n > 0 && n < fillJobs && !p.shut
}

// missing counts the siblings with nothing queued. Caller holds mu.
func (p *pipeline) missing() int {
	p.round++
	missing := len(p.siblings)
	for _, j := range p.q {
		if c := p.conns[j.cl]; c != nil && c.sibling && c.round != p.round {
			c.round = p.round
			missing--
		}
	}
	return missing
}

// connCommits is what the group commit knows of a connection that was in one of the
// last three commits.
type connCommits struct {
	last, before uint64 // the last two commits it was in
	sibling      bool   // in the last commit and in one of the two before
	round        uint64 // the call of missing that last found it queued
}

// committed records the connections of a commit of n messages that took took.
func (p *pipeline) committed(jobs []*job, took time.Duration) {
	if p.commitTime == 0 {
		p.commitTime = took
	} else {
		p.commitTime += (took - p.commitTime) / 8
	}
	p.commits++
	p.lastJobs = len(jobs)
	p.mu.Lock() // missing reads conns under mu
	defer p.mu.Unlock()
	for _, j := range jobs {
		if j.cl == nil {
			continue
		}
		c := p.conns[j.cl]
		if c == nil {
			c = &connCommits{}
			p.conns[j.cl] = c
		}
		if c.last != p.commits {
			c.before, c.last = c.last, p.commits
		}
	}
	p.siblings = p.siblings[:0]
	for cl, c := range p.conns {
		switch {
		case c.last+2 < p.commits:
			delete(p.conns, cl)
		case c.last == p.commits && c.before > 0 && c.before+2 >= p.commits:
			c.sibling = true
			p.siblings = append(p.siblings, cl)
		default:
			c.sibling = false
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
	close(p.stop)
	p.senders.Wait()
}

func (p *pipeline) process(jobs []*job) {
	a := p.a
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.AppendTimeout)
	defer cancel()
	t0 := time.Now()
	_ = a.commit(ctx, jobs)
	p.committed(jobs, time.Since(t0))
	for _, j := range jobs {
		if j.err != nil {
			a.metrics.refused.Inc()
			a.log.Warn("message not spooled; refusing it", "topic", j.topic, "err", j.err)
		}
		a.taken(j)
		p.answer(j)
	}
}

// answer queues j's answer for its connection's sender, handing the connection to
// an idle sender or starting one if none serves it yet.
func (p *pipeline) answer(j *job) {
	p.amu.Lock()
	queued, served := p.answers[j.cl]
	p.answers[j.cl] = append(queued, j)
	p.amu.Unlock()
	if served {
		return
	}
	select {
	case p.work <- j.cl:
	default:
		p.senders.Add(1)
		go p.sender(j.cl)
	}
}

// sender sends cl's answers until none are left, then waits for the next
// connection, unless idleSenders already wait.
func (p *pipeline) sender(cl *mqtt.Client) {
	defer p.senders.Done()
	var acks []broker.Puback
	for {
		acks = p.drain(cl, acks)
		if p.idle.Add(1) > idleSenders {
			p.idle.Add(-1)
			return
		}
		select {
		case cl = <-p.work:
			p.idle.Add(-1)
		case <-p.stop:
			p.idle.Add(-1)
			return
		}
	}
}

// drain sends cl's queued answers, batch by batch, until none are left, and
// then marks cl as served by nobody. acks is scratch space, returned for reuse.
func (p *pipeline) drain(cl *mqtt.Client, acks []broker.Puback) []broker.Puback {
	spare := []*job{} // the last batch's array, for the answers queued meanwhile
	for {
		p.amu.Lock()
		batch := p.answers[cl]
		if len(batch) == 0 {
			delete(p.answers, cl)
			p.amu.Unlock()
			return acks
		}
		p.answers[cl] = spare // empty but present: still served
		p.amu.Unlock()
		acks = p.send(cl, batch, acks[:0])
		clear(batch)
		spare = batch[:0]
	}
}

// send hands a connection's answered messages that were taken to the broker's
// subscribers, and then writes their PUBACKs (successes, or refusals), in order,
// with one write. Delivery first: once a device has the PUBACK of a message, the
// subscribers' queues have it, so a publish the device sends next (a QoS 2 one,
// which mochi delivers at once) cannot reach them before it. acks is scratch
// space, returned for the next call.
func (p *pipeline) send(cl *mqtt.Client, batch []*job, acks []broker.Puback) []broker.Puback {
	a := p.a
	for _, j := range batch {
		if j.err == nil {
			a.deliver(j)
		}
	}
	for _, j := range batch {
		if j.qos != 1 {
			continue
		}
		code := packets.CodeSuccess
		if j.err != nil {
			code = packets.ErrUnspecifiedError
			if errors.Is(j.err, spool.ErrFull) {
				code = packets.ErrQuotaExceeded
			}
		}
		acks = append(acks, broker.Puback{PacketID: j.packetID, Code: code})
	}
	if err := a.broker.Acks(cl, acks); err != nil {
		a.log.Debug("pubacks not sent", "count", len(acks), "err", err)
	}
	return acks
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
	n := 0
	for _, j := range jobs {
		n += len(j.data)
	}
	all := make([][]byte, 0, n)
	with := make([]*job, 0, len(jobs))
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
