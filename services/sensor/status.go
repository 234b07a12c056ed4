package sensor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/events"
	"github.com/atrium-iot/atrium/internal/reading"
)

// StatusMark is the status last published for a sensor in
// sensor.status.changed, and when: what the service compares the registry
// against, across restarts.
type StatusMark struct {
	SensorID string
	Status   string // StatusOnline or StatusOffline
	At       time.Time
}

// liveness publishes sensor.status.changed. It owns the sensors' published
// statuses (loaded from the store's marks); a sweep compares each registry
// entry's status (by LastSeen against OfflineAfter) with its mark, publishes
// the differences and records each published status as the new mark.
// Publishing comes before marking, so a crash in between publishes the change
// again after a restart: at least once.
type liveness struct {
	mu    sync.Mutex
	marks map[string]string // sensor id → published status; nil until loaded
	nudge chan struct{}     // a sensor without an online mark reported
}

func newLiveness() *liveness {
	return &liveness{nudge: make(chan struct{}, 1)}
}

// seen is told about readings just stored: a sensor not marked online asks for
// a sweep now, so that coming online is published within moments, not at the
// next tick.
func (l *liveness) seen(rs []reading.Reading) {
	l.mu.Lock()
	if l.marks == nil {
		l.mu.Unlock()
		return
	}
	want := false
	for i := range rs {
		if l.marks[rs[i].SensorID] != StatusOnline {
			want = true
			break
		}
	}
	l.mu.Unlock()
	if want {
		select {
		case l.nudge <- struct{}{}:
		default:
		}
	}
}

func (l *liveness) mark(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.marks[id]
}

func (l *liveness) set(id, status string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks[id] = status
}

// ensureMarks loads the published statuses from the store the first time.
func (s *Service) ensureMarks(ctx context.Context) error {
	s.live.mu.Lock()
	loaded := s.live.marks != nil
	s.live.mu.Unlock()
	if loaded {
		return nil
	}
	ms, err := s.store.StatusMarks(ctx)
	if err != nil {
		return fmt.Errorf("sensor: load status marks: %w", err)
	}
	marks := make(map[string]string, len(ms))
	for _, m := range ms {
		marks[m.SensorID] = m.Status
	}
	s.live.mu.Lock()
	s.live.marks = marks
	s.live.mu.Unlock()
	return nil
}

// SweepStatus publishes sensor.status.changed for every registry entry whose
// status differs from the one last published for it, and records each. Run
// calls it every StatusInterval and soon after a sensor not marked online
// reports; tests call it directly.
func (s *Service) SweepStatus(ctx context.Context) error {
	if err := s.ensureMarks(ctx); err != nil {
		return err
	}
	now := s.opts.Now()
	since := now.Add(-s.opts.OfflineAfter)
	cursor := ""
	var errs []error
	for {
		ss, next, err := s.store.Sensors(ctx, SensorQuery{Limit: 1000, Cursor: cursor})
		if err != nil {
			return fmt.Errorf("sensor: status sweep: %w", err)
		}
		for _, sn := range ss {
			status := StatusOffline
			if !sn.LastSeen.Before(since) {
				status = StatusOnline
			}
			prev := s.live.mark(sn.ID)
			if prev == status {
				continue
			}
			if err := s.publishStatus(ctx, sn, status, prev); err != nil {
				errs = append(errs, err)
				if ctx.Err() != nil || errors.Is(err, ErrUnavailable) {
					return errors.Join(errs...) // the bus is down: the next sweep retries
				}
			}
		}
		if next == "" {
			return errors.Join(errs...)
		}
		cursor = next
	}
}

// publishStatus publishes one sensor's status change and records it.
func (s *Service) publishStatus(ctx context.Context, sn Sensor, status, prev string) error {
	ev := events.SensorStatus{SensorID: sn.ID, RoomID: sn.RoomID, Site: sn.Site, Types: sn.Types,
		Status: status, Previous: prev, LastSeen: sn.LastSeen.UTC(), Since: sn.LastSeen.UTC()}
	if status == StatusOffline {
		ev.Since = ev.LastSeen.Add(s.opts.OfflineAfter)
	}
	body, err := events.EncodeSensorStatus(ev)
	if err != nil {
		return fmt.Errorf("sensor: status of %s: %w", sn.ID, err)
	}
	if err := s.bus.Publish(ctx, bus.SensorStatusChanged, body); err != nil {
		s.publishErr.Inc()
		return fmt.Errorf("sensor: publish status of %s: %w", sn.ID, errors.Join(ErrUnavailable, err))
	}
	if err := s.store.MarkStatus(ctx, StatusMark{SensorID: sn.ID, Status: status, At: ev.Since}); err != nil {
		return fmt.Errorf("sensor: mark status of %s: %w", sn.ID, err)
	}
	s.live.set(sn.ID, status)
	s.statusChanges.WithLabelValues(status).Inc()
	return nil
}
