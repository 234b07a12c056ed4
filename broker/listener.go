package broker

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connTracker counts and remembers the connections of one listener, so that a hard cap
// can be applied before any MQTT work and Close can end connections that never got as
// far as becoming an MQTT client.
type connTracker struct {
	limit    int64 // open connections beyond which new ones are closed at once
	timeout  time.Duration
	rejected *atomic.Int64 // shared counter of connections refused by any listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newConnTracker(limit int, timeout time.Duration, rejected *atomic.Int64) *connTracker {
	return &connTracker{limit: int64(limit), timeout: timeout, rejected: rejected, conns: map[net.Conn]struct{}{}}
}

// admit registers c; it reports false (and closes c) when over the cap or closing.
func (t *connTracker) admit(c net.Conn) bool {
	t.mu.Lock()
	ok := !t.closed && int64(len(t.conns)) < t.limit
	if ok {
		t.conns[c] = struct{}{}
	}
	t.mu.Unlock()
	if !ok {
		t.rejected.Add(1)
		_ = c.Close()
		return false
	}
	// A new connection has ConnectTimeout to send CONNECT; mochi replaces this deadline
	// with the client's keepalive once CONNECT is read.
	_ = c.SetDeadline(time.Now().Add(t.timeout))
	return true
}

func (t *connTracker) release(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// waitEmpty waits until every connection has been released (its MQTT session has
// ended and mochi has removed the client), or until the deadline; it reports whether
// none is left.
func (t *connTracker) waitEmpty(deadline time.Time) bool {
	for {
		t.mu.Lock()
		n := len(t.conns)
		t.mu.Unlock()
		if n == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ownListener is what Broker.Close needs of its listeners before mochi closes them.
type ownListener interface {
	stopAccepting()
	tracker() *connTracker
}

// closeOwn is the Close of an ownListener whose mochi id is id: it stops accepting
// first, then lets mochi disconnect its clients (with a DISCONNECT for MQTT 5),
// then closes whatever connection is left.
func closeOwn(l ownListener, id string, closeClients listeners.CloseFn) {
	l.stopAccepting()
	closeClients(id)
	l.tracker().closeAll()
}

// closeAll refuses new connections and closes the ones still open.
func (t *connTracker) closeAll() {
	t.mu.Lock()
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// logEnd logs why an MQTT connection ended, at a level matching its cause.
func logEnd(log *slog.Logger, rejected *atomic.Int64, err error) {
	switch {
	case err == nil:
	case errors.Is(err, packets.ErrServerBusy):
		rejected.Add(1)
		log.Warn("connection refused: too many clients")
	case errors.Is(err, packets.ErrBadUsernameOrPassword):
		log.Debug("connection refused: not authorized")
	default:
		log.Debug("connection ended", "error", err)
	}
}

// streamListener serves MQTT over a stream listener (TCP or TLS) that the broker bound
// itself, so its real address is known before Serve runs.
type streamListener struct {
	id    string
	proto string
	ln    net.Listener
	track *connTracker
	log   *slog.Logger
	done  atomic.Bool
}

var _ listeners.Listener = (*streamListener)(nil)

func (l *streamListener) ID() string       { return l.id }
func (l *streamListener) Address() string  { return l.ln.Addr().String() }
func (l *streamListener) Protocol() string { return l.proto }

func (l *streamListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

func (l *streamListener) Serve(establish listeners.EstablishFn) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.done.Load() {
				return
			}
			// Out of file descriptors or a similar passing condition: back off, go on.
			l.log.Warn("accept failed", "error", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !l.track.admit(c) {
			continue
		}
		go func() {
			defer l.track.release(c)
			logEnd(l.log, l.track.rejected, establish(l.id, c))
		}()
	}
}

func (l *streamListener) stopAccepting() {
	l.done.Store(true)
	_ = l.ln.Close()
}

func (l *streamListener) tracker() *connTracker { return l.track }

// Close is closeOwn.
func (l *streamListener) Close(closeClients listeners.CloseFn) { closeOwn(l, l.id, closeClients) }

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", binary messages, any path).
type wsListener struct {
	id        string
	ln        net.Listener
	track     *connTracker
	readLimit int64
	log       *slog.Logger
	srv       *http.Server
	establish atomic.Pointer[listeners.EstablishFn]
}

var _ listeners.Listener = (*wsListener)(nil)

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	l.srv = &http.Server{
		Handler:           http.HandlerFunc(l.serveHTTP),
		ReadHeaderTimeout: l.track.timeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.establish.Store(&establish)
	err := l.srv.Serve(l.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "error", err)
	}
}

func (l *wsListener) serveHTTP(w http.ResponseWriter, r *http.Request) {
	establish := l.establish.Load()
	if establish == nil {
		http.Error(w, "not serving", http.StatusServiceUnavailable)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{"mqtt"},
		// MQTT authenticates in band with username and password, not with cookies,
		// so a cross-origin page gains nothing a direct client would not have.
		InsecureSkipVerify: true,
	})
	if err != nil {
		return // Accept has answered the request
	}
	c := websocket.NetConn(r.Context(), ws, websocket.MessageBinary)
	ws.SetReadLimit(l.readLimit) // after NetConn, which lifts the limit
	if !l.track.admit(c) {
		return
	}
	defer l.track.release(c)
	defer c.Close()
	logEnd(l.log, l.track.rejected, (*establish)(l.id, c))
}

// stopAccepting shuts the HTTP server down, which stops accepting (and makes a later
// Serve return at once); hijacked WebSocket connections are left to Close. The
// listener is closed explicitly too, in case Serve never ran.
func (l *wsListener) stopAccepting() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = l.srv.Shutdown(ctx)
	cancel()
	_ = l.ln.Close()
}

func (l *wsListener) tracker() *connTracker { return l.track }

// Close is closeOwn.
func (l *wsListener) Close(closeClients listeners.CloseFn) { closeOwn(l, l.id, closeClients) }
