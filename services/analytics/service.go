package analytics

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicekit"
)

// Options tune the service; zero values take the defaults.
type Options struct {
	// SensorURL is the base URL of the sensor service (its registry).
	SensorURL string
	// HTTPClient calls the sensor service (default: a client with a 3 s timeout).
	HTTPClient *http.Client
	// RegistryTries is how many times one registry page is asked for (default 3),
	// RegistryBackoff the wait before the second try, doubling after (default 100 ms).
	RegistryTries   int
	RegistryBackoff time.Duration
	// RegistryTTL is how long a registry answer is reused (default 5 s).
	RegistryTTL time.Duration
	// SummaryTTL is how long a computed summary is served again (default 1 s;
	// negative: never, every request computes one).
	SummaryTTL time.Duration
	// SummaryStale is how long past SummaryTTL a summary is still served at once
	// while the next one is computed in the background, as HTTP's
	// stale-while-revalidate (default 10 s; negative: never, a request past the
	// TTL waits for the new summary). A dashboard polling the summary then never
	// waits for the store; one that comes back after a pause gets a new one.
	SummaryStale time.Duration
	// Consumers is the number of concurrent consumers of the bus queue (default
	// 64). Each holds one message until its readings are stored, so it also bounds
	// how many messages one ingest batch can gather.
	Consumers int
	// IngestBatch is the most readings one write to the store gathers from the
	// consumers (default 50,000: ClickHouse spends less per reading the larger
	// the INSERT, SQLite the larger the transaction); IngestWait how long a batch waits for more
	// messages after its first (default 200 ms). A batch is written early when
	// every consumer is waiting on it.
	IngestBatch int
	IngestWait  time.Duration
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	// SweepInterval is how often pending reports are looked for (default 30 s).
	SweepInterval time.Duration
	// Now is the service's clock (default time.Now).
	Now func() time.Time
}

// Service is the analytics service.
type Service struct {
	store Store
	bus   bus.Bus
	log   *slog.Logger
	opts  Options
	kit   servicekit.Kit
	sens  *registry

	added    prometheus.Counter
	received prometheus.Counter
	badMsgs  prometheus.Counter
	skipped  prometheus.Counter // invalid readings inside events, skipped
	reports  *prometheus.CounterVec

	rate rateWindow

	sumMu         sync.Mutex // guards sumAt, summary and sumRefreshing
	sumAt         time.Time
	summary       *Summary
	sumRefreshing bool
	sumCompute    sync.Mutex // one summary computed at a time

	queue  chan string     // report ids to generate
	ingest chan *ingestJob // decoded readings waiting for the batcher
}

// New makes the analytics service over its store and bus.
func New(store Store, b bus.Bus, log *slog.Logger, opts Options) *Service {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 3 * time.Second}
	}
	servicekit.Default(&opts.RegistryTries, 3)
	servicekit.Default(&opts.RegistryBackoff, 100*time.Millisecond)
	servicekit.Default(&opts.RegistryTTL, 5*time.Second)
	if opts.SummaryTTL == 0 {
		opts.SummaryTTL = time.Second
	}
	if opts.SummaryStale == 0 {
		opts.SummaryStale = 10 * time.Second
	}
	servicekit.Default(&opts.Consumers, 64)
	servicekit.Default(&opts.IngestBatch, 50000)
	servicekit.Default(&opts.IngestWait, 200*time.Millisecond)
	servicekit.Default(&opts.MaxBody, 1<<20)
	servicekit.Default(&opts.SweepInterval, 30*time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Service{
		store: store, bus: b, log: log, opts: opts, kit: servicekit.New(log, store, b),
		sens: &registry{
			base: strings.TrimSuffix(opts.SensorURL, "/"), client: opts.HTTPClient,
			tries: opts.RegistryTries, backoff: opts.RegistryBackoff, ttl: opts.RegistryTTL, now: opts.Now,
		},
		queue:  make(chan string, 1024),
		ingest: make(chan *ingestJob),
	}
	s.added = s.kit.Counter("atrium_analytics_readings_added_total", "Readings added to the analytics store (new identities).")
	s.received = s.kit.Counter("atrium_analytics_readings_received_total", "Readings received from the bus, duplicates included.")
	s.badMsgs = s.kit.Counter("atrium_analytics_bad_messages_total", "Bus messages that could not be decoded (dropped).")
	s.skipped = s.kit.Counter("atrium_analytics_event_readings_skipped_total", "Invalid readings inside sensor.data.received events, skipped (the rest of the event is stored).")
	s.reports = s.kit.CounterVec("atrium_analytics_reports_total", "Reports generated, by outcome (ready, failed).", "outcome")
	return s
}

// Handler is the service's HTTP API.
func (s *Service) Handler() http.Handler { return s.kit.Handler(s.routes) }

// Run consumes the bus (readings and alerts), generates reports, resuming those
// left pending by a previous run, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	subjects := []string{bus.SensorDataReceived, bus.AlertRaised, bus.AlertResolved}
	go s.batcher(ctx)
	for range s.opts.Consumers {
		if err := s.bus.Subscribe(ctx, "analytics", subjects, s.handleMessage); err != nil {
			return fmt.Errorf("analytics: subscribe: %w", err)
		}
	}
	s.sweep(ctx)
	t := time.NewTicker(s.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-s.queue:
			s.generate(ctx, id)
		case <-t.C:
			s.sweep(ctx)
		}
	}
}

// sweep queues the pending reports (left by a previous run, or not queued).
func (s *Service) sweep(ctx context.Context) {
	pending, err := s.store.PendingReports(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("pending reports lookup failed", "err", err)
		}
		return
	}
	for _, r := range pending {
		s.generate(ctx, r.ID)
		if ctx.Err() != nil {
			return
		}
	}
}

// handleMessage is the bus handler: an error asks for redelivery.
func (s *Service) handleMessage(ctx context.Context, m bus.Message) error {
	switch m.Subject {
	case bus.SensorDataReceived:
		ev, skipped, err := events.DecodeSensorData(m.Body)
		if err != nil {
			s.badMsgs.Inc()
			s.log.Warn("bad sensor.data.received dropped", "id", m.ID, "err", err)
			return nil
		}
		if skipped > 0 {
			s.skipped.Add(float64(skipped))
			s.log.Warn("invalid readings in event skipped", "id", m.ID, "batch_id", ev.BatchID, "count", skipped)
		}
		s.received.Add(float64(len(ev.Readings)))
		if err := s.addBatched(ctx, ev.Readings); err != nil {
			return fmt.Errorf("analytics: add readings: %w", err)
		}
	case bus.AlertRaised, bus.AlertResolved:
		a, err := events.DecodeAlert(m.Body)
		if err != nil {
			s.badMsgs.Inc()
			s.log.Warn("bad alert event dropped", "id", m.ID, "subject", m.Subject, "err", err)
			return nil
		}
		state, when := AlertRaised, a.RaisedAt
		if m.Subject == bus.AlertResolved {
			state, when = AlertResolved, s.opts.Now()
			if a.ResolvedAt != nil {
				when = *a.ResolvedAt
			}
		}
		if err := s.store.RecordAlert(ctx, a.ID, state, when); err != nil {
			return fmt.Errorf("analytics: record alert: %w", err)
		}
	}
	return nil
}

// ingestJob is one message's readings handed to the batcher; done receives the
// outcome of the write that carried them.
type ingestJob struct {
	rs   []reading.Reading
	done chan error
}

// addBatched hands rs to the batcher and waits until the write carrying them is
// done: the message is acknowledged only once its readings are stored.
func (s *Service) addBatched(ctx context.Context, rs []reading.Reading) error {
	j := &ingestJob{rs: rs, done: make(chan error, 1)}
	select {
	case s.ingest <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// batcher gathers the consumers' readings into one AddReadings call of up to
// IngestBatch readings, written when full, when every consumer is waiting on it
// or IngestWait after its first message. A failed write fails every message of
// the batch (they are redelivered; the store skips what it already has).
func (s *Service) batcher(ctx context.Context) {
	var (
		jobs  []*ingestJob
		rs    []reading.Reading
		timer = time.NewTimer(time.Hour)
	)
	timer.Stop()
	flush := func() {
		timer.Stop()
		n, err := s.store.AddReadings(ctx, rs)
		if err == nil {
			s.added.Add(float64(n))
			s.rate.add(s.opts.Now(), n)
		}
		for _, j := range jobs {
			j.done <- err
		}
		jobs, rs = nil, nil
	}
	for {
		select {
		case <-ctx.Done():
			for _, j := range jobs {
				j.done <- ctx.Err()
			}
			return
		case j := <-s.ingest:
			if len(jobs) == 0 {
				timer.Reset(s.opts.IngestWait)
			}
			jobs = append(jobs, j)
			rs = append(rs, j.rs...)
			if len(rs) >= s.opts.IngestBatch || len(jobs) >= s.opts.Consumers {
				flush()
			}
		case <-timer.C:
			if len(jobs) > 0 {
				flush()
			}
		}
	}
}

// rateWindow counts readings added per second over the last minute.
type rateWindow struct {
	secs  [60]atomic.Int64 // count per second, slot = unix second % 60
	stamp [60]atomic.Int64 // the unix second each slot counts
}

func (w *rateWindow) add(now time.Time, n int) {
	sec := now.Unix()
	i := sec % 60
	if w.stamp[i].Load() != sec {
		w.stamp[i].Store(sec)
		w.secs[i].Store(0)
	}
	w.secs[i].Add(int64(n))
}

// perSecond is the mean rate over the 60 whole seconds before now.
func (w *rateWindow) perSecond(now time.Time) float64 {
	sec := now.Unix()
	var total int64
	for i := range 60 {
		if st := w.stamp[i].Load(); st < sec && st >= sec-60 {
			total += w.secs[i].Load()
		}
	}
	return float64(total) / 60
}
