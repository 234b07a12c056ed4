package sim

import (
	"context"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/firmware-sim/replay"
)

func TestOutbox(t *testing.T) {
	msg := func(i int) *message { return &message{topic: string(rune('a' + i))} }
	t.Run("disconnected: oldest overflow, newest kept", func(t *testing.T) {
		o := newOutbox(3)
		var dropped []*message
		for i := range 5 {
			d, err := o.push(context.Background(), msg(i))
			if err != nil {
				t.Fatal(err)
			}
			dropped = append(dropped, d...)
		}
		if len(dropped) != 2 || dropped[0].topic != "a" || dropped[1].topic != "b" {
			t.Fatalf("dropped %v, want a and b", dropped)
		}
		o.setConnected(true, "online")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, st, _ := o.next(ctx); st != "online" {
			t.Errorf("first out %q, want the online status", st)
		}
		for _, want := range []string{"c", "d", "e"} {
			if m, _, ok := o.next(ctx); !ok || m.topic != want {
				t.Fatalf("next = %v, want %s", m, want)
			}
		}
		o.close()
		if _, _, ok := o.next(ctx); ok {
			t.Error("closed empty outbox still yields")
		}
	})
	t.Run("connected: a full outbox makes the producer wait", func(t *testing.T) {
		o := newOutbox(1)
		o.setConnected(true, "")
		if _, err := o.push(context.Background(), msg(0)); err != nil {
			t.Fatal(err)
		}
		pushed := make(chan error, 1)
		go func() { _, err := o.push(context.Background(), msg(1)); pushed <- err }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if m, _, _ := o.next(ctx); m.topic != "a" {
			t.Fatalf("got %v", m)
		}
		if err := <-pushed; err != nil {
			t.Fatal(err)
		}
		if m, _, _ := o.next(ctx); m.topic != "b" {
			t.Fatalf("got %v", m)
		}
	})
	t.Run("waiting producer gives up with its context", func(t *testing.T) {
		o := newOutbox(1)
		o.setConnected(true, "")
		_, _ = o.push(context.Background(), msg(0))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := o.push(ctx, msg(1)); err == nil {
			t.Error("push into a full outbox returned without room")
		}
	})
	t.Run("nothing leaves while disconnected", func(t *testing.T) {
		o := newOutbox(2)
		_, _ = o.push(context.Background(), msg(0))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if m, _, ok := o.next(ctx); ok {
			t.Errorf("got %v while disconnected", m)
		}
		if n := len(o.takeAll()); n != 1 {
			t.Errorf("takeAll %d, want 1", n)
		}
	})
}

func TestEncode(t *testing.T) {
	ts := time.Date(2026, 3, 2, 10, 0, 0, 123e6, time.UTC)
	ms := []replay.Metric{{Type: "temperature", Unit: "Cel", Value: 21.5}, {Type: "pir", Value: 0}}
	tests := []struct {
		form    Form
		topics  []string
		payload string
	}{
		{FormJSON, []string{"atrium/r1/s1"}, `{"temperature":21.5,"pir":0,"ts":1772445600123}`},
		{FormSenML, []string{"atrium/r1/s1"}, `[{"bn":"s1/","bt":1772445600.123,"n":"temperature","u":"Cel","v":21.5},{"n":"pir","v":0}]`},
		{FormPlain, []string{"atrium/r1/s1/temperature", "atrium/r1/s1/pir"}, `21.5`},
	}
	for _, tt := range tests {
		t.Run(string(tt.form), func(t *testing.T) {
			got := encode(tt.form, "r1", "s1", ts, ms)
			if len(got) != len(tt.topics) {
				t.Fatalf("%d messages, want %d", len(got), len(tt.topics))
			}
			for i, m := range got {
				if m.topic != tt.topics[i] {
					t.Errorf("topic %q, want %q", m.topic, tt.topics[i])
				}
			}
			if string(got[0].payload) != tt.payload {
				t.Errorf("payload %s, want %s", got[0].payload, tt.payload)
			}
			breakPayload(got[0])
			if !got[0].malformed || len(got[0].readings) != 0 {
				t.Error("breakPayload left it decodable")
			}
		})
	}
}

func BenchmarkEncodeSenML(b *testing.B) {
	ts := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	ms := []replay.Metric{{Type: "co2", Unit: "ppm", Value: 612}, {Type: "temperature", Unit: "Cel", Value: 21.53}, {Type: "humidity", Unit: "%RH", Value: 38.2}}
	b.ReportAllocs()
	for b.Loop() {
		encode(FormSenML, "room-101", "room-101-s4", ts, ms)
	}
}

// TestWindow: a device keeps -inflight publishes in flight, never more than the
// broker's Receive Maximum, and one when its connection cannot keep them in order.
func TestWindow(t *testing.T) {
	for _, tc := range []struct {
		ordered  bool
		recvMax  int
		inflight int
		want     int
	}{
		{true, 65535, 32, 32},
		{true, 20, 32, 20}, // Mosquitto's default Receive Maximum
		{true, 1024, 1, 1},
		{false, 1024, 32, 1},
	} {
		d := &device{recvMax: tc.recvMax}
		if tc.ordered {
			d.order = newPubOrder()
		}
		if got := d.window(tc.inflight); got != tc.want {
			t.Errorf("ordered %v, Receive Maximum %d, -inflight %d: window %d, want %d", tc.ordered, tc.recvMax, tc.inflight, got, tc.want)
		}
	}
}
