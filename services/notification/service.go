package notification

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicekit"
)

// Options tune the service; zero values take the defaults.
type Options struct {
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	// TickInterval is how often the deadlines of sensor_silent rules are checked
	// and sensor states saved (default 1s).
	TickInterval time.Duration
	// Now is the service's clock (default time.Now).
	Now func() time.Time
	// Hub tunes the WebSocket hub.
	Hub HubOptions
	// WebhookAttempts is how many times a webhook is tried (default 5).
	WebhookAttempts int
	// WebhookBackoff is the wait before the second attempt; it doubles after each
	// failure, up to a minute (default 1s).
	WebhookBackoff time.Duration
	// WebhookTimeout bounds one webhook request (default 10s).
	WebhookTimeout time.Duration
	// WebhookWorkers is how many deliveries run at once (default 4).
	WebhookWorkers int
	// WebhookSecret signs webhooks of rules and sends that bring no secret of their own.
	WebhookSecret string
}

// Service is the notification service.
type Service struct {
	store Store
	bus   bus.Bus
	log   *slog.Logger
	opts  Options
	kit   servicekit.Kit
	hub   *Hub
	hooks *webhooks

	// mu serialises the engines and the application of their transitions: the
	// bus consumers, the silence deadlines and rule changes.
	mu      sync.Mutex
	rules   map[string]Rule
	engine  *Engine
	tracker *Tracker
	batches *recentSet
	ready   atomic.Bool

	readings    prometheus.Counter
	late        prometheus.Counter
	alerts      *prometheus.CounterVec
	publishErrs prometheus.Counter
	skipped     prometheus.Counter // invalid readings inside events, skipped
}

// New makes the notification service over its store and bus. Run loads its state.
func New(store Store, b bus.Bus, log *slog.Logger, opts Options) *Service {
	servicekit.Default(&opts.MaxBody, 1<<20)
	servicekit.Default(&opts.TickInterval, time.Second)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	servicekit.Default(&opts.WebhookAttempts, 5)
	servicekit.Default(&opts.WebhookBackoff, time.Second)
	servicekit.Default(&opts.WebhookTimeout, 10*time.Second)
	servicekit.Default(&opts.WebhookWorkers, 4)
	s := &Service{store: store, bus: b, log: log, opts: opts, kit: servicekit.New(log, store, b),
		rules: map[string]Rule{}, engine: NewEngine(nil), tracker: NewTracker(), batches: newRecentSet(4096)}
	s.kit.Ready("state", func(context.Context) error {
		if !s.ready.Load() {
			return errors.New("loading rules and alerts")
		}
		return nil
	})
	s.hub = NewHub(log, s.kit.Registry(), opts.Hub)
	s.hooks = &webhooks{
		client:   &http.Client{Timeout: opts.WebhookTimeout},
		queue:    make(chan webhookJob, 1024),
		attempts: opts.WebhookAttempts,
		backoff:  opts.WebhookBackoff,
		now:      opts.Now,
		log:      log,
		record:   s.recordAttempt,
	}
	s.readings = s.kit.Counter("atrium_notification_readings_total", "Readings evaluated.")
	s.late = s.kit.Counter("atrium_notification_late_readings_total", "Readings ignored because older than their rule state.")
	s.alerts = s.kit.CounterVec("atrium_notification_alerts_total", "Alert transitions, by kind (raised, acknowledged, resolved).", "kind")
	s.publishErrs = s.kit.Counter("atrium_notification_publish_errors_total", "Failed publishes of alert events.")
	s.skipped = s.kit.Counter("atrium_notification_event_readings_skipped_total", "Invalid readings inside sensor.data.received events, skipped (the rest of the event is evaluated).")
	return s
}

// Handler is the service's HTTP API.
func (s *Service) Handler() http.Handler { return s.kit.Handler(s.routes) }

// Hub is the service's WebSocket hub.
func (s *Service) Hub() *Hub { return s.hub }

// Run loads rules, open alerts and sensor states from the store, consumes
// sensor.data.received, sensor.status.changed and room.metrics.updated, checks the deadlines of
// sensor_silent rules and delivers webhooks until ctx ends; then it saves
// sensor states and closes the WebSocket clients.
func (s *Service) Run(ctx context.Context) error {
	defer s.hub.Close()
	if err := s.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for range s.opts.WebhookWorkers {
		wg.Go(func() { s.hooks.run(ctx) })
	}
	subjects := []string{bus.SensorDataReceived, bus.SensorStatusChanged, bus.RoomMetricsUpdated}
	if err := s.bus.Subscribe(ctx, Queue, subjects, s.handleMessage); err != nil {
		return fmt.Errorf("notification: subscribe: %w", err)
	}
	s.ready.Store(true)
	t := time.NewTicker(s.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			s.mu.Lock()
			s.flush(fctx)
			s.mu.Unlock()
			cancel()
			return nil
		case <-t.C:
			s.Tick(ctx)
		}
	}
}

// load reads the service's state from the store, retrying while it is unavailable.
func (s *Service) load(ctx context.Context) error {
	wait := 100 * time.Millisecond
	for {
		err := s.loadOnce(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrUnavailable) {
			return err
		}
		s.log.Warn("loading state failed, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (s *Service) loadOnce(ctx context.Context) error {
	if err := s.store.SeedRules(ctx, DefaultRules(s.opts.Now().UTC())); err != nil {
		return fmt.Errorf("notification: seed rules: %w", err)
	}
	rules, err := s.store.Rules(ctx)
	if err != nil {
		return fmt.Errorf("notification: load rules: %w", err)
	}
	sensors, err := s.store.Sensors(ctx)
	if err != nil {
		return fmt.Errorf("notification: load sensors: %w", err)
	}
	open, err := s.store.OpenAlerts(ctx)
	if err != nil {
		return fmt.Errorf("notification: load alerts: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setRules(rules)
	s.tracker = NewTracker()
	s.tracker.SetRules(rules)
	for _, st := range sensors {
		s.tracker.Load(st)
	}
	for _, a := range open {
		r, ok := s.rules[a.RuleID]
		switch {
		case !ok:
		case r.Kind == KindSensorSilent:
			s.tracker.restoreSilent(a)
		default:
			s.engine.Restore(a)
		}
	}
	s.log.Info("notification state loaded", "rules", len(rules), "sensors", len(sensors), "open_alerts", len(open))
	return nil
}

// setRules installs rules in the engines; s.mu must be held.
func (s *Service) setRules(rules []Rule) {
	s.rules = make(map[string]Rule, len(rules))
	for _, r := range rules {
		s.rules[r.ID] = r
	}
	s.engine.SetRules(rules)
	s.tracker.SetRules(rules)
}

// Queue is the service's bus queue.
const Queue = "notification"

// handleMessage is the bus handler: an error asks for redelivery.
func (s *Service) handleMessage(ctx context.Context, m bus.Message) error {
	switch m.Subject {
	case bus.SensorDataReceived:
		return s.handleSensorData(ctx, m)
	case bus.SensorStatusChanged:
		ev, err := events.DecodeSensorStatus(m.Body)
		if err != nil {
			return fmt.Errorf("notification: decode %s %s: %w", m.Subject, m.ID, err)
		}
		return s.ApplyStatus(ctx, ev)
	case bus.RoomMetricsUpdated:
		rm, err := events.DecodeRoomMetrics(m.Body)
		if err != nil {
			return fmt.Errorf("notification: decode %s %s: %w", m.Subject, m.ID, err)
		}
		return s.ProcessRoom(ctx, rm)
	}
	return nil
}

// ProcessRoom evaluates a room's metrics against the rules of source "room"
// and applies the alerts they raise and resolve. A redelivered update (not
// newer than the last one evaluated) changes nothing.
func (s *Service) ProcessRoom(ctx context.Context, m events.RoomMetrics) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(ctx, s.engine.EvaluateRoom(&m, nil))
}

// handleSensorData evaluates one sensor.data.received event. An invalid
// reading in it is skipped and counted; only a body that is no event fails (and
// is dead-lettered after the bus's attempts).
func (s *Service) handleSensorData(ctx context.Context, m bus.Message) error {
	ev, skipped, err := events.DecodeSensorData(m.Body)
	if err != nil {
		return fmt.Errorf("notification: decode %s %s: %w", m.Subject, m.ID, err)
	}
	if ev.BatchID != "" && s.batches.has(ev.BatchID) {
		return nil // a redelivery of a batch already evaluated
	}
	if skipped > 0 {
		s.skipped.Add(float64(skipped))
		s.log.Warn("invalid readings in event skipped", "id", m.ID, "batch_id", ev.BatchID, "count", skipped)
	}
	if err := s.Process(ctx, ev.Readings); err != nil {
		return err
	}
	if ev.BatchID != "" {
		s.batches.add(ev.BatchID)
	}
	return nil
}

// Process evaluates readings (sorted by timestamp first) against the threshold
// rules and applies the alerts they raise and resolve.
func (s *Service) Process(ctx context.Context, rs []reading.Reading) error {
	SortReadings(rs)
	s.mu.Lock()
	defer s.mu.Unlock()
	var trans []transition
	lateBefore := s.engine.Late
	for i := range rs {
		trans = s.engine.Evaluate(&rs[i], trans)
	}
	s.readings.Add(float64(len(rs)))
	s.late.Add(float64(s.engine.Late - lateBefore))
	return s.apply(ctx, trans)
}

// ApplyStatus applies a sensor.status.changed event: the sensor's online or
// offline entry in the event log, its sensor_silent alerts raised (those whose
// For has passed already) or resolved, and its state saved. A redelivered or
// late event changes nothing. An error (the log entry could not be written)
// leaves the tracker as it was, for the redelivery.
func (s *Service) ApplyStatus(ctx context.Context, ev events.SensorStatus) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tracker.Changes(ev) {
		return nil
	}
	if err := s.logStatus(ctx, ev); err != nil {
		return err
	}
	trans := append(s.tracker.Status(ev), s.tracker.Expire(s.opts.Now())...)
	err := s.apply(ctx, trans)
	s.flush(ctx)
	return err
}

// Tick raises the sensor_silent alerts whose deadline has passed and saves
// changed sensor states. Run calls it every TickInterval.
func (s *Service) Tick(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	raises := s.tracker.Expire(s.opts.Now())
	if err := s.apply(ctx, raises); err != nil {
		s.log.Warn("raising silent-sensor alerts failed", "err", err)
	}
	s.flush(ctx)
}

// flush saves changed sensor states; s.mu must be held.
func (s *Service) flush(ctx context.Context) {
	dirty := s.tracker.dirtyStates()
	if len(dirty) == 0 {
		return
	}
	if err := s.store.SaveSensors(ctx, dirty); err != nil {
		s.tracker.markDirty(dirty)
		s.log.Warn("saving sensor states failed", "sensors", len(dirty), "err", err)
	}
}

func (s *Service) now() time.Time { return s.opts.Now().UTC() }

func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// logStatus writes a sensor's status change to the event log.
func (s *Service) logStatus(ctx context.Context, st events.SensorStatus) error {
	ev := Event{ID: newID(), Type: EventSensorOffline, Severity: SeverityWarning, RoomID: st.RoomID, SensorID: st.SensorID,
		Time: st.Since, RecordedAt: s.now()}
	ev.Message = fmt.Sprintf("sensor %s went offline: silent since %s", st.SensorID, st.LastSeen.Format(time.RFC3339))
	if st.Status == events.StatusOnline {
		ev.Type, ev.Severity = EventSensorOnline, SeverityInfo
		ev.Message = fmt.Sprintf("sensor %s is online", st.SensorID)
		if st.Previous == "" {
			ev.Message = fmt.Sprintf("sensor %s seen for the first time", st.SensorID)
		}
	}
	if err := s.store.AppendEvent(ctx, ev); err != nil {
		return fmt.Errorf("notification: record %s of %s: %w", ev.Type, st.SensorID, err)
	}
	return nil
}

// apply applies transitions in order; s.mu must be held. A raise that fails is
// forgotten by its engine, so a redelivery of the batch (or the next expiry)
// evaluates it again.
func (s *Service) apply(ctx context.Context, trans []transition) error {
	var errs []error
	raised := map[AlertKey]string{}
	for _, t := range trans {
		switch t.kind {
		case transRaise:
			id, err := s.raise(ctx, t)
			if t.rule.Kind == KindSensorSilent {
				s.tracker.bindSilent(t.key.SensorID, t.key.RuleID, id)
			} else if err != nil {
				s.engine.Reset(t.key)
			} else {
				s.engine.Bind(t.key, id)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			raised[t.key] = id
		case transResolve:
			if t.alertID == "" {
				t.alertID = raised[t.key]
			}
			if t.alertID == "" {
				continue // its raise failed
			}
			if err := s.resolve(ctx, t); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (s *Service) raise(ctx context.Context, t transition) (string, error) {
	r := t.rule
	a := Alert{ID: newID(), RuleID: r.ID, RoomID: t.key.RoomID, SensorID: t.key.SensorID, Type: t.key.Type,
		Severity: r.Severity, State: StateActive, Value: t.value, RaisedAt: t.at.UTC(), Message: r.describe(t.value)}
	if r.Kind == KindSensorSilent {
		a.Message = fmt.Sprintf("sensor %s silent for %s", a.SensorID, time.Duration(r.For))
	}
	ev := s.alertEvent(EventAlertRaised, a, a.RaisedAt, a.Message)
	got, created, err := s.store.RaiseAlert(ctx, a, ev)
	if err != nil {
		return "", fmt.Errorf("notification: raise alert of rule %s: %w", r.ID, err)
	}
	if !created {
		return got.ID, nil
	}
	s.alerts.WithLabelValues("raised").Inc()
	s.announce(ctx, EventAlertRaised, bus.AlertRaised, got, r)
	return got.ID, nil
}

func (s *Service) resolve(ctx context.Context, t transition) error {
	msg := t.reason
	if msg == "" && t.rule != nil {
		msg = fmt.Sprintf("%s back to %g", t.rule.Metric, t.value)
	}
	at := t.at
	if at.IsZero() {
		at = s.now()
	}
	sev := ""
	if t.rule != nil {
		sev = t.rule.Severity
	} else if r, ok := s.rules[t.key.RuleID]; ok {
		sev = r.Severity
	}
	ev := Event{ID: newID(), Type: EventAlertResolved, Severity: sev, AlertID: t.alertID, RuleID: t.key.RuleID, RoomID: t.key.RoomID,
		SensorID: t.key.SensorID, Message: msg, Time: at.UTC(), RecordedAt: s.now()}
	got, changed, err := s.store.ResolveAlert(ctx, t.alertID, at.UTC(), ev)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("notification: resolve alert %s: %w", t.alertID, err)
	}
	if !changed {
		return nil
	}
	s.alerts.WithLabelValues("resolved").Inc()
	rule := s.rules[got.RuleID]
	s.announce(ctx, EventAlertResolved, bus.AlertResolved, got, &rule)
	return nil
}

// alertEvent is the log entry of an alert change.
func (s *Service) alertEvent(typ string, a Alert, at time.Time, msg string) Event {
	data, _ := json.Marshal(a)
	return Event{ID: newID(), Type: typ, Severity: a.Severity, RoomID: a.RoomID, SensorID: a.SensorID, AlertID: a.ID,
		RuleID: a.RuleID, Message: msg, Data: data, Time: at, RecordedAt: s.now()}
}

// announce tells the world about an alert change: the bus (subject may be ""),
// WebSocket clients and the rule's webhook.
func (s *Service) announce(ctx context.Context, kind, subject string, a Alert, r *Rule) {
	if subject != "" {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		body, err := events.EncodeAlert(a)
		if err == nil {
			err = s.bus.Publish(pctx, subject, body)
		}
		if err != nil {
			s.publishErrs.Inc()
			s.log.Warn("publishing alert event failed", "subject", subject, "alert", a.ID, "err", err)
		}
		cancel()
	}
	p := Push{Kind: kind, Severity: a.Severity, RoomID: a.RoomID, Time: s.now(), Alert: &a}
	s.hub.Broadcast(p)
	if r != nil && r.WebhookURL != "" {
		s.sendWebhook(r.WebhookURL, r.WebhookSecret, kind, p, Event{Severity: a.Severity, RoomID: a.RoomID, SensorID: a.SensorID, AlertID: a.ID, RuleID: a.RuleID})
	}
}

// sendWebhook queues a webhook delivery of p.
func (s *Service) sendWebhook(url, secret, kind string, p Push, ref Event) {
	body, _ := json.Marshal(p)
	if secret == "" {
		secret = s.opts.WebhookSecret
	}
	j := webhookJob{id: newID(), url: url, secret: secret, event: kind, body: body, ref: ref}
	if !s.hooks.enqueue(j) {
		s.recordAttempt(context.Background(), j, attempt{Delivery: j.id, URL: url, Event: kind, Error: "webhook queue full, dropped", Final: true})
	}
}

// recordAttempt logs one webhook attempt as an event.
func (s *Service) recordAttempt(ctx context.Context, j webhookJob, a attempt) {
	data, _ := json.Marshal(a)
	ev := j.ref
	ev.ID, ev.Type, ev.Data, ev.Time, ev.RecordedAt = newID(), EventWebhookAttempt, data, s.now(), s.now()
	ev.Message = fmt.Sprintf("webhook %s attempt %d: ok", j.event, a.Attempt)
	if !a.OK {
		ev.Message = fmt.Sprintf("webhook %s attempt %d failed: %s", j.event, a.Attempt, a.Error)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.store.AppendEvent(rctx, ev); err != nil {
		s.log.Warn("recording webhook attempt failed", "delivery", j.id, "err", err)
	}
}

// recentSet remembers the last n batch ids.
type recentSet struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string
	next int
}

func newRecentSet(n int) *recentSet {
	return &recentSet{set: make(map[string]struct{}, n), ring: make([]string, n)}
}

func (r *recentSet) has(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[id]
	return ok
}

func (r *recentSet) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.set[id]; ok {
		return
	}
	if old := r.ring[r.next]; old != "" {
		delete(r.set, old)
	}
	r.ring[r.next] = id
	r.set[id] = struct{}{}
	r.next = (r.next + 1) % len(r.ring)
}
