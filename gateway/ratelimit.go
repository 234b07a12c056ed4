package gateway

import (
	"crypto/sha256"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is one token bucket per API key: every key may make limit requests a
// second on average, and burst at once.
type limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	l := &limiter{limit: rate.Limit(perSecond), burst: max(burst, 1), byKey: map[[sha256.Size]byte]*rate.Limiter{}}
	if perSecond <= 0 {
		l.limit = rate.Inf
	}
	return l
}

// verdict is the outcome of one request against its key's bucket.
type verdict struct {
	ok         bool
	remaining  int
	reset      time.Duration // until the bucket is full again
	retryAfter time.Duration // until one request fits, when !ok
}

func (l *limiter) unlimited() bool { return l.limit == rate.Inf }

func (l *limiter) allow(id identity, now time.Time) verdict {
	if l.unlimited() {
		return verdict{ok: true, remaining: l.burst}
	}
	l.mu.Lock()
	lim, found := l.byKey[id.sum]
	if !found {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.byKey[id.sum] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return verdict{retryAfter: d, reset: l.untilFull(lim, now)}
	}
	return verdict{ok: true, remaining: int(math.Max(0, math.Floor(lim.TokensAt(now)))), reset: l.untilFull(lim, now)}
}

func (l *limiter) untilFull(lim *rate.Limiter, now time.Time) time.Duration {
	missing := float64(l.burst) - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(l.limit) * float64(time.Second))
}

// retain forgets the buckets of keys that are no longer in the keys file.
func (l *limiter) retain(kr *keyring) {
	keep := make(map[[sha256.Size]byte]bool, len(kr.ids))
	for _, id := range kr.ids {
		keep[id.sum] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.byKey {
		if !keep[k] {
			delete(l.byKey, k)
		}
	}
}
