package testwait_test

import (
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
