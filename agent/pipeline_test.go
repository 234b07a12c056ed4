package agent

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestGroupCommitWaitsOnlyForSiblings drives the group commit's bookkeeping with
// the commits a run would make and checks whom the pipeline would wait for before
// the next commit: never for a lone publisher or devices that publish now and
// then, only for connections that publish back to back and have not published
// again yet, and never after a large commit (gatherJobs, or fillJobs under heavy
// load). (How long it waits, and what that
// gives, is BenchmarkLatency's business.)
func TestGroupCommitWaitsOnlyForSiblings(t *testing.T) {
	conns := make([]*mqtt.Client, 70)
	for i := range conns {
		conns[i] = &mqtt.Client{ID: fmt.Sprintf("c%d", i)}
	}
	jobs := func(idx ...int) []*job {
		out := make([]*job, len(idx))
		for i, c := range idx {
			out[i] = &job{cl: conns[c]}
		}
		return out
	}
	seq := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	cycle := func(conns, n int) []int { // n messages of the first conns connections
		var out []int
		for i := range n {
			out = append(out, i%conns)
		}
		return out
	}
	tests := []struct {
		name    string
		commits [][]int // connections of each commit, in order
		queued  []int   // connections with a message queued now
		shut    bool
		want    int // siblings waited for
	}{
		{"lone publisher", [][]int{{0}, {0}, {0}}, []int{0}, false, 0},
		{"lone publisher, first message", nil, []int{0}, false, 0},
		{"two publishers taking turns, one back", [][]int{{0}, {1}, {0}}, []int{1}, false, 1},
		{"two publishers, both back", [][]int{{0}, {1}, {0}}, []int{1, 0}, false, 0},
		{"eight publishers merged, one back", [][]int{seq(0, 8), seq(0, 8)}, []int{3}, false, 7},
		{"eight publishers merged, all back", [][]int{seq(0, 8), seq(0, 8)}, seq(0, 8), false, 0},
		{"eight publishers, nothing queued", [][]int{seq(0, 8), seq(0, 8)}, nil, false, 0},
		{"devices publishing now and then", [][]int{{0}, {1}, {2}, {3}}, []int{4}, false, 0},
		{"a device back after three commits", [][]int{{0}, {1}, {2}, {3}, {0}}, []int{1}, false, 0},
		{"after a large commit of a few publishers", [][]int{cycle(8, 64), cycle(8, 64)}, []int{0}, false, 0},
		{"heavy load: sixty-four publishers, one back", [][]int{seq(0, 64), seq(0, 64)}, []int{0}, false, 63},
		{"closing", [][]int{seq(0, 8), seq(0, 8)}, []int{3}, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &pipeline{conns: map[*mqtt.Client]*connCommits{}}
			for _, c := range tc.commits {
				p.committed(jobs(c...), time.Millisecond)
			}
			p.q, p.shut = jobs(tc.queued...), tc.shut
			if got := p.waiting(); got != tc.want {
				t.Errorf("waits for %d siblings, want %d", got, tc.want)
			}
			if got := p.waiting(); got != tc.want { // asking again counts the same
				t.Errorf("second ask: waits for %d siblings, want %d", got, tc.want)
			}
		})
	}
}

// TestGatherLimit: the wait for siblings is half the recent commit time, within
// [gatherMin, gatherMax]; under heavy load, fillWait.
func TestGatherLimit(t *testing.T) {
	for _, tc := range []struct{ commit, want time.Duration }{
		{0, gatherMin},
		{40 * time.Microsecond, gatherMin},
		{600 * time.Microsecond, 300 * time.Microsecond},
		{10 * time.Millisecond, gatherMax},
	} {
		p := &pipeline{commitTime: tc.commit}
		if got := p.gatherLimit(); got != tc.want {
			t.Errorf("commit time %v: limit %v, want %v", tc.commit, got, tc.want)
		}
	}
	heavy := &pipeline{commitTime: 600 * time.Microsecond, conns: map[*mqtt.Client]*connCommits{}}
	for i := range gatherBusy {
		heavy.conns[&mqtt.Client{ID: fmt.Sprint(i)}] = &connCommits{}
	}
	if got := heavy.gatherLimit(); got != fillWait {
		t.Errorf("heavy load: limit %v, want %v", got, fillWait)
	}
}

// TestNoWaitAfterAFullCommit: under heavy load, a commit of fillJobs or more
// is followed by one that waits for nothing.
func TestNoWaitAfterAFullCommit(t *testing.T) {
	conns := make([]*mqtt.Client, 40)
	for i := range conns {
		conns[i] = &mqtt.Client{ID: fmt.Sprintf("c%d", i)}
	}
	var full, queued []*job
	for i := range fillJobs {
		full = append(full, &job{cl: conns[i%len(conns)]})
	}
	for i := range len(conns) - 1 {
		queued = append(queued, &job{cl: conns[i]})
	}
	p := &pipeline{conns: map[*mqtt.Client]*connCommits{}}
	p.committed(full, time.Millisecond)
	p.committed(full, time.Millisecond)
	p.q = queued
	if p.filling() || p.waiting() > 0 {
		t.Errorf("after a commit of %d: fills %v, waits for %d siblings", fillJobs, p.filling(), p.waiting())
	}
}

// TestGroupCommitFillsOnlyUnderHeavyLoad: with every sibling queued, the pipeline
// still waits for a fuller commit only when at least gatherBusy connections publish
// back to back and the last commit was small; never for a lone publisher, a few
// publishers, with a full queue, or while closing. Under heavy load it waits for a
// missing sibling until fillJobs are queued.
func TestGroupCommitFillsOnlyUnderHeavyLoad(t *testing.T) {
	conns := make([]*mqtt.Client, 2*gatherJobs)
	for i := range conns {
		conns[i] = &mqtt.Client{ID: fmt.Sprintf("c%d", i)}
	}
	jobs := func(from, to int) []*job {
		var out []*job
		for i := from; i < to; i++ {
			out = append(out, &job{cl: conns[i]})
		}
		return out
	}
	tests := []struct {
		name           string
		conns          int // connections in each of the last two commits
		queued         int // messages queued now (from the first connections)
		shut           bool
		fill, siblings bool
	}{
		{"lone publisher", 1, 1, false, false, false},
		{"eight publishers", 8, 8, false, false, false},
		{"busy: fifteen publishers", gatherBusy - 1, gatherBusy - 1, false, false, false},
		{"busy: sixteen publishers, all back", gatherBusy, gatherBusy, false, true, false},
		{"busy: forty publishers, all back", 40, 40, false, true, false},
		{"busy, nothing queued", 40, 0, false, false, false},
		{"busy, a small commit's worth queued", 40, gatherJobs, false, true, false},
		{"busy, a commit's worth queued", 40, fillJobs, false, false, false},
		{"busy: sixty-four publishers, one not back", gatherJobs, gatherJobs - 1, false, true, true},
		{"closing", 40, 40, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &pipeline{conns: map[*mqtt.Client]*connCommits{}}
			p.committed(jobs(0, tc.conns), time.Millisecond)
			p.committed(jobs(0, tc.conns), time.Millisecond)
			q := jobs(0, min(tc.queued, tc.conns))
			for len(q) < tc.queued { // more messages of the same connections
				q = append(q, &job{cl: conns[len(q)%tc.conns]})
			}
			p.q, p.shut = q, tc.shut
			if got := p.filling(); got != tc.fill {
				t.Errorf("fills: %v, want %v", got, tc.fill)
			}
			if got := p.waiting() > 0; got != tc.siblings {
				t.Errorf("waits for siblings: %v, want %v", got, tc.siblings)
			}
		})
	}
}

// TestQuietWhileFilling: while a commit fills under heavy load, a message that
// joins the queue does not wake the pipeline until fillJobs are queued; outside
// that wait every message does.
func TestQuietWhileFilling(t *testing.T) {
	p := &pipeline{wake: make(chan struct{}, 1)}
	woken := func() bool {
		select {
		case <-p.wake:
			return true
		default:
			return false
		}
	}
	if !p.add(&job{}) || !woken() {
		t.Fatal("a message outside a fill did not wake the pipeline")
	}
	p.quiet(true)
	for i := len(p.q); i < fillJobs-1; i++ {
		p.add(&job{})
		if woken() {
			t.Fatalf("message %d of a filling commit woke the pipeline", i+1)
		}
	}
	p.add(&job{})
	if !woken() {
		t.Fatalf("the %dth message did not wake the pipeline", fillJobs)
	}
	p.quiet(false)
	p.add(&job{})
	if !woken() {
		t.Fatal("after the fill a message did not wake the pipeline")
	}
}
