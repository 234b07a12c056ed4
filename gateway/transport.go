package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"
)

// directTransport carries the requests that make most of the gateway's traffic —
// GET and HEAD without a body, no protocol upgrade — to one plain-HTTP upstream,
// and hands every other request (bodies, WebSocket upgrades, other hosts) to the
// standard transport.
//
// It writes the request and reads the response on the caller's goroutine over a
// pooled keep-alive connection. http.Transport instead gives each connection a
// reader and a writer goroutine and passes every request and response between
// them over channels, with a timer per request: on a busy machine those hand-offs
// and the reader's read-ahead cost as much CPU as the gateway's own work. The
// wire format is the standard library's (Request.Write, http.ReadResponse); what
// is kept from http.Transport's behaviour:
//   - a request whose context ends (the client went away) is cut at once: the
//     connection's deadline is set in the past and the connection dropped;
//   - the response headers must come within ResponseHeaderTimeout;
//   - a pooled connection the upstream closed while idle is detected when nothing
//     of the response arrives, and the request (always idempotent here) is sent
//     once more on a new connection;
//   - 1xx responses go to the request's httptrace hook (the reverse proxy forwards
//     them) and at most five are read;
//   - a connection goes back to the pool only when its response was read to the
//     end, neither side asked to close it, and nothing unasked-for follows;
//   - connections idle for too long are closed (closeIdle, which Gateway.Run
//     calls), before the upstream's own idle timeout closes them.
type directTransport struct {
	host          string // the upstream URL's host, as requests name it
	addr          string // host:port to dial
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback      http.RoundTripper
	headerTimeout time.Duration
	maxIdle       int

	mu     sync.Mutex
	idle   []*upstreamConn // oldest first: taken and returned at the end
	closed bool
}

var _ http.RoundTripper = (*directTransport)(nil)

// upstreamConn is one keep-alive connection to the upstream.
type upstreamConn struct {
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	poison func() // sets the deadlines in the past, ending any read or write
	idleAt time.Time
}

func newUpstreamConn(nc net.Conn) *upstreamConn {
	c := &upstreamConn{nc: nc, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10)}
	c.poison = func() { _ = nc.SetDeadline(aLongTimeAgo) }
	return c
}

// aLongTimeAgo is a deadline that has passed: setting it unblocks any read or write.
var aLongTimeAgo = time.Unix(1, 0)

// maxInformational bounds the 1xx responses read before the final one, as
// http.Transport does.
const maxInformational = 5

func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	c, reused, err := t.conn(ctx, true)
	if err != nil {
		return nil, err
	}
	resp, stale, err := t.exchange(ctx, c, req)
	if err == nil || !reused || !stale || ctx.Err() != nil {
		return resp, err
	}
	// The pooled connection was dead (the upstream closed it while idle, or
	// restarted): once more on a new one, as the other pooled connections may be
	// dead too.
	if c, _, err = t.conn(ctx, false); err != nil {
		return nil, err
	}
	resp, _, err = t.exchange(ctx, c, req)
	return resp, err
}

// handles reports whether req takes the direct path: a bodiless GET or HEAD to
// the upstream over plain HTTP that asks for no protocol switch.
func (t *directTransport) handles(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody) &&
		req.URL.Scheme == "http" && req.URL.Host == t.host &&
		len(req.Header["Upgrade"]) == 0 && len(req.TransferEncoding) == 0
}

// conn takes the most recently used idle connection when pooled is set and there
// is one, else it dials a new one. It reports whether the connection was pooled.
func (t *directTransport) conn(ctx context.Context, pooled bool) (*upstreamConn, bool, error) {
	t.mu.Lock()
	if n := len(t.idle); pooled && n > 0 {
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return c, true, nil
	}
	t.mu.Unlock()
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	return newUpstreamConn(nc), false, nil
}

// exchange sends req on c and reads the response's headers. On error c is closed,
// and stale reports that nothing of a response arrived, so the request may be
// sent again on another connection.
func (t *directTransport) exchange(ctx context.Context, c *upstreamConn, req *http.Request) (resp *http.Response, stale bool, err error) {
	stop := context.AfterFunc(ctx, c.poison)
	fail := func(err error, stale bool) (*http.Response, bool, error) {
		stop()
		_ = c.nc.Close()
		if ctx.Err() != nil {
			return nil, false, context.Cause(ctx)
		}
		return nil, stale, err
	}
	if t.headerTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(t.headerTimeout))
	}
	if ctx.Err() != nil { // after the deadline is set, as below
		return fail(ctx.Err(), false)
	}
	if err := req.Write(c.bw); err != nil {
		return fail(err, true)
	}
	if err := c.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(err, !isTimeout(err))
	}
	trace := httptrace.ContextClientTrace(ctx)
	for n := 0; ; n++ {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err, false)
		}
		code := resp.StatusCode
		if code < 100 || code > 199 {
			break
		}
		if code == http.StatusSwitchingProtocols {
			return fail(errors.New("upstream switched protocols without being asked"), false)
		}
		if n == maxInformational {
			return fail(errors.New("too many 1xx informational responses"), false)
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return fail(err, false)
			}
		}
	}
	if t.headerTimeout > 0 && !bodyBuffered(resp, c.br) {
		// The body is not all read yet: it may take longer than the headers may.
		_ = c.nc.SetReadDeadline(time.Time{})
		// Cleared after the context's AfterFunc may have set it in the past: the
		// context's error is set before its AfterFuncs run, so look again.
		if ctx.Err() != nil {
			return fail(ctx.Err(), false)
		}
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		t.release(c, stop, keep)
		return resp, false, nil
	}
	resp.Body = &upstreamBody{t: t, c: c, stop: stop, keep: keep, body: resp.Body}
	return resp, false, nil
}

// bodyBuffered reports whether resp's whole body already sits in br, so reading
// it needs the connection no more (the usual case for a small answer). The read
// deadline for the headers can then stay: the next request sets its own.
func bodyBuffered(resp *http.Response, br *bufio.Reader) bool {
	return resp.Body == http.NoBody || (resp.ContentLength >= 0 && int64(br.Buffered()) >= resp.ContentLength)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// release returns c to the pool, or closes it when it cannot carry another
// request: the request's context ended (its AfterFunc may have poisoned the
// deadline), a side asked to close, bytes nobody asked for are waiting, the pool
// is full or closed.
func (t *directTransport) release(c *upstreamConn, stop func() bool, keep bool) {
	if !stop() || !keep || c.br.Buffered() > 0 {
		_ = c.nc.Close()
		return
	}
	t.mu.Lock()
	c.idleAt = time.Now()
	if t.closed || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		_ = c.nc.Close()
		return
	}
	t.idle = append(t.idle, c)
	t.mu.Unlock()
}

// closeIdle closes the idle connections unused since before cutoff (all of them
// for the zero time). The pool is ordered by return time, oldest first.
func (t *directTransport) closeIdle(cutoff time.Time) {
	t.mu.Lock()
	n := len(t.idle)
	if !cutoff.IsZero() {
		n = 0
		for n < len(t.idle) && t.idle[n].idleAt.Before(cutoff) {
			n++
		}
	}
	old := make([]*upstreamConn, n)
	copy(old, t.idle[:n])
	rest := copy(t.idle, t.idle[n:])
	clear(t.idle[rest:])
	t.idle = t.idle[:rest]
	t.mu.Unlock()
	for _, c := range old {
		_ = c.nc.Close()
	}
}

// close closes the idle connections and every connection returned later.
func (t *directTransport) close() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.closeIdle(time.Time{})
}

// upstreamBody is a response body on a pooled connection: read to its end, it
// gives the connection back; closed before, it closes the connection.
type upstreamBody struct {
	t     *directTransport
	c     *upstreamConn
	stop  func() bool
	keep  bool
	body  io.ReadCloser
	state atomic.Int32 // bodyReading, bodyDone, bodyClosed
}

const (
	bodyReading = iota
	bodyDone
	bodyClosed
)

var errReadAfterClose = errors.New("http: read on closed response body")

func (b *upstreamBody) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyDone:
		return 0, io.EOF
	case bodyClosed:
		return 0, errReadAfterClose
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		if b.state.CompareAndSwap(bodyReading, bodyDone) {
			b.t.release(b.c, b.stop, b.keep)
		}
	case err != nil:
		b.abort()
	}
	return n, err
}

// Close drops the connection unless the body was read to its end. It may be
// called while a Read is blocked: closing the connection ends that Read.
func (b *upstreamBody) Close() error {
	b.abort()
	return nil
}

func (b *upstreamBody) abort() {
	if b.state.CompareAndSwap(bodyReading, bodyClosed) {
		b.stop()
		_ = b.c.nc.Close()
	}
}
