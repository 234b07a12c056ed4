package notification_test

import (
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/notification"
)

// TestInvalidReadingInEvent: one invalid reading in an event is skipped and
// counted; the event's other readings are evaluated once, and the event is
// neither redelivered nor dead-lettered. Before, the whole event failed to
// decode, was redelivered and dead-lettered, and its valid readings were lost.
func TestInvalidReadingInEvent(t *testing.T) {
	c := &clock{t: t0.Add(10 * time.Minute)}
	e := start(t, t.TempDir(), notification.Options{Now: c.Now})
	high := notification.Series("co2-1", "room-101", "co2", t0, 30*time.Second, notification.Repeat(1200, 12)...)
	bad := reading.Reading{SensorID: "co2-2", RoomID: "room-101", Type: "co2", Value: -5, Timestamp: t0} // below the plausible range
	e.publish("key:agent-hq/b-1", append(high[:6:6], append([]reading.Reading{bad}, high[6:]...)...)...)
	testwait.For(t, "the valid readings evaluated", func() bool {
		return httpxtest.Scrape(t, nil, e.url).Get("atrium_notification_readings_total") == float64(len(high))
	})
	if got := httpxtest.Scrape(t, nil, e.url).Get("atrium_notification_event_readings_skipped_total"); got != 1 {
		t.Errorf("skipped readings = %v, want 1", got)
	}
	testwait.For(t, "the alert raised", func() bool { return len(e.published("alert.raised")) == 1 })
	// A later event is evaluated too, and the first is not evaluated again.
	e.probe("key:agent-hq/b-2", len(high)+1)
	if n := e.bus.DeadLettered.Load(); n != 0 {
		t.Errorf("%d messages dead-lettered, want 0", n)
	}
	if got := httpxtest.Scrape(t, nil, e.url).Get("atrium_notification_event_readings_skipped_total"); got != 1 {
		t.Errorf("skipped readings after the probe = %v, want 1", got)
	}
}
