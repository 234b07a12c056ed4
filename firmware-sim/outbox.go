package sim

import (
	"context"
	"sync"
)

// outbox is one device's bounded queue of messages waiting to be published. While
// the device is connected a full outbox makes the producer wait (backpressure);
// while it is disconnected the oldest message is dropped to make room and counted
// as overflowed, as a real device with a fixed buffer would.
type outbox struct {
	mu        sync.Mutex
	items     []*message
	head      int
	max       int
	connected bool
	closed    bool
	status    string        // a status payload to publish before the next message
	changed   chan struct{} // closed and replaced on every change
}

func newOutbox(max int) *outbox {
	return &outbox{max: max, changed: make(chan struct{})}
}

// notify wakes every waiter. Caller holds mu.
func (o *outbox) notify() {
	close(o.changed)
	o.changed = make(chan struct{})
}

func (o *outbox) len() int { return len(o.items) - o.head }

// push adds m. It waits for room while the device is connected and returns the
// messages it dropped to make room while disconnected.
func (o *outbox) push(ctx context.Context, m *message) (dropped []*message, err error) {
	for {
		o.mu.Lock()
		if o.len() < o.max || !o.connected {
			for o.len() >= o.max {
				dropped = append(dropped, o.items[o.head])
				o.items[o.head] = nil
				o.head++
			}
			o.items = append(o.items, m)
			o.notify()
			o.mu.Unlock()
			return dropped, nil
		}
		ch := o.changed
		o.mu.Unlock()
		if err := awaitClose(ctx, ch); err != nil {
			return nil, err
		}
	}
}

// next waits, while the device is connected, for a pending status or the oldest
// message; a message stays in the outbox (where it may overflow) until the device
// is connected. It returns ok false once the outbox is closed and empty, or when ctx
// ends.
func (o *outbox) next(ctx context.Context) (m *message, status string, ok bool) {
	for {
		o.mu.Lock()
		if o.connected && o.status != "" {
			status, o.status = o.status, ""
			o.mu.Unlock()
			return nil, status, true
		}
		if o.connected && o.len() > 0 {
			m = o.take()
			o.mu.Unlock()
			return m, "", true
		}
		if o.closed && o.len() == 0 {
			o.mu.Unlock()
			return nil, "", false
		}
		ch := o.changed
		o.mu.Unlock()
		if awaitClose(ctx, ch) != nil {
			return nil, "", false
		}
	}
}

// poll is next without waiting: a pending status or the oldest message while the
// device is connected; otherwise changed, which is closed at the next change, and
// finished when the outbox is closed and empty.
func (o *outbox) poll() (m *message, status string, changed <-chan struct{}, finished bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.connected && o.status != "" {
		status, o.status = o.status, ""
		return nil, status, nil, false
	}
	if o.connected && o.len() > 0 {
		return o.take(), "", nil, false
	}
	return nil, "", o.changed, o.closed && o.len() == 0
}

// take removes and returns the oldest message. Caller holds mu; the outbox is not
// empty.
func (o *outbox) take() *message {
	m := o.items[o.head]
	o.items[o.head] = nil
	o.head++
	if o.head > 64 && o.head*2 > len(o.items) {
		o.items = append([]*message(nil), o.items[o.head:]...)
		o.head = 0
	}
	o.notify()
	return m
}

// setConnected records the connection state; on connect it queues status to be
// published first.
func (o *outbox) setConnected(up bool, status string) {
	o.mu.Lock()
	o.connected = up
	if up {
		o.status = status
	}
	o.notify()
	o.mu.Unlock()
}

// close says no more messages will be pushed.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.notify()
	o.mu.Unlock()
}

// takeAll empties the outbox and returns what was in it.
func (o *outbox) takeAll() []*message {
	o.mu.Lock()
	defer o.mu.Unlock()
	rest := append([]*message(nil), o.items[o.head:]...)
	o.items, o.head = nil, 0
	o.notify()
	return rest
}
