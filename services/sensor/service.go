package sensor

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/servicekit"
)

// Options tune the service; zero values take the defaults.
type Options struct {
	// MaxBody bounds a request body after decompression (default 8 MiB).
	MaxBody int64
	// OfflineAfter is how long a sensor may be silent before it is offline (default 5m).
	OfflineAfter time.Duration
	// RelayInterval is how often unpublished events are retried (default 2s).
	RelayInterval time.Duration
	// StatusInterval is how often the registry is swept for sensors gone
	// offline or back online (default OfflineAfter/10, from 1s to 30s). A
	// sensor not marked online that reports is swept for at once.
	StatusInterval time.Duration
	// Now is the service's clock (default time.Now).
	Now func() time.Time
}

// Service is the sensor service: ingestion, the readings and the registry.
type Service struct {
	store Store
	bus   bus.Bus
	log   *slog.Logger
	opts  Options
	kit   servicekit.Kit

	ingested   *prometheus.CounterVec
	batches    *prometheus.CounterVec
	publishErr prometheus.Counter
	// statusChanges counts sensor.status.changed published, by status.
	statusChanges *prometheus.CounterVec
	live          *liveness

	// flight and sent make a replayed batch whose event is being (or was just)
	// published by another request wait for that publish instead of repeating it.
	flight singleflight.Group
	sentMu sync.Mutex
	sent   map[string]struct{}
	sentQ  []string
}

// recentSent bounds how many published batch ids the service remembers.
const recentSent = 4096

// New makes the sensor service over its store and bus.
func New(store Store, b bus.Bus, log *slog.Logger, opts Options) *Service {
	servicekit.Default(&opts.MaxBody, httpx.DefaultMaxBody)
	servicekit.Default(&opts.OfflineAfter, 5*time.Minute)
	servicekit.Default(&opts.RelayInterval, 2*time.Second)
	servicekit.Default(&opts.StatusInterval, min(max(opts.OfflineAfter/10, time.Second), 30*time.Second))
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{store: store, bus: b, log: log, opts: opts, kit: servicekit.New(log, store, b), sent: map[string]struct{}{}, live: newLiveness()}
	s.ingested = s.kit.CounterVec("atrium_sensor_readings_total", "Readings received, by outcome (accepted, duplicate, rejected).", "outcome")
	s.batches = s.kit.CounterVec("atrium_sensor_batches_total", "Batches received, by outcome (new, replayed, conflict, failed).", "outcome")
	s.publishErr = s.kit.Counter("atrium_sensor_publish_errors_total", "Failed publishes of sensor.data.received (retried from the outbox).")
	s.statusChanges = s.kit.CounterVec("atrium_sensor_status_changes_total", "sensor.status.changed events published, by status (online, offline).", "status")
	return s
}

// Handler is the service's HTTP API.
func (s *Service) Handler() http.Handler { return s.kit.Handler(s.routes) }

// Run relays outbox events that could not be published at ingest time and
// publishes sensor.status.changed (SweepStatus), until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.RelayInterval)
	defer t.Stop()
	st := time.NewTicker(s.opts.StatusInterval)
	defer st.Stop()
	sweep := func() {
		if err := s.SweepStatus(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sensor status sweep failed", "err", err)
		}
	}
	sweep()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.relay(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("outbox relay failed", "err", err)
			}
		case <-st.C:
			sweep()
		case <-s.live.nudge:
			sweep()
		}
	}
}

func (s *Service) relay(ctx context.Context) error {
	for {
		evs, err := s.store.PendingEvents(ctx, 100)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := s.publish(ctx, ev); err != nil {
				return err
			}
		}
		if len(evs) < 100 {
			return nil
		}
	}
}

// publish sends a batch's event and marks it sent. An error leaves it in the
// outbox. Concurrent publishes of one batch share one attempt, and a batch this
// process has just published is not published again.
func (s *Service) publish(ctx context.Context, ev Event) error {
	_, err, _ := s.flight.Do(ev.BatchID, func() (any, error) {
		s.sentMu.Lock()
		_, done := s.sent[ev.BatchID]
		s.sentMu.Unlock()
		if done {
			return nil, nil
		}
		if err := s.bus.Publish(ctx, bus.SensorDataReceived, ev.Body); err != nil {
			s.publishErr.Inc()
			return nil, errors.Join(ErrUnavailable, err)
		}
		if err := s.store.AckEvent(ctx, ev.BatchID); err != nil {
			return nil, err
		}
		s.sentMu.Lock()
		defer s.sentMu.Unlock()
		s.sent[ev.BatchID] = struct{}{}
		s.sentQ = append(s.sentQ, ev.BatchID)
		if len(s.sentQ) > recentSent {
			delete(s.sent, s.sentQ[0])
			s.sentQ = s.sentQ[1:]
		}
		return nil, nil
	})
	return err
}
