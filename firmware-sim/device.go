package sim

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/atrium-iot/atrium/firmware-sim/replay"
	"github.com/atrium-iot/atrium/internal/reading"
)

// device is one simulated sensor with its own MQTT connection.
type device struct {
	id, room string
	role     Role
	offset   float64 // calibration error of its temperature sensor, °C
	roomIdx  int

	// Fault state, owned by the producer.
	dropLeft  int
	stuckLeft int
	frozen    []replay.Metric

	ob *outbox
	cm *autopaho.ConnectionManager

	// order keeps the device's publishes in flight in order (order.go); nil when
	// its scheme is not supported there, and then one publish is in flight.
	order *pubOrder

	mu      sync.Mutex
	recvMax int // the broker's Receive Maximum from the last CONNACK
	up      bool
	upCh    chan struct{}      // closed while connected
	connCtx context.Context    // lives as long as the current connection
	cancel  context.CancelFunc // ends connCtx
	ups     int                // connections made so far

	// seen holds the identities of readings this device published recently, to tell
	// duplicates; owned by the device's publishing goroutine.
	seen    map[identity]int64
	newest  int64
	inserts int
}

func newDevice(id, room string, role Role, queue int) *device {
	return &device{id: id, room: room, role: role, ob: newOutbox(queue), upCh: make(chan struct{}), seen: map[identity]int64{}}
}

func (d *device) onUp(ack *paho.Connack) {
	d.mu.Lock()
	d.recvMax = 65535 // MQTT 5: absent means 65,535
	if ack != nil && ack.Properties != nil && ack.Properties.ReceiveMaximum != nil {
		d.recvMax = int(*ack.Properties.ReceiveMaximum)
	}
	d.up = true
	d.ups++
	d.connCtx, d.cancel = context.WithCancel(context.Background())
	close(d.upCh)
	d.mu.Unlock()
	d.ob.setConnected(true, "online")
}

func (d *device) onDown() {
	d.mu.Lock()
	if d.up {
		d.up = false
		d.cancel()
		d.upCh = make(chan struct{})
	}
	d.mu.Unlock()
	d.ob.setConnected(false, "")
}

// window is how many publishes the device may have in flight: inflight, never
// more than the broker's Receive Maximum, and 1 without an ordered connection.
func (d *device) window(inflight int) int {
	if d.order == nil {
		return 1
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return max(1, min(inflight, d.recvMax))
}

// connection returns the current connection's context and the channel closed when
// the device is next connected (nil, ch while disconnected).
func (d *device) connection() (context.Context, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.up {
		return d.connCtx, d.upCh
	}
	return nil, d.upCh
}

// connections is how many times the device has connected so far.
func (d *device) connections() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ups
}

// awaitConnection waits until the device is connected and returns a context that
// ends when that connection is lost.
func (d *device) awaitConnection(ctx context.Context) (context.Context, error) {
	for {
		d.mu.Lock()
		if d.up {
			c := d.connCtx
			d.mu.Unlock()
			return c, nil
		}
		ch := d.upCh
		d.mu.Unlock()
		if err := awaitClose(ctx, ch); err != nil {
			return nil, err
		}
	}
}

// connect starts the device's connection manager; it keeps reconnecting with
// exponential backoff until ctx ends or Disconnect is called.
func (s *Simulator) connect(ctx context.Context, d *device, broker *url.URL) error {
	user, pass := s.cfg.Username, s.cfg.Password
	if p, ok := s.cfg.Credentials[d.id]; ok {
		user, pass = d.id, p
	}
	if user == "" && pass != "" {
		user = d.id
	}
	log := s.log.With("sensor_id", d.id)
	order := newPubOrder()
	attempt, ordered := dialOrdered(broker, order)
	sess := state.NewInMemory()
	var sm session.SessionManager = sess
	if ordered {
		d.order = order
		sm = &orderedSession{State: sess, order: order}
	}
	cfg := autopaho.ClientConfig{
		AttemptConnection:             attempt,
		ServerUrls:                    []*url.URL{broker},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         0,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 5*time.Second, 500*time.Millisecond, 2),
		ConnectTimeout:                5 * time.Second,
		ConnectUsername:               user,
		ConnectPassword:               []byte(pass),
		WillMessage: &paho.WillMessage{
			Topic: StatusTopic(d.room, d.id), Payload: []byte("offline"), QoS: 1, Retain: true,
		},
		OnConnectionUp: func(_ *autopaho.ConnectionManager, ack *paho.Connack) {
			d.onUp(ack)
			log.Debug("device connected")
		},
		OnConnectionDown: func() bool {
			d.onDown()
			log.Debug("device disconnected")
			return true
		},
		OnConnectError: func(err error) { log.Debug("device connect failed", "err", err) },
		ClientConfig: paho.ClientConfig{
			ClientID:      d.id,
			PacketTimeout: 10 * time.Second,
			Session:       sm,
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return err
	}
	d.cm = cm
	return nil
}

// flight is one data publish on its way.
type flight struct {
	m       *message
	connCtx context.Context // the connection it was sent on
	added   chan struct{}   // closed when it has its place in the order (or failed to get one)
	done    chan struct{}   // closed when resp and err are set
	resp    *paho.PublishResponse
	err     error
}

// retryPause is how long a device waits before sending again after a publish was
// cut, unless the loss of its connection is noticed sooner.
const retryPause = 50 * time.Millisecond

// serve publishes the device's outbox, keeping up to -inflight publishes in flight
// in order (never more than the broker's Receive Maximum), until the outbox is
// closed and everything in it is answered, or ctx ends. Answers are taken in order
// too. A publish cut by a lost connection is sent again once the device is back,
// before anything newer, as are those sent after it.
func (s *Simulator) serve(ctx context.Context, d *device) {
	var (
		window []*flight  // in flight, oldest first
		retry  []*message // cut by a lost connection, oldest first: sent again first
		paused <-chan struct{}
		pauseT <-chan time.Time
	)
	defer func() {
		for _, f := range window {
			<-f.done // ctx has ended: they end too
			if m := s.settle(ctx, d, f); m != nil {
				retry = append(retry, m)
			}
		}
		if n := len(retry); n > 0 {
			s.update(func(sum *Summary) { sum.Messages.Failed += n; sum.Messages.Unsent += n })
		}
	}()
	for {
		for len(window) > 0 && isClosed(window[0].done) {
			f := window[0]
			window = window[1:]
			if m := s.settle(ctx, d, f); m != nil {
				retry = append(retry, m)
				if paused == nil {
					paused, pauseT = f.connCtx.Done(), time.After(retryPause)
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		var head <-chan struct{}
		if len(window) > 0 {
			head = window[0].done
		}
		connCtx, upCh := d.connection()
		if connCtx == nil || paused != nil || len(window) >= d.window(s.cfg.Inflight) {
			// Cannot send now: wait for an answer, the connection, or the pause to end.
			var wait <-chan struct{}
			if connCtx == nil {
				wait = upCh
			}
			select {
			case <-head:
			case <-wait:
			case <-paused:
				paused, pauseT = nil, nil
			case <-pauseT:
				paused, pauseT = nil, nil
			case <-ctx.Done():
			}
			continue
		}
		if len(retry) > 0 {
			m := retry[0]
			retry = retry[1:]
			if m.mayHaveArrived {
				s.update(func(sum *Summary) { sum.Messages.Resent++ })
			}
			window = append(window, s.send(ctx, d, connCtx, m))
			continue
		}
		m, status, changed, finished := d.ob.poll()
		switch {
		case status != "":
			s.publishStatus(ctx, d, status)
		case m != nil:
			window = append(window, s.send(ctx, d, connCtx, m))
		case finished && len(window) == 0:
			return
		default:
			select {
			case <-head:
			case <-changed:
			case <-connCtx.Done():
			case <-ctx.Done():
			}
		}
	}
}

// awaitClose waits until ch is closed (a device's or an outbox's state it was
// taken with has changed) or ctx ends.
func awaitClose(ctx context.Context, ch <-chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// send starts publishing m and returns once its place in the device's order is
// fixed (or it has already ended), so that the next one goes after it.
func (s *Simulator) send(ctx context.Context, d *device, connCtx context.Context, m *message) *flight {
	f := &flight{m: m, connCtx: connCtx, added: make(chan struct{}), done: make(chan struct{})}
	pctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(connCtx, cancel)
	var once sync.Once
	pctx = context.WithValue(pctx, addedKey{}, func() { once.Do(func() { close(f.added) }) })
	go func() {
		defer close(f.done)
		defer cancel()
		defer stop()
		f.resp, f.err = d.cm.Publish(pctx, &paho.Publish{Topic: m.topic, QoS: s.cfg.QoS, Payload: m.payload})
	}()
	select {
	case <-f.added:
	case <-f.done:
	}
	return f
}

// settle counts the answer to f; it returns f's message when it must be sent again
// (its connection was lost), marked when the broker may have it already.
func (s *Simulator) settle(ctx context.Context, d *device, f *flight) *message {
	m, resp, err := f.m, f.resp, f.err
	switch {
	case err == nil:
		s.published(d, m)
		return nil
	case (resp != nil && resp.ReasonCode >= 0x80) || errors.Is(err, paho.ErrInvalidArguments):
		s.log.Warn("message refused by the broker", "sensor_id", d.id, "topic", m.topic, "err", err)
		s.update(func(sum *Summary) { sum.Messages.Failed++; sum.Messages.Refused++ })
		return nil
	case ctx.Err() != nil:
		s.update(func(sum *Summary) { sum.Messages.Failed++; sum.Messages.Unsent++ })
		return nil
	}
	m.mayHaveArrived = m.mayHaveArrived || !errors.Is(err, autopaho.ConnectionDownError) && !errors.Is(err, session.ErrNoConnection)
	return m
}

func (s *Simulator) publishStatus(ctx context.Context, d *device, status string) {
	connCtx, err := d.awaitConnection(ctx)
	if err != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stop := context.AfterFunc(connCtx, cancel)
	defer stop()
	if _, err := d.cm.Publish(pctx, &paho.Publish{Topic: StatusTopic(d.room, d.id), QoS: 1, Retain: true, Payload: []byte(status)}); err != nil {
		s.log.Debug("status not published", "sensor_id", d.id, "status", status, "err", err)
		return
	}
	s.update(func(sum *Summary) {
		if status == "online" {
			sum.Status.Online++
		} else {
			sum.Status.Offline++
		}
	})
}

// identity is a reading's identity within one device: (type, timestamp in ms).
type identity struct {
	typ string
	ms  int64
}

// identityWindow is how long identities are remembered to tell duplicates: longer
// than the largest backward clock skew.
const identityWindow = 10 * time.Minute

// published counts an acknowledged message and what the system should make of it.
func (s *Simulator) published(d *device, m *message) {
	now := s.now()
	var stored, rejected, dups int
	byType := map[string]int{}
	for _, r := range m.readings {
		byType[r.Type]++
		if r.Timestamp.IsZero() {
			r.Timestamp = now
		}
		if reading.Validate(&r, now) != nil {
			rejected++
			continue
		}
		if m.form == FormPlain { // stamped by the receiver: always new
			stored++
			continue
		}
		ms := r.Timestamp.UnixMilli()
		key := identity{r.Type, ms}
		if _, ok := d.seen[key]; ok {
			dups++
			continue
		}
		stored++
		d.seen[key] = ms
		d.newest = max(d.newest, ms)
		if d.inserts++; d.inserts%1024 == 0 {
			for k, t := range d.seen {
				if t < d.newest-identityWindow.Milliseconds() {
					delete(d.seen, k)
				}
			}
		}
	}
	s.update(func(sum *Summary) {
		sum.Messages.Published++
		sum.ByForm[m.form]++
		if m.malformed {
			sum.Expect.Malformed++
		}
		sum.Readings += len(m.readings)
		for t, n := range byType {
			sum.ByType[t] += n
		}
		sum.Expect.Stored += stored
		sum.Expect.Rejected += rejected
		sum.Expect.Duplicates += dups
	})
}

// shutdown says offline (the broker drops the last will on a clean disconnect) and
// disconnects.
func (s *Simulator) shutdown(ctx context.Context, d *device) {
	if d.cm == nil {
		return
	}
	d.mu.Lock()
	up := d.up
	d.mu.Unlock()
	if up {
		s.publishStatus(ctx, d, "offline")
	}
	if err := d.cm.Disconnect(ctx); err != nil {
		s.log.Debug("device disconnect", "sensor_id", d.id, "err", err)
	}
}
