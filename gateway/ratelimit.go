package gateway

import (
	"crypto/sha256"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is one token bucket per API key: every key may make limit requests a
// second on average, and burst at once. The buckets sit in a sync.Map (written
// once per key, then only read), so requests of different keys share no lock.
type limiter struct {
	limit     rate.Limit
	burst     int
	burstText string   // burst, for the RateLimit-Limit header
	byKey     sync.Map // [sha256.Size]byte → *rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	l := &limiter{limit: rate.Limit(perSecond), burst: max(burst, 1)}
	l.burstText = strconv.Itoa(l.burst)
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
	v, found := l.byKey.Load(id.sum)
	if !found {
		v, _ = l.byKey.LoadOrStore(id.sum, rate.NewLimiter(l.limit, l.burst))
	}
	lim := v.(*rate.Limiter)
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return verdict{retryAfter: d, reset: l.untilFull(lim.TokensAt(now))}
	}
	tokens := lim.TokensAt(now)
	return verdict{ok: true, remaining: int(math.Max(0, math.Floor(tokens))), reset: l.untilFull(tokens)}
}

// untilFull is how long a bucket holding tokens takes to fill up.
func (l *limiter) untilFull(tokens float64) time.Duration {
	missing := float64(l.burst) - tokens
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
	for _, id := range kr.subjects {
		keep[id.sum] = true
	}
	l.byKey.Range(func(k, _ any) bool {
		if !keep[k.([sha256.Size]byte)] {
			l.byKey.Delete(k)
		}
		return true
	})
}
