package broker

import (
	"hash/maphash"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Login throttling parameters (see the package documentation, "Login").
const (
	// loginDelayBase is the delay after one recent failure; each further failure doubles it.
	loginDelayBase = 50 * time.Millisecond
	// loginDelayMax caps the delay.
	loginDelayMax = 2 * time.Second
	// loginHalfLife is how fast failures are forgotten: a failure weighs half as much
	// after this long, so an address or username left alone is clean within minutes.
	loginHalfLife = 30 * time.Second
	// loginMaxWait is the longest an attempt from a penalised address is held before
	// its turn; beyond it the attempt is refused as "server busy" without a bcrypt run.
	loginMaxWait = 5 * time.Second
	// loginTracked bounds how many addresses, and how many usernames, are remembered.
	loginTracked = 10_000
)

// loginGuard throttles failed MQTT logins and schedules bcrypt checks fairly.
//
//   - Per remote address (IPv6 by /64): each recent failure doubles the spacing between
//     that address's next password checks (loginDelayBase up to loginDelayMax); attempts
//     are spaced even when they arrive together, and one that would wait more than
//     loginMaxWait is refused at once as busy.
//   - Per username: a failed attempt's answer is held back by the username's delay
//     (a tarpit). A right password is never held back by it, so a device whose
//     username is being guessed from elsewhere still connects at once.
//   - At most half of GOMAXPROCS (at least one) bcrypt checks run at once, so that a
//     flood of guesses leaves the other cores to the broker's and the agent's real work
//     (with every core busy in bcrypt, each hand-over between the goroutines that
//     serve a connection waits for a preemption, and even a remembered login took
//     ~180 ms on two cores). One more slot is kept for attempts from addresses
//     without recent failures, and when a slot frees such an attempt goes first (the
//     others keep their order): a device connecting from its own address while
//     another address floods waits for no guess, only for its own check.
//
// Failures decay with loginHalfLife; successes do not wipe them (a device behind the
// same NAT as an attacker must not clear the attacker's record).
type loginGuard struct {
	base, max, halfLife, maxWait time.Duration
	tracked                      int
	now                          func() time.Time
	seed                         maphash.Seed
	done                         chan struct{} // closed by shutdown
	closing                      sync.Once

	mu      sync.Mutex
	addrs   map[string]*penalty
	users   map[uint64]*penalty // by a keyed hash: a username may be 64 KiB long
	free    int                 // bcrypt slots free
	spare   bool                // the slot kept for clean addresses is free
	waiting []*waiter           // attempts waiting for a slot, in arrival order
}

type penalty struct {
	score float64   // recent failures, decayed to at
	at    time.Time // when score was last brought up to date
	next  time.Time // earliest start of the next password check (addresses only)
}

type waiter struct {
	addr  string
	spare bool // given the spare slot
	ready chan struct{}
}

func newLoginGuard() *loginGuard {
	return &loginGuard{
		base: loginDelayBase, max: loginDelayMax, halfLife: loginHalfLife, maxWait: loginMaxWait,
		tracked: loginTracked,
		now:     time.Now,
		seed:    maphash.MakeSeed(),
		done:    make(chan struct{}),
		addrs:   map[string]*penalty{},
		users:   map[uint64]*penalty{},
		free:    max(1, runtime.GOMAXPROCS(0)/2),
		spare:   true,
	}
}

// addrKey is the throttling key of a remote address "host:port": the IP, or its /64
// for IPv6, since one host usually holds a whole /64.
func addrKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

func (g *loginGuard) decayed(p *penalty, now time.Time) float64 {
	if p == nil {
		return 0
	}
	return p.score * math.Exp2(-float64(now.Sub(p.at))/float64(g.halfLife))
}

// delay is the throttling delay for a decayed failure score: none under half a
// failure, then base doubling per failure, capped at max.
func (g *loginGuard) delay(score float64) time.Duration {
	if score < 0.5 || g.base <= 0 {
		return 0
	}
	d := float64(g.base) * math.Exp2(min(math.Round(score)-1, 30))
	return min(time.Duration(d), g.max)
}

// admit reserves the start of a password check from addr: now for an address without
// recent failures, otherwise spaced by the address's delay after the previous reserved
// start. ok is false when that start is more than maxWait away.
func (g *loginGuard) admit(addr string) (wait time.Duration, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.addrs[addr]
	if p == nil {
		return 0, true
	}
	now := g.now()
	start := later(now, p.next)
	if wait = start.Sub(now); wait > g.maxWait {
		return 0, false
	}
	p.next = start.Add(g.delay(g.decayed(p, now)))
	return wait, true
}

// failed records a failed login from addr for user and returns how long to hold the
// refusal back (the username's delay).
func (g *loginGuard) failed(addr, user string) (tarpit time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	pa := entry(g, g.addrs, addr, now)
	pa.score, pa.at = g.decayed(pa, now)+1, now
	pa.next = later(pa.next, now.Add(g.delay(pa.score)))
	pu := entry(g, g.users, maphash.String(g.seed, user), now)
	pu.score, pu.at = g.decayed(pu, now)+1, now
	return g.delay(pu.score)
}

// entry returns the penalty of key in m, adding it; a full map first forgets entries
// whose failures have decayed away, then, if still full, an arbitrary one.
func entry[K comparable](g *loginGuard, m map[K]*penalty, key K, now time.Time) *penalty {
	if p := m[key]; p != nil {
		return p
	}
	if len(m) >= g.tracked {
		for k, p := range m {
			if g.decayed(p, now) < 0.05 && !p.next.After(now) {
				delete(m, k)
			}
		}
		for k := range m {
			if len(m) < g.tracked {
				break
			}
			delete(m, k)
		}
	}
	p := &penalty{at: now}
	m[key] = p
	return p
}

// suspect reports whether addr has recent failures. g.mu is held.
func (g *loginGuard) suspect(addr string, now time.Time) bool {
	return g.decayed(g.addrs[addr], now) >= 0.5
}

// acquire waits for a bcrypt slot and reports which one it got (spare: the slot kept
// for addresses without recent failures); ok is false when the broker shuts down
// meanwhile.
func (g *loginGuard) acquire(addr string) (spare, ok bool) {
	select {
	case <-g.done:
		return false, false
	default:
	}
	g.mu.Lock()
	if g.free > 0 {
		g.free--
		g.mu.Unlock()
		return false, true
	}
	if g.spare && !g.suspect(addr, g.now()) {
		g.spare = false
		g.mu.Unlock()
		return true, true
	}
	w := &waiter{addr: addr, ready: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return w.spare, true
	case <-g.done:
	}
	g.mu.Lock()
	if i := slices.Index(g.waiting, w); i >= 0 {
		g.waiting = slices.Delete(g.waiting, i, i+1)
		g.mu.Unlock()
		return false, false
	}
	g.mu.Unlock()
	g.release(w.spare) // the slot came meanwhile: pass it on
	return false, false
}

// sleep waits d, or less if the broker shuts down meanwhile.
func (g *loginGuard) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-g.done:
	}
}

// shutdown ends every wait, so that Close is not held up by attempts waiting their turn.
func (g *loginGuard) shutdown() { g.closing.Do(func() { close(g.done) }) }

// release hands the slot on: to the first waiting attempt from an address without
// recent failures, or else (not the spare slot) to the first waiting attempt.
func (g *loginGuard) release(spare bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	i := slices.IndexFunc(g.waiting, func(w *waiter) bool { return !g.suspect(w.addr, now) })
	if i < 0 && !spare && len(g.waiting) > 0 {
		i = 0
	}
	if i < 0 {
		if spare {
			g.spare = true
		} else {
			g.free++
		}
		return
	}
	w := g.waiting[i]
	g.waiting = slices.Delete(g.waiting, i, i+1)
	w.spare = spare
	close(w.ready)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// waitingChecks is how many attempts wait for a bcrypt slot.
func (g *loginGuard) waitingChecks() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}
