package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx"
)

// upstream is one service behind the gateway.
type upstream struct {
	name   string
	base   *url.URL
	proxy  *httputil.ReverseProxy
	direct *directTransport // nil for an https upstream
	local  http.Handler     // the service's handler when it runs in this process, else nil
	client *http.Client     // for /readyz
}

// Connection pools to the upstreams: many idle keep-alive connections per service
// (the gateway fans every client into a few hosts), closed after a while unused,
// before the services' own idle timeout (120 s) closes them.
const (
	maxIdlePerUpstream = 256
	idleConnTimeout    = 90 * time.Second
)

// newDialer connects to the upstreams: a short timeout so a service that is down
// answers at once.
func newDialer(opts Options) *net.Dialer {
	return &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
}

// newTransport is the standard transport to every upstream, for what the direct
// transports do not carry (bodies, WebSocket upgrades, https) and for /readyz: a
// bound on the wait for response headers so a service that hangs cannot hold a
// client forever; HTTP/1.1 only, compression left to the services.
func newTransport(opts Options, d *net.Dialer) *http.Transport {
	tc := opts.UpstreamTLS
	if tc == nil {
		// Set, so that the transport stays on HTTP/1.1 with https upstreams too
		// (WebSocket upgrades need it).
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return &http.Transport{
		Proxy:                 nil, // upstreams are reached directly, never through HTTP_PROXY
		DialContext:           d.DialContext,
		MaxIdleConns:          4 * maxIdlePerUpstream,
		MaxIdleConnsPerHost:   maxIdlePerUpstream,
		IdleConnTimeout:       idleConnTimeout,
		ResponseHeaderTimeout: opts.ResponseHeaderTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // pass gzip through untouched
		TLSClientConfig:       tc,
	}
}

func newUpstream(name, raw string, tr *http.Transport, d *net.Dialer, opts Options, log *slog.Logger, m *metrics) (*upstream, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %s: URL %q: want http://host:port", name, raw)
	}
	up := &upstream{name: name, base: u, client: &http.Client{Transport: tr}}
	var rt http.RoundTripper = tr
	if u.Scheme == "http" {
		port := u.Port()
		if port == "" {
			port = "80"
		}
		up.direct = &directTransport{host: u.Host, addr: net.JoinHostPort(u.Hostname(), port), dial: d.DialContext,
			fallback: tr, headerTimeout: opts.ResponseHeaderTimeout, maxIdle: maxIdlePerUpstream}
		rt = up.direct
	}
	up.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			setForwarded(pr)
			// handleUpstream already took the Authorization header out and set
			// the key's name; a WebSocket's key may come in the query. The
			// proxy drops the headers a client's Connection header names:
			// the key's name is set again, or the service would take the
			// request for a direct call on its private port.
			if v := pr.In.Header[keyNameHeader]; v != nil {
				pr.Out.Header[keyNameHeader] = v
			}
			if strings.Contains(pr.Out.URL.RawQuery, "access_token") {
				pr.Out.URL = withoutAccessToken(pr.Out.URL)
			}
		},
		Transport:  rt,
		BufferPool: copyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			// The gateway already set the request id on the response; the upstream
			// echoes the same one, which would otherwise appear twice.
			delete(resp.Header, requestIDHeader)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if terr := httpx.BodyTimedOut(r); terr != nil {
				// The client's body did not come in time (the server's read
				// timeout): its fault, not the upstream's.
				m.denied.WithLabelValues("read_timeout").Inc()
				httpx.Error(w, r, log, terr)
				return
			}
			p := upstreamProblem(name, err)
			m.upstreamErrors.WithLabelValues(name, fmt.Sprint(p.Status)).Inc()
			level := slog.LevelWarn
			if r.Context().Err() != nil {
				level = slog.LevelDebug // the client went away
			}
			var requestID string
			if info := infoFrom(w); info != nil {
				requestID = info.requestID
			}
			log.Log(r.Context(), level, "upstream request failed", "upstream", name, "method", r.Method, "path", r.URL.Path,
				"status", p.Status, "err", err, "request_id", requestID)
			httpx.WriteProblem(w, r, p)
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return up, nil
}

// setForwarded does what ProxyRequest.SetXForwarded does (see setForwardedHeaders).
func setForwarded(pr *httputil.ProxyRequest) { setForwardedHeaders(pr.Out.Header, pr.In) }

// setForwardedHeaders sets on h, for the request in: X-Forwarded-For, the client's
// address (the gateway is the edge: whatever the client sent was dropped),
// X-Forwarded-Host the Host it asked for, X-Forwarded-Proto its scheme — with the
// three values in one allocation.
func setForwardedHeaders(h http.Header, in *http.Request) {
	vals := new([3]string)
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		vals[0] = ip
		h["X-Forwarded-For"] = vals[0:1:1]
	}
	vals[1] = in.Host
	h["X-Forwarded-Host"] = vals[1:2:2]
	vals[2] = "http"
	if in.TLS != nil {
		vals[2] = "https"
	}
	h["X-Forwarded-Proto"] = vals[2:3:3]
}

// bufferPool lends the proxies their 32 KiB copy buffers, which they would
// otherwise allocate for every response. The pool holds *[]byte; the holders go
// back to a pool of their own, so lending and returning allocate nothing.
type bufferPool struct{ bufs, holders sync.Pool }

func (b *bufferPool) Get() []byte {
	if h, ok := b.bufs.Get().(*[]byte); ok {
		buf := *h
		*h = nil
		b.holders.Put(h)
		return buf
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	h, ok := b.holders.Get().(*[]byte)
	if !ok {
		h = new([]byte)
	}
	*h = buf
	b.bufs.Put(h)
}

var (
	copyBuffers                     = &bufferPool{}
	_           httputil.BufferPool = copyBuffers
)

// upstreamProblem maps a failed round trip to the client's answer: a service that
// cannot be reached is 503 (retry later), one that is too slow 504, a body over the
// limit 413, anything else 502.
func upstreamProblem(name string, err error) *httpx.Problem {
	var mbe *http.MaxBytesError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return httpx.NewProblem(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body too large: at most %d bytes accepted", mbe.Limit))
	case errors.As(err, &op) && op.Op == "dial", errors.Is(err, syscall.ECONNREFUSED):
		p := httpx.NewProblem(http.StatusServiceUnavailable, "the "+name+" service is unavailable; retry later")
		p.RetryAfter = 2 * time.Second
		return p
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return httpx.NewProblem(http.StatusGatewayTimeout, "the "+name+" service did not answer in time")
	default:
		return httpx.NewProblem(http.StatusBadGateway, "the "+name+" service failed to answer")
	}
}

// healthy is the upstream's /readyz check: its /healthz answers 2xx.
func (u *upstream) healthy(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base.JoinPath("/healthz").String(), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: unreachable", u.name)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: /healthz answered %d", u.name, resp.StatusCode)
	}
	return nil
}
