package room

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicekit"
	"github.com/atrium-iot/atrium/services/room/occupancy"
)

// Queue is the bus queue the service consumes from.
const Queue = "room"

// Options tune the service; zero values take the defaults.
type Options struct {
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	// PublishInterval is how often the rooms changed since the last round get a
	// room.metrics.updated (default 250ms): each changed room once per round,
	// however many batches touched it.
	PublishInterval time.Duration
	// ForgetAfter is how long applied batch ids are remembered to recognise a
	// redelivery (default 48h).
	ForgetAfter time.Duration
	// Now is the service's clock (default time.Now). The "last 5 minutes" and
	// history defaults are anchored on it.
	Now func() time.Time
	// NoEstimate turns the occupancy estimate off (occupied_estimate is not
	// computed; rooms without an occupancy sensor say occupied: null).
	NoEstimate bool
	// Model is the occupancy model (default occupancy.Default(), the committed
	// one).
	Model *occupancy.Model
}

// Service is the room service.
type Service struct {
	store Store
	bus   bus.Bus
	log   *slog.Logger
	opts  Options
	kit   servicekit.Kit

	readings   *prometheus.CounterVec
	batches    *prometheus.CounterVec
	publishErr prometheus.Counter
	unencoded  prometheus.Counter
	estimates  prometheus.Counter

	model *occupancy.Model // nil: no estimate

	mu      sync.Mutex
	dirty   map[string]struct{} // rooms changed since the last publish round
	pending map[string]span     // rooms whose estimate must be brought up to date
	// estimated is the newest minute estimated per room (by this process).
	estimated map[string]time.Time

	consuming atomic.Bool // Run has subscribed to the bus
}

// errNotConsuming fails /readyz until Run has subscribed to the bus.
var errNotConsuming = errors.New("not consuming from the bus yet")

// New makes the room service over its store and bus.
func New(store Store, b bus.Bus, log *slog.Logger, opts Options) *Service {
	servicekit.Default(&opts.MaxBody, 1<<20)
	servicekit.Default(&opts.PublishInterval, 250*time.Millisecond)
	servicekit.Default(&opts.ForgetAfter, 48*time.Hour)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{store: store, bus: b, log: log, opts: opts, kit: servicekit.New(log, store, b), dirty: map[string]struct{}{}, pending: map[string]span{}, estimated: map[string]time.Time{}}
	s.kit.Ready("consumer", func(context.Context) error {
		if !s.consuming.Load() {
			return errNotConsuming
		}
		return nil
	})
	if !opts.NoEstimate {
		s.model = opts.Model
		if s.model == nil {
			s.model = occupancy.Default()
		}
	}
	s.readings = s.kit.CounterVec("atrium_room_readings_total", "Readings received from the bus, by outcome (applied, duplicate, unroomed, invalid).", "outcome")
	s.batches = s.kit.CounterVec("atrium_room_batches_total", "sensor.data.received events handled, by outcome (applied, duplicate, failed).", "outcome")
	s.publishErr = s.kit.Counter("atrium_room_publish_errors_total", "Failed publishes of room.metrics.updated (retried next round).")
	s.unencoded = s.kit.Counter("atrium_room_publish_skipped_total", "room.metrics.updated not published because the room's metrics could not be encoded (not retried: the other rooms go on).")
	s.estimates = s.kit.Counter("atrium_room_occupancy_estimates_total", "Minutes of occupied_estimate computed and stored (a minute recomputed counts again).")
	return s
}

// Handler is the service's HTTP API.
func (s *Service) Handler() http.Handler { return s.kit.Handler(s.routes) }

// Run consumes sensor.data.received from the bus queue "room", publishes
// room.metrics.updated for the rooms that changed, and forgets old batch ids,
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := s.bus.Subscribe(ctx, Queue, []string{bus.SensorDataReceived}, s.Consume); err != nil {
		return fmt.Errorf("room: subscribe: %w", err)
	}
	s.consuming.Store(true)
	defer s.consuming.Store(false)
	pub := time.NewTicker(s.opts.PublishInterval)
	defer pub.Stop()
	forget := time.NewTicker(time.Hour)
	defer forget.Stop()
	s.forget(ctx)
	for {
		select {
		case <-ctx.Done():
			// Publish what the last batches changed before leaving, without
			// waiting long for a bus that is down.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.estimate(fctx)
			s.publishDirty(fctx)
			cancel()
			return nil
		case <-pub.C:
			s.estimate(ctx)
			s.publishDirty(ctx)
		case <-forget.C:
			s.forget(ctx)
		}
	}
}

func (s *Service) estimate(ctx context.Context) {
	if err := s.Estimate(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("estimating occupancy failed", "err", err)
	}
}

func (s *Service) forget(ctx context.Context) {
	n, err := s.store.Forget(ctx, s.opts.Now().Add(-s.opts.ForgetAfter))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("forgetting old batch ids failed", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Debug("forgot old batch ids", "count", n)
	}
}

// Consume applies one sensor.data.received event to the store. It is the bus
// handler of the service, exported for benchmarks and tools that feed events
// directly. An event that is not JSON fails (and is dead-lettered by the bus);
// invalid readings in it are skipped and counted.
func (s *Service) Consume(ctx context.Context, m bus.Message) error {
	ev, invalid, err := events.DecodeSensorData(m.Body)
	if err != nil {
		s.batches.WithLabelValues("failed").Inc()
		return fmt.Errorf("room: consume %s: decode: %w", m.ID, err)
	}
	if n := dropDerived(&ev.Readings); n > 0 {
		invalid += n
	}
	b := Batch{ID: ev.BatchID, At: s.opts.Now().UTC(), Readings: ev.Readings}
	if b.ID == "" {
		b.ID = "msg:" + m.ID
	}
	if invalid > 0 {
		s.readings.WithLabelValues("invalid").Add(float64(invalid))
		s.log.Warn("invalid readings in event", "batch_id", b.ID, "count", invalid)
	}
	out, err := s.store.Apply(ctx, b)
	if err != nil {
		s.batches.WithLabelValues("failed").Inc()
		return fmt.Errorf("room: consume batch %s: %w", b.ID, err)
	}
	if out.Duplicate {
		s.batches.WithLabelValues("duplicate").Inc()
		s.readings.WithLabelValues("duplicate").Add(float64(len(b.Readings)))
	} else {
		s.batches.WithLabelValues("applied").Inc()
		s.readings.WithLabelValues("applied").Add(float64(out.Readings))
		s.readings.WithLabelValues("unroomed").Add(float64(out.Unroomed))
	}
	// A redelivered batch marks its rooms too: the first delivery may have been
	// applied by a process that died before it published.
	s.markDirty(out.Rooms...)
	if s.model != nil && !out.Duplicate {
		if from, to, ok := inputSpan(b.Readings); ok {
			for _, r := range out.Rooms {
				s.markEstimate(r, from, to)
			}
		}
	}
	return nil
}

// dropDerived removes the readings that claim the type of a derived series
// (the service writes it alone) and returns how many.
func dropDerived(rs *[]reading.Reading) int {
	n := 0
	out := (*rs)[:0]
	for _, r := range *rs {
		if r.Type == EstimateType {
			n++
			continue
		}
		out = append(out, r)
	}
	*rs = out
	return n
}

// inputSpan is the time range of the readings of the estimator's input types.
func inputSpan(rs []reading.Reading) (from, to time.Time, ok bool) {
	for _, r := range rs {
		switch r.Type {
		case occupancy.CO2, occupancy.Temperature, occupancy.Humidity, occupancy.Light:
		default:
			continue
		}
		if !ok || r.Timestamp.Before(from) {
			from = r.Timestamp
		}
		if !ok || r.Timestamp.After(to) {
			to = r.Timestamp
		}
		ok = true
	}
	return from, to, ok
}

func (s *Service) markDirty(rooms ...string) {
	if len(rooms) == 0 {
		return
	}
	s.mu.Lock()
	for _, r := range rooms {
		s.dirty[r] = struct{}{}
	}
	s.mu.Unlock()
}

// publishDirty publishes room.metrics.updated once for each room changed since
// the last round. A failure that a retry may cure (the store, the bus) stops the
// round and leaves the rest for the next one; a room whose metrics cannot be
// encoded is counted, logged and skipped, so that it never holds up the others.
func (s *Service) publishDirty(ctx context.Context) {
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	rooms := sortedKeys(s.dirty)
	s.dirty = map[string]struct{}{}
	s.mu.Unlock()
	for i, id := range rooms {
		err := s.publishRoom(ctx, id)
		switch {
		case err == nil:
		case errors.Is(err, errUnencodable):
			s.unencoded.Inc()
			s.log.Error("room metrics cannot be encoded, not published", "room_id", id, "err", err)
		default:
			s.publishErr.Inc()
			if ctx.Err() == nil {
				s.log.Warn("publishing room metrics failed", "room_id", id, "err", err)
			}
			s.markDirty(rooms[i:]...)
			return
		}
	}
}

// errUnencodable marks a room's metrics that cannot be encoded: retrying will
// not change that.
var errUnencodable = errors.New("unencodable")

func (s *Service) publishRoom(ctx context.Context, id string) error {
	m, err := s.metrics(ctx, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) { // deleted meanwhile
			return nil
		}
		return err
	}
	body, err := events.EncodeRoomMetrics(m)
	if err != nil {
		return fmt.Errorf("metrics of %s: %w: %w", id, errUnencodable, err)
	}
	return s.bus.Publish(ctx, bus.RoomMetricsUpdated, body)
}

// metrics computes a room's current metrics at the service's clock.
func (s *Service) metrics(ctx context.Context, id string) (Metrics, error) {
	now := s.opts.Now().UTC()
	w := WindowAt(now)
	snap, err := s.store.Snapshot(ctx, id, w.From, w.To)
	if err != nil {
		return Metrics{}, err
	}
	return Compute(snap, now), nil
}
