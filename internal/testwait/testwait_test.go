package testwait_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testwait"
)

func TestFor(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			time.Sleep(5 * time.Millisecond)
			n.Add(1)
		}
	}()
	testwait.For(t, "three ticks", func() bool { return n.Load() == 3 })
}

// failRecorder is a testing.TB whose Fatalf records the message and ends the goroutine.
type failRecorder struct {
	testing.TB
	msg string
}

func (r *failRecorder) Helper() {}

func (r *failRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestWithinStateNamesLastState(t *testing.T) {
	tests := []struct {
		name  string
		state string
		want  string
	}{
		{"with a state", "2 of 3", "timed out after 20ms waiting for three ticks; last: 2 of 3"},
		{"without", "", "timed out after 20ms waiting for three ticks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &failRecorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				testwait.WithinState(r, 20*time.Millisecond, "three ticks", func() (bool, string) { return false, tt.state })
			}()
			<-done
			if r.msg != tt.want {
				t.Errorf("failure %q, want %q", r.msg, tt.want)
			}
		})
	}
}
