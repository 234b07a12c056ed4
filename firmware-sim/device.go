package sim

import (
	"context"
	"errors"
	"net/url"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

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

	mu      sync.Mutex
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

func (d *device) onUp() {
	d.mu.Lock()
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
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
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
	cfg := autopaho.ClientConfig{
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
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) {
			d.onUp()
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
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return err
	}
	d.cm = cm
	return nil
}

// serve publishes the device's outbox until it is closed and empty or ctx ends.
func (s *Simulator) serve(ctx context.Context, d *device) {
	for {
		m, status, ok := d.ob.next(ctx)
		if !ok {
			return
		}
		if status != "" {
			s.publishStatus(ctx, d, status)
			continue
		}
		s.deliver(ctx, d, m)
	}
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

// deliver publishes m, waiting for the connection and retrying after a lost one,
// until it is acknowledged, refused, or ctx ends.
func (s *Simulator) deliver(ctx context.Context, d *device, m *message) {
	mayHaveArrived := false
	for {
		connCtx, err := d.awaitConnection(ctx)
		if err != nil {
			s.update(func(sum *Summary) { sum.Messages.Failed++; sum.Messages.Unsent++ })
			return
		}
		if mayHaveArrived {
			s.update(func(sum *Summary) { sum.Messages.Resent++ })
		}
		pctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(connCtx, cancel)
		resp, err := d.cm.Publish(pctx, &paho.Publish{Topic: m.topic, QoS: s.cfg.QoS, Payload: m.payload})
		stop()
		cancel()
		switch {
		case err == nil:
			s.published(d, m)
			return
		case (resp != nil && resp.ReasonCode >= 0x80) || errors.Is(err, paho.ErrInvalidArguments):
			s.log.Warn("message refused by the broker", "sensor_id", d.id, "topic", m.topic, "err", err)
			s.update(func(sum *Summary) { sum.Messages.Failed++; sum.Messages.Refused++ })
			return
		case ctx.Err() != nil:
			s.update(func(sum *Summary) { sum.Messages.Failed++; sum.Messages.Unsent++ })
			return
		}
		mayHaveArrived = !errors.Is(err, autopaho.ConnectionDownError)
		select { // wait for the loss to be noticed, or a moment
		case <-connCtx.Done():
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
		}
	}
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
