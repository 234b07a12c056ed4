package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx"
)

// handleUpstream authenticates the request's key, checks its scope and rate, bounds
// its body and hands it to the upstream's proxy. route is the pattern it serves,
// for the access log.
func (g *Gateway) handleUpstream(up *upstream, route string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		info := infoFrom(w)
		if info != nil {
			info.upstream, info.route = up.name, route
		}
		// Only the WebSocket route is one: elsewhere an Upgrade header is
		// dropped, and the request is the plain request it is, key and all.
		upgrade := r.URL.Path == WebSocketPath && isWebSocketUpgrade(r)
		if !upgrade {
			delete(r.Header, "Upgrade")
		}
		token, given := presentedKey(r, upgrade)
		var id identity
		var ok bool
		if given {
			id, ok = g.keys.ring().lookup(token)
		} else if c := clientCert(r); c != nil {
			if id, ok = g.keys.ring().lookupCert(c); !ok {
				g.unmappedCert(w, r, c)
				return
			}
			given = true
		}
		if !given || !ok {
			g.unauthorized(w, r, given)
			return
		}
		// The upstream learns the key's name, never the key: keep it out of its
		// logs. The proxy copies these headers into the outgoing request.
		delete(r.Header, authorizationHeader)
		if info != nil {
			info.key = id.name
		}
		info.setHeader(r.Header, keyNameHeader, slotKeyName, id.name)
		if need := RequiredScope(r.Method, r.URL.Path); !id.scopes.has(need) {
			g.metrics.denied.WithLabelValues("scope").Inc()
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="atrium", error="insufficient_scope", scope="%s"`, need))
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusForbidden,
				fmt.Sprintf("the key %q lacks the %s scope that %s %s needs", id.name, need, r.Method, r.URL.Path)))
			return
		}
		if !g.admit(w, r, info, id) {
			return
		}
		if r.ContentLength > g.opts.MaxBody {
			g.metrics.denied.WithLabelValues("too_large").Inc()
			httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusRequestEntityTooLarge,
				fmt.Sprintf("request body of %d bytes is too large: at most %d accepted", r.ContentLength, g.opts.MaxBody)))
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, g.opts.MaxBody)
		}
		if upgrade {
			// The server's read timeout would cut a long-lived WebSocket; and the
			// server's shutdown does not reach a hijacked connection, so tie it to
			// the gateway's life.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			stop := context.AfterFunc(g.stopping, cancel)
			defer stop()
			r = r.WithContext(ctx)
		}
		if up.local != nil && !upgrade {
			up.serveLocal(w, r)
			return
		}
		up.proxy.ServeHTTP(w, r)
	})
}

// Canonical header keys, for direct map access on the hot path.
var (
	authorizationHeader = "Authorization"
	keyNameHeader       = textproto.CanonicalMIMEHeaderKey(KeyNameHeader)
	requestIDHeader     = textproto.CanonicalMIMEHeaderKey(httpx.RequestIDHeader)
	rateLimitHeader     = textproto.CanonicalMIMEHeaderKey("RateLimit-Limit")
	rateRemainingHeader = textproto.CanonicalMIMEHeaderKey("RateLimit-Remaining")
	rateResetHeader     = textproto.CanonicalMIMEHeaderKey("RateLimit-Reset")
)

// WebSocketPath is the one WebSocket route: the only one that takes a key as
// ?access_token=.
const WebSocketPath = "/ws/notifications"

// presentedKey is the key from "Authorization: Bearer <key>", or, for a WebSocket
// upgrade of WebSocketPath only (browsers cannot set headers there), from
// ?access_token=.
func presentedKey(r *http.Request, upgrade bool) (string, bool) {
	if h := r.Header.Get(authorizationHeader); h != "" {
		scheme, token, _ := strings.Cut(strings.TrimSpace(h), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return "", true // a credential, but not one we take
		}
		return strings.TrimSpace(token), true
	}
	if upgrade {
		if t := r.URL.Query().Get("access_token"); t != "" {
			return t, true
		}
	}
	return "", false
}

func (g *Gateway) unauthorized(w http.ResponseWriter, r *http.Request, given bool) {
	challenge := `Bearer realm="atrium"`
	detail := "an API key is required: send Authorization: Bearer <key>"
	reason := "no_key"
	if given {
		challenge += `, error="invalid_token"`
		detail = "the API key is not valid"
		reason = "bad_key"
	}
	g.metrics.denied.WithLabelValues(reason).Inc()
	w.Header().Set("WWW-Authenticate", challenge)
	httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusUnauthorized, detail))
}

// admit takes one token from the key's bucket and sets the RateLimit headers; when
// the bucket is empty it answers 429 with Retry-After and returns false.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request, info *logWriter, id identity) bool {
	if g.limiter.unlimited() {
		return true
	}
	v := g.limiter.allow(id, g.opts.Now())
	h := w.Header()
	info.setHeader(h, rateLimitHeader, slotRateLimit, g.limiter.burstText)
	info.setHeader(h, rateRemainingHeader, slotRateRemaining, strconv.Itoa(v.remaining))
	info.setHeader(h, rateResetHeader, slotRateReset, strconv.Itoa(ceilSeconds(v.reset)))
	if v.ok {
		return true
	}
	g.metrics.denied.WithLabelValues("rate_limit").Inc()
	p := httpx.NewProblem(http.StatusTooManyRequests,
		fmt.Sprintf("rate limit of %g requests/s (burst %d) exceeded for this key", g.opts.RateLimit, g.limiter.burst))
	p.RetryAfter = time.Duration(ceilSeconds(v.retryAfter)) * time.Second
	httpx.WriteProblem(w, r, p)
	return false
}

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// isWebSocketUpgrade reports a request asking to switch to WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}
