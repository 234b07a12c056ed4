// Package amqpbus is the RabbitMQ Bus, for running Atrium's services as separate
// processes.
//
// Topology, declared (idempotently) on every connect and subscribe:
//
//   - a durable topic exchange (default "atrium") that Publish sends to, with the
//     subject as routing key;
//   - one durable queue per consuming service (Subscribe's queue), bound to the
//     exchange once per pattern;
//   - "<queue>.retry", a durable holding queue: a message whose handler failed waits
//     there RetryDelay (per-message TTL), then the broker dead-letters it back to
//     "<queue>" through the default exchange;
//   - a durable direct dead-letter exchange (default "atrium.dlx") and "<queue>.dlq"
//     bound to it with the queue's name as key, for messages given up on.
//
// Delivery guarantees: messages are persistent and Publish returns only after the
// broker's publisher confirm, so a confirmed message survives a broker restart.
// Consumers ack manually after the handler returned nil; prefetch is bounded.
//
// Attempts: RabbitMQ's classic queues do not count deliveries, so a failed message
// is republished (same AMQP message-id, body and subject) to "<queue>.retry" with
// header x-attempts incremented, and the original is acked only after that
// republish was confirmed. When x-attempts reaches MaxAttempts the message is
// republished to the dead-letter exchange instead, with the handler's error in
// header x-death-reason. A message redelivered because a consumer died before
// acking (AMQP redelivered flag) is not counted as an attempt.
//
// Connection loss: the bus reconnects with exponential backoff, re-declares the
// exchanges, and every consumer re-declares its queues and resumes. Publish waits
// for the connection (and retries a publish whose confirm was lost with it) until
// its ctx ends, so a message may be published twice but is never silently lost;
// consumers are idempotent by Message.ID.
package amqpbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/atrium-iot/atrium/internal/bus"
)

var _ bus.Bus = (*Bus)(nil)

// Errors callers may match with errors.Is.
var (
	// ErrClosed is returned by Publish, Subscribe and Ping after Close.
	ErrClosed = errors.New("amqpbus: closed")
	// ErrNacked is returned by Publish when the broker refused the message.
	ErrNacked = errors.New("amqpbus: broker nacked the message")
	// ErrNotConnected is returned by Ping while the bus is reconnecting.
	ErrNotConnected = errors.New("amqpbus: not connected")
)

// Message headers the bus sets.
const (
	HeaderAttempts    = "x-attempts"     // deliveries that failed so far
	HeaderSubject     = "x-subject"      // the subject the message was published with
	HeaderDeathReason = "x-death-reason" // why a message was dead-lettered
	HeaderQueue       = "x-queue"        // the queue a message was dead-lettered from
)

// maxReasonLen caps the handler error stored in a dead letter's header.
const maxReasonLen = 1024

// Options tune a Bus. Zero values take the defaults shown.
type Options struct {
	// Exchange is the topic exchange messages are published to ("atrium").
	Exchange string
	// DeadLetterExchange receives messages given up on ("atrium.dlx").
	DeadLetterExchange string
	// Prefetch bounds the unacked messages one consumer holds (64).
	Prefetch int
	// MaxAttempts is how many times a failing message is handed to a handler
	// before it is dead-lettered (5).
	MaxAttempts int
	// RetryDelay is how long a failed message waits before it is handed over
	// again (1s). Negative means no wait.
	RetryDelay time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between reconnection
	// attempts (100ms, 10s).
	ReconnectMin, ReconnectMax time.Duration
	// ConnectionName is shown by the broker's tools ("atrium").
	ConnectionName string
	// Dial opens the TCP connection; nil uses net.Dialer with a 10s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives reconnects, retries and dead letters; nil discards.
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Exchange == "" {
		o.Exchange = "atrium"
	}
	if o.DeadLetterExchange == "" {
		o.DeadLetterExchange = "atrium.dlx"
	}
	if o.Prefetch <= 0 {
		o.Prefetch = 64
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = time.Second
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(10*time.Second, o.ReconnectMin)
	}
	if o.ConnectionName == "" {
		o.ConnectionName = "atrium"
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second}
		o.Dial = d.DialContext
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Bus is a bus.Bus on a RabbitMQ broker. It holds one connection, re-established
// after a loss, with one confirm-mode channel for publishing and one channel per
// subscription.
type Bus struct {
	url  string
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	conn   *amqp.Connection // nil while reconnecting
	ready  chan struct{}    // closed while conn is usable
	pub    *amqp.Channel    // publishing channel on conn, opened on first use
	closed bool

	closing chan struct{} // Close began: no new work, consumers stop taking deliveries
	stop    chan struct{} // consumers and publishers are done: drop the connection
	done    chan struct{} // the connection keeper exited
	pubs    sync.WaitGroup
	subs    sync.WaitGroup
	tags    atomic.Int64
}

// New connects to the broker at url (amqp://user:pass@host:port/vhost) and
// declares the exchanges. It retries with backoff until ctx ends, so services
// may start before the broker.
func New(ctx context.Context, url string, opts Options) (*Bus, error) {
	if _, err := amqp.ParseURI(url); err != nil {
		return nil, fmt.Errorf("amqpbus: parse url: %w", err)
	}
	opts.setDefaults()
	b := &Bus{
		url:     url,
		opts:    opts,
		log:     opts.Logger,
		ready:   make(chan struct{}),
		closing: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	backoff := b.opts.ReconnectMin
	for {
		conn, lost, err := b.connect(ctx)
		if err == nil {
			b.setConn(conn)
			go b.keep(conn, lost)
			return b, nil
		}
		b.log.Warn("amqp connect failed", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("amqpbus: connect: %w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(backoff*2, b.opts.ReconnectMax)
	}
}

// connect dials, declares the exchanges and returns the connection with a channel
// that reports its loss.
func (b *Bus) connect(ctx context.Context) (*amqp.Connection, chan *amqp.Error, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(b.opts.ConnectionName)
	conn, err := amqp.DialConfig(b.url, amqp.Config{
		Heartbeat:  10 * time.Second,
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			c, err := b.opts.Dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Bound the handshake; amqp091 clears the deadline once it is done.
			if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	lost := conn.NotifyClose(make(chan *amqp.Error, 1))
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := b.declareExchanges(ch); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, lost, nil
}

func (b *Bus) declareExchanges(ch *amqp.Channel) error {
	if err := ch.ExchangeDeclare(b.opts.Exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", b.opts.Exchange, err)
	}
	if err := ch.ExchangeDeclare(b.opts.DeadLetterExchange, amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", b.opts.DeadLetterExchange, err)
	}
	return nil
}

func (b *Bus) setConn(conn *amqp.Connection) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.conn = conn
	close(b.ready)
}

func (b *Bus) dropConn() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.conn == nil {
		return
	}
	b.conn = nil
	b.pub = nil
	b.ready = make(chan struct{})
}

// keep watches the connection and replaces it when it is lost, until stop.
func (b *Bus) keep(conn *amqp.Connection, lost chan *amqp.Error) {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			b.dropConn()
			if err := conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
				b.log.Warn("amqp close failed", "err", err)
			}
			return
		case err := <-lost:
			b.dropConn()
			b.log.Warn("amqp connection lost", "err", err)
		}
		backoff := b.opts.ReconnectMin
		for {
			t := time.NewTimer(backoff)
			select {
			case <-b.stop:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			c, l, err := b.connect(ctx)
			cancel()
			if err == nil {
				conn, lost = c, l
				b.setConn(conn)
				b.log.Info("amqp reconnected")
				break
			}
			b.log.Warn("amqp reconnect failed", "err", err, "retry_in", backoff)
			backoff = min(backoff*2, b.opts.ReconnectMax)
		}
	}
}

// connection returns the current connection, waiting for one until ctx ends or
// quit closes.
func (b *Bus) connection(ctx context.Context, quit <-chan struct{}) (*amqp.Connection, error) {
	for {
		b.mu.Lock()
		conn, ready := b.conn, b.ready
		b.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-quit:
			return nil, ErrClosed
		case <-time.After(b.opts.ReconnectMin):
			// The connection may have closed without the keeper having noticed yet.
		}
	}
}

// publishChannel returns the confirm-mode publishing channel, opening it when needed.
func (b *Bus) publishChannel(ctx context.Context, quit <-chan struct{}) (*amqp.Channel, error) {
	for {
		b.mu.Lock()
		ch := b.pub
		b.mu.Unlock()
		if ch != nil && !ch.IsClosed() {
			return ch, nil
		}
		conn, err := b.connection(ctx, quit)
		if err != nil {
			return nil, err
		}
		ch, err = conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err == nil {
			// The exchange may have been deleted under a live connection.
			err = b.declareExchanges(ch)
		}
		if err != nil {
			if ch != nil {
				ch.Close()
			}
			return nil, fmt.Errorf("open publish channel: %w", err)
		}
		b.mu.Lock()
		if b.conn == conn && (b.pub == nil || b.pub.IsClosed()) {
			b.pub = ch
			b.mu.Unlock()
			return ch, nil
		}
		b.mu.Unlock()
		ch.Close() // another publisher won, or the connection changed: look again
	}
}

// join counts one more call in flight in calls (the publishes or the consumers,
// which Close waits for), or answers ErrClosed once the bus is closing.
func (b *Bus) join(calls *sync.WaitGroup) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	calls.Add(1)
	return nil
}

// Publish sends body to the exchange with subject as routing key, persistent and
// with a new message ID, and returns once the broker confirmed it. While the
// broker is unreachable it waits and retries until ctx ends.
func (b *Bus) Publish(ctx context.Context, subject string, body []byte) error {
	if err := b.join(&b.pubs); err != nil {
		return err
	}
	defer b.pubs.Done()
	msg := amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		MessageId:    uuid.NewString(),
		Timestamp:    time.Now().UTC(),
		Body:         body,
	}
	if err := b.publish(ctx, b.closing, b.opts.Exchange, subject, msg); err != nil {
		return fmt.Errorf("amqpbus: publish %q: %w", subject, err)
	}
	return nil
}

// publish sends msg and waits for its confirm, retrying across lost channels and
// connections until ctx ends or quit closes.
func (b *Bus) publish(ctx context.Context, quit <-chan struct{}, exchange, key string, msg amqp.Publishing) error {
	backoff := b.opts.ReconnectMin
	for {
		ch, err := b.publishChannel(ctx, quit)
		if errors.Is(err, ErrClosed) || ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		if err == nil {
			var dc *amqp.DeferredConfirmation
			dc, err = ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, msg)
			if err == nil {
				select {
				case <-dc.Done():
				case <-ctx.Done():
					return ctx.Err()
				}
				if dc.Acked() {
					return nil
				}
				if !ch.IsClosed() {
					return ErrNacked
				}
				err = amqp.ErrClosed // the confirm was lost with the channel: send again
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.log.Warn("amqp publish failed, retrying", "exchange", exchange, "key", key, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-quit:
			t.Stop()
			return ErrClosed
		}
		backoff = min(backoff*2, b.opts.ReconnectMax)
	}
}

type subscription struct {
	queue    string
	patterns []string
	h        bus.Handler
	tag      string
}

func (s *subscription) retryQueue() string { return s.queue + ".retry" }
func (s *subscription) deadQueue() string  { return s.queue + ".dlq" }

// Subscribe declares queue (with its retry and dead-letter queues), binds it to
// every pattern, starts a consumer and returns. The consumer handles one message
// at a time, acking it after h returned nil, until ctx ends or the bus closes; it
// resumes by itself after a connection loss. Several consumers of one queue, in
// this process or others, share its messages.
func (b *Bus) Subscribe(ctx context.Context, queue string, patterns []string, h bus.Handler) error {
	if queue == "" || len(patterns) == 0 {
		return fmt.Errorf("amqpbus: subscribe %q: a queue name and at least one pattern are required", queue)
	}
	if err := b.join(&b.subs); err != nil {
		return err
	}
	s := &subscription{
		queue:    queue,
		patterns: patterns,
		h:        h,
		tag:      fmt.Sprintf("%s-%d-%s", b.opts.ConnectionName, b.tags.Add(1), uuid.NewString()[:8]),
	}
	ch, deliveries, err := b.startConsumer(ctx, s)
	if err != nil {
		b.subs.Done()
		return fmt.Errorf("amqpbus: subscribe %q: %w", queue, err)
	}
	go b.consume(ctx, s, ch, deliveries)
	return nil
}

// startConsumer opens a channel, declares the subscription's topology and starts
// consuming.
func (b *Bus) startConsumer(ctx context.Context, s *subscription) (*amqp.Channel, <-chan amqp.Delivery, error) {
	conn, err := b.connection(ctx, b.closing)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, fmt.Errorf("open channel: %w", err)
	}
	deliveries, err := b.declareAndConsume(ch, s)
	if err != nil {
		ch.Close()
		return nil, nil, err
	}
	return ch, deliveries, nil
}

func (b *Bus) declareAndConsume(ch *amqp.Channel, s *subscription) (<-chan amqp.Delivery, error) {
	if err := ch.Qos(b.opts.Prefetch, 0, false); err != nil {
		return nil, fmt.Errorf("qos: %w", err)
	}
	queues := []struct {
		name string
		args amqp.Table
	}{
		// Messages the broker itself drops (say, a length limit set by policy)
		// go to the dead-letter queue too.
		{s.queue, amqp.Table{"x-dead-letter-exchange": b.opts.DeadLetterExchange, "x-dead-letter-routing-key": s.queue}},
		// Expired retries flow back to the queue through the default exchange.
		{s.retryQueue(), amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": s.queue}},
		{s.deadQueue(), nil},
	}
	for _, q := range queues {
		if _, err := ch.QueueDeclare(q.name, true, false, false, false, q.args); err != nil {
			return nil, fmt.Errorf("declare queue %q: %w", q.name, err)
		}
	}
	for _, p := range s.patterns {
		if err := ch.QueueBind(s.queue, p, b.opts.Exchange, false, nil); err != nil {
			return nil, fmt.Errorf("bind queue %q to %q: %w", s.queue, p, err)
		}
	}
	if err := ch.QueueBind(s.deadQueue(), s.queue, b.opts.DeadLetterExchange, false, nil); err != nil {
		return nil, fmt.Errorf("bind queue %q: %w", s.deadQueue(), err)
	}
	deliveries, err := ch.Consume(s.queue, s.tag, false, false, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume %q: %w", s.queue, err)
	}
	return deliveries, nil
}

// consume runs one subscription until ctx ends or the bus closes, starting it
// again after its channel or connection is lost.
func (b *Bus) consume(ctx context.Context, s *subscription, ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	defer b.subs.Done()
	for {
		b.serve(ctx, s, ch, deliveries)
		// Unacked deliveries, prefetched but not handled, go back to the queue.
		if err := ch.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			b.log.Warn("amqp consumer channel close failed", "queue", s.queue, "err", err)
		}
		if b.stopped(ctx) {
			return
		}
		b.log.Warn("amqp consumer interrupted, resubscribing", "queue", s.queue)
		backoff := b.opts.ReconnectMin
		for {
			var err error
			ch, deliveries, err = b.startConsumer(ctx, s)
			if err == nil {
				break
			}
			if b.stopped(ctx) {
				return
			}
			b.log.Warn("amqp resubscribe failed", "queue", s.queue, "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			case <-b.closing:
				t.Stop()
				return
			}
			backoff = min(backoff*2, b.opts.ReconnectMax)
		}
		b.log.Info("amqp consumer resumed", "queue", s.queue)
	}
}

func (b *Bus) stopped(ctx context.Context) bool {
	select {
	case <-b.closing:
		return true
	default:
		return ctx.Err() != nil
	}
}

// serve handles deliveries until the channel closes, ctx ends or the bus closes.
func (b *Bus) serve(ctx context.Context, s *subscription, ch *amqp.Channel, deliveries <-chan amqp.Delivery) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.closing:
			return
		case d, ok := <-deliveries:
			if !ok {
				return
			}
			b.handle(ctx, s, d)
		}
	}
}

func (b *Bus) handle(ctx context.Context, s *subscription, d amqp.Delivery) {
	if b.stopped(ctx) {
		// Not ours to handle any more: back to the queue for the next consumer.
		b.settle(s, d.Nack(false, true))
		return
	}
	m := messageOf(d)
	err := s.h(ctx, m)
	if err == nil {
		b.settle(s, d.Ack(false))
		return
	}
	if ctx.Err() != nil {
		// The consumer is stopping; the failure may be that. Not an attempt.
		b.settle(s, d.Nack(false, true))
		return
	}
	attempts := attemptsOf(d) + 1
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		MessageId:    m.ID,
		Timestamp:    d.Timestamp,
		ContentType:  d.ContentType,
		Body:         d.Body,
		Headers:      amqp.Table{},
	}
	for k, v := range d.Headers {
		msg.Headers[k] = v
	}
	delete(msg.Headers, "x-death") // the broker's own record of the retry hops
	msg.Headers[HeaderAttempts] = int64(attempts)
	msg.Headers[HeaderSubject] = m.Subject
	var exchange, key string
	if attempts >= b.opts.MaxAttempts {
		reason := err.Error()
		if len(reason) > maxReasonLen {
			reason = reason[:maxReasonLen]
		}
		msg.Headers[HeaderDeathReason] = reason
		msg.Headers[HeaderQueue] = s.queue
		exchange, key = b.opts.DeadLetterExchange, s.queue
		b.log.Error("message dead-lettered", "queue", s.queue, "subject", m.Subject, "id", m.ID, "attempts", attempts, "err", err)
	} else {
		exchange, key = "", s.retryQueue()
		if b.opts.RetryDelay > 0 {
			msg.Expiration = strconv.FormatInt(b.opts.RetryDelay.Milliseconds(), 10)
		} else {
			key = s.queue
		}
		b.log.Warn("handler failed, retrying", "queue", s.queue, "subject", m.Subject, "id", m.ID, "attempt", attempts, "err", err)
	}
	if perr := b.publish(pctx, b.stop, exchange, key, msg); perr != nil {
		// The original stays unacked and comes back; the attempt is not counted.
		b.log.Warn("amqp republish failed, requeueing", "queue", s.queue, "id", m.ID, "err", perr)
		b.settle(s, d.Nack(false, true))
		return
	}
	b.settle(s, d.Ack(false))
}

// settle logs a failed ack or nack: the broker redelivers the message after the
// channel closes, so the outcome is a duplicate, never a loss.
func (b *Bus) settle(s *subscription, err error) {
	if err != nil {
		b.log.Warn("amqp ack failed", "queue", s.queue, "err", err)
	}
}

// messageOf turns a delivery into a bus.Message. A message published without an
// AMQP message-id (by another client) gets one derived from its subject and body,
// so it is stable across redeliveries.
func messageOf(d amqp.Delivery) bus.Message {
	subject := d.RoutingKey
	if s, ok := d.Headers[HeaderSubject].(string); ok {
		subject = s
	}
	id := d.MessageId
	if id == "" {
		sum := sha256.Sum256(append([]byte(subject+"\x00"), d.Body...))
		id = hex.EncodeToString(sum[:16])
	}
	return bus.Message{ID: id, Subject: subject, Body: d.Body}
}

func attemptsOf(d amqp.Delivery) int {
	switch v := d.Headers[HeaderAttempts].(type) {
	case int64:
		return int(v)
	case int32:
		return int(v)
	case int16:
		return int(v)
	case int8:
		return int(v)
	case int:
		return v
	}
	return 0
}

// Ping reports whether the broker is reachable, by opening and closing a channel.
func (b *Bus) Ping(ctx context.Context) error {
	b.mu.Lock()
	conn, closed := b.conn, b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if conn == nil || conn.IsClosed() {
		return fmt.Errorf("amqpbus: ping: %w", ErrNotConnected)
	}
	errc := make(chan error, 1)
	go func() {
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Close()
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("amqpbus: ping: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("amqpbus: ping: %w", ctx.Err())
	}
}

// Close stops taking new work, waits for in-flight publishes and handlers (their
// messages acked or put back), then closes the connection. Calling it again
// waits for the first Close.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return nil
	}
	b.closed = true
	close(b.closing)
	b.mu.Unlock()
	b.pubs.Wait()
	b.subs.Wait()
	close(b.stop)
	<-b.done
	return nil
}
