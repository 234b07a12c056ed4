package sim

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
)

// A device keeps several QoS 1/2 publishes in flight, each in a goroutine of its
// own (paho's Publish waits for the acknowledgement), and they must reach the
// broker in the device's order. paho gives a publish its packet id in
// AddToSession and writes it right after, so two goroutines could overtake each
// other between the two. The device's session and connection close that gap:
//
//   - orderedSession lets a data publish into the session only once every data
//     publish added before it has been written, and tells the device's sender when
//     it is in (through the context, see addedKey), so the sender starts the next
//     one only then;
//   - orderedConn counts the data publishes written. paho writes each packet while
//     holding the connection's sync.Locker, so a packet's first byte tells its
//     type and flags. It also hands each packet to the socket in one write.
//
// Data publishes are the non-retained PUBLISHes of QoS 1 and 2; status messages
// are retained and keep their own order.

// pubOrder counts a device's data publishes added to its session and written to a
// connection.
type pubOrder struct {
	mu      sync.Mutex
	added   uint64
	written uint64
	changed chan struct{} // closed and replaced when written grows
}

func newPubOrder() *pubOrder { return &pubOrder{changed: make(chan struct{})} }

func (o *pubOrder) wrote() {
	o.mu.Lock()
	o.written++
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// awaitWritten waits until every data publish added so far has been written.
func (o *pubOrder) awaitWritten(ctx context.Context) error {
	for {
		o.mu.Lock()
		if o.written >= o.added {
			o.mu.Unlock()
			return nil
		}
		ch := o.changed
		o.mu.Unlock()
		if err := awaitClose(ctx, ch); err != nil {
			return err
		}
	}
}

// addedKey is the context key of the func a data publish's sender waits on: the
// session calls it once the publish has its place (or failed to get one).
type addedKey struct{}

// orderedSession is paho's in-memory session that adds a device's data publishes
// one after another, each after the previous one was written.
type orderedSession struct {
	*state.State
	order *pubOrder
}

var _ session.SessionManager = (*orderedSession)(nil)

// AddToSession implements session.SessionManager.
func (s *orderedSession) AddToSession(ctx context.Context, packet session.Packet, resp chan<- packets.ControlPacket) error {
	added, _ := ctx.Value(addedKey{}).(func())
	if added == nil {
		return s.State.AddToSession(ctx, packet, resp)
	}
	defer added()
	if err := s.order.awaitWritten(ctx); err != nil {
		return err
	}
	if err := s.State.AddToSession(ctx, packet, resp); err != nil {
		return err
	}
	s.order.mu.Lock()
	s.order.added++
	s.order.mu.Unlock()
	return nil
}

// orderedConn is a device's connection: it writes each packet paho writes under
// its lock with one write, and counts the data publishes among them.
type orderedConn struct {
	net.Conn
	order *pubOrder

	mu     sync.Mutex
	locked bool
	buf    []byte
	need   int // length of the packet being buffered, once its header is complete
}

var _ sync.Locker = (*orderedConn)(nil)

// Lock implements sync.Locker; paho holds it while it writes one packet.
func (c *orderedConn) Lock() {
	c.mu.Lock()
	c.locked = true
}

// Unlock implements sync.Locker.
func (c *orderedConn) Unlock() {
	if len(c.buf) > 0 { // a packet shorter than its header said: send what there is
		_, _ = c.flush()
	}
	c.locked = false
	c.mu.Unlock()
}

// Write implements net.Conn: under the lock it collects one packet and writes it
// whole.
func (c *orderedConn) Write(b []byte) (int, error) {
	if !c.locked {
		return c.Conn.Write(b)
	}
	c.buf = append(c.buf, b...)
	if c.need == 0 {
		n, ok := packetLen(c.buf)
		if !ok {
			return len(b), nil
		}
		c.need = n
	}
	if len(c.buf) < c.need {
		return len(b), nil
	}
	if _, err := c.flush(); err != nil {
		return 0, err
	}
	return len(b), nil
}

// flush writes the buffered packet and counts it when it is a data publish.
func (c *orderedConn) flush() (int, error) {
	h := c.buf[0]
	n, err := c.Conn.Write(c.buf)
	c.buf, c.need = c.buf[:0], 0
	if h>>4 == packets.PUBLISH && (h>>1)&3 > 0 && h&1 == 0 {
		c.order.wrote() // written or failed: either way it no longer holds the next one back
	}
	return n, err
}

// packetLen is the length of the MQTT packet b starts with, once b holds its
// fixed header.
func packetLen(b []byte) (int, bool) {
	var rem, mul int
	for i := 1; i < len(b) && i <= 4; i++ {
		rem += int(b[i]&0x7f) << mul
		if b[i]&0x80 == 0 {
			return 1 + i + rem, true
		}
		mul += 7
	}
	return 0, false
}

// dialOrdered is the device's autopaho AttemptConnection for plain TCP and TLS;
// ok is false for other schemes (WebSocket), whose devices keep one publish in
// flight.
func dialOrdered(u *url.URL, order *pubOrder) (func(context.Context, autopaho.ClientConfig, *url.URL) (net.Conn, error), bool) {
	var useTLS bool
	switch strings.ToLower(u.Scheme) {
	case "mqtt", "tcp", "":
	case "ssl", "tls", "mqtts":
		useTLS = true
	default:
		return nil, false
	}
	return func(ctx context.Context, cfg autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
		var (
			conn net.Conn
			err  error
		)
		if useTLS {
			d := tls.Dialer{Config: cfg.TlsCfg}
			conn, err = d.DialContext(ctx, "tcp", u.Host)
		} else {
			var d net.Dialer
			conn, err = d.DialContext(ctx, "tcp", u.Host)
		}
		if err != nil {
			return nil, err
		}
		return &orderedConn{Conn: conn, order: order}, nil
	}, true
}
