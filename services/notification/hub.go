package notification

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/internal/servicekit"
)

// Close codes and reasons the hub sends.
const (
	// CloseTooSlow is sent to a client whose send queue overflowed.
	CloseTooSlow       = websocket.StatusPolicyViolation
	closeTooSlowReason = "too slow: send queue full"
)

// Push is one message to WebSocket clients: an alert change or a notification.
type Push struct {
	Kind         string        `json:"kind"` // alert.raised, alert.acknowledged, alert.resolved, notification
	Severity     string        `json:"severity"`
	RoomID       string        `json:"room_id,omitempty"`
	Time         time.Time     `json:"time"`
	Alert        *Alert        `json:"alert,omitempty"`
	Notification *Notification `json:"notification,omitempty"`
}

// HubOptions tune the WebSocket hub.
type HubOptions struct {
	// QueueSize is each client's send queue, in messages (default 256). A client
	// whose queue is full when a message comes is dropped.
	QueueSize int
	// PingInterval is how often each client is pinged (default 30s).
	PingInterval time.Duration
	// WriteTimeout bounds one write or ping (default 10s).
	WriteTimeout time.Duration
	// ReadLimit bounds a message from a client (default 1024 bytes).
	ReadLimit int64
	// SocketBuffer sets the kernel send buffer of each connection, bounding how
	// much a stalled client can hold there (default 64 KiB; negative: the kernel's).
	SocketBuffer int
	// OriginPatterns are the browser origins allowed; empty allows any (the gateway
	// enforces CORS and clients authenticate with tokens, not cookies).
	OriginPatterns []string
}

// Hub fans messages out to WebSocket clients. Broadcast never blocks: each client
// has a bounded queue and its own writer goroutine, and a client whose queue is
// full is closed with CloseTooSlow instead of slowing the others.
type Hub struct {
	opts HubOptions
	log  *slog.Logger

	mu      sync.RWMutex
	clients map[*client]struct{}
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup

	nDropped atomic.Int64

	connected prometheus.Gauge
	dropped   prometheus.Counter
	sent      prometheus.Counter
}

type client struct {
	room   string
	minSev int
	send   chan []byte
	slow   chan struct{}
	once   sync.Once
}

// drop marks the client too slow; true the first time.
func (c *client) drop() (first bool) {
	c.once.Do(func() { close(c.slow); first = true })
	return first
}

func (c *client) wants(severity, room string) bool {
	if SeverityRank(severity) < c.minSev {
		return false
	}
	return c.room == "" || room == "" || room == c.room
}

// NewHub makes a hub and registers its metrics on reg.
func NewHub(log *slog.Logger, reg prometheus.Registerer, opts HubOptions) *Hub {
	servicekit.Default(&opts.QueueSize, 256)
	servicekit.Default(&opts.PingInterval, 30*time.Second)
	servicekit.Default(&opts.WriteTimeout, 10*time.Second)
	servicekit.Default(&opts.ReadLimit, 1024)
	if opts.SocketBuffer == 0 {
		opts.SocketBuffer = 64 << 10
	}
	h := &Hub{opts: opts, log: log, clients: map[*client]struct{}{}, done: make(chan struct{})}
	h.connected = prometheus.NewGauge(prometheus.GaugeOpts{Name: "atrium_notification_ws_clients", Help: "Connected WebSocket clients."})
	h.dropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "atrium_notification_ws_dropped_total", Help: "WebSocket clients closed for being too slow."})
	h.sent = prometheus.NewCounter(prometheus.CounterOpts{Name: "atrium_notification_ws_messages_total", Help: "Messages queued to WebSocket clients."})
	if reg != nil {
		reg.MustRegister(h.connected, h.dropped, h.sent)
	}
	return h
}

// Clients is the number of connected clients.
func (h *Hub) Clients() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.clients)
}

// Dropped is how many clients were closed for being too slow.
func (h *Hub) Dropped() int64 { return h.nDropped.Load() }

// Broadcast queues p to every client whose filters it passes.
func (h *Hub) Broadcast(p Push) {
	b, err := json.Marshal(p)
	if err != nil {
		h.log.Error("marshal push failed", "err", err)
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for c := range h.clients {
		if !c.wants(p.Severity, p.RoomID) {
			continue
		}
		select {
		case c.send <- b:
			h.sent.Inc()
		default:
			if c.drop() {
				h.dropped.Inc()
				h.nDropped.Add(1)
			}
		}
	}
}

// Close closes every client with "going away" and waits for their writers.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// Serve upgrades r to a WebSocket client with the given filters and writes to it
// until it goes away, is too slow, or the hub closes.
func (h *Hub) Serve(w http.ResponseWriter, r *http.Request, room string, minSev int) {
	conn, err := websocket.Accept(&sockBuffer{ResponseWriter: w, size: h.opts.SocketBuffer}, r, &websocket.AcceptOptions{
		InsecureSkipVerify: len(h.opts.OriginPatterns) == 0,
		OriginPatterns:     h.opts.OriginPatterns,
	})
	if err != nil {
		return // Accept has answered
	}
	conn.SetReadLimit(h.opts.ReadLimit)
	c := &client{room: room, minSev: minSev, send: make(chan []byte, h.opts.QueueSize), slow: make(chan struct{})}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		conn.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	h.clients[c] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	h.connected.Inc()
	defer func() {
		h.mu.Lock()
		delete(h.clients, c)
		h.mu.Unlock()
		h.connected.Dec()
		h.wg.Done()
	}()
	// Clients only listen. The reader answers pings and closes, discards what a
	// client sends, and ends the connection on an error or a message over the read
	// limit (closed with 1009 by the library). It is not CloseRead: a Close from
	// CloseRead's own goroutine waits 15 s for itself.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	go func() {
		defer cancel()
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				return
			}
		}
	}()
	h.write(ctx, conn, c)
}

func (h *Hub) write(ctx context.Context, conn *websocket.Conn, c *client) {
	ping := time.NewTicker(h.opts.PingInterval)
	defer ping.Stop()
	for {
		// A dropped client is closed before anything else still in its queue.
		select {
		case <-c.slow:
			h.closeSlow(conn)
			return
		default:
		}
		select {
		case <-ctx.Done():
			conn.CloseNow()
			return
		case <-h.done:
			conn.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case <-c.slow:
			h.closeSlow(conn)
			return
		case b := <-c.send:
			wctx, cancel := context.WithTimeout(ctx, h.opts.WriteTimeout)
			err := conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				conn.CloseNow()
				return
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, h.opts.WriteTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				conn.CloseNow()
				return
			}
		}
	}
}

func (h *Hub) closeSlow(conn *websocket.Conn) {
	h.log.Warn("websocket client too slow, dropped", "queue", h.opts.QueueSize)
	conn.Close(CloseTooSlow, closeTooSlowReason)
}

// sockBuffer sets the kernel send buffer of the connection a WebSocket upgrade
// hijacks, so a stalled client holds at most that much in the kernel and overflows
// its queue soon instead of after megabytes.
type sockBuffer struct {
	http.ResponseWriter
	size int
}

func (s *sockBuffer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && s.size > 0 {
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(s.size)
		}
	}
	return conn, brw, err
}

func (s *sockBuffer) Unwrap() http.ResponseWriter { return s.ResponseWriter }
