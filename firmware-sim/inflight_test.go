package sim_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// ackDelay is a TCP proxy to the broker that holds every PUBACK back for a moment
// (a broker that fsyncs before it answers) and counts, per connection, the data
// publishes (QoS 1, not retained) written and not yet acknowledged.
type ackDelay struct {
	l     net.Listener
	delay time.Duration

	mu      sync.Mutex
	maxOpen int // most data publishes of one connection in flight at once
}

func newAckDelay(t *testing.T, to string, delay time.Duration) *ackDelay {
	p := &ackDelay{delay: delay}
	p.l = proxy(t, to, func(c, b net.Conn) {
		var (
			mu   sync.Mutex
			open = map[uint16]bool{}
		)
		// client → broker: count the data publishes.
		go func() {
			defer b.Close()
			_ = copyPackets(c, b, func(h byte, body []byte) {
				if h>>4 == 3 && (h>>1)&3 == 1 && h&1 == 0 {
					tl := int(body[0])<<8 | int(body[1])
					id := uint16(body[2+tl])<<8 | uint16(body[3+tl])
					mu.Lock()
					open[id] = true
					n := len(open)
					mu.Unlock()
					p.mu.Lock()
					p.maxOpen = max(p.maxOpen, n)
					p.mu.Unlock()
				}
			})
		}()
		// broker → client: hold each PUBACK back.
		go func() {
			defer c.Close()
			_ = copyPackets(b, c, func(h byte, body []byte) {
				if h>>4 == 4 {
					time.Sleep(p.delay)
					mu.Lock()
					delete(open, uint16(body[0])<<8|uint16(body[1]))
					mu.Unlock()
				}
			})
		}()
	})
	return p
}

func (p *ackDelay) most() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxOpen
}

// copyPackets copies MQTT packets from r to w, calling seen with each one's first
// byte and body before it is forwarded.
func copyPackets(r io.Reader, w io.Writer, seen func(h byte, body []byte)) error {
	br := bufio.NewReader(r)
	for {
		h, err := br.ReadByte()
		if err != nil {
			return err
		}
		head := []byte{h}
		var rem, mul int
		for {
			x, err := br.ReadByte()
			if err != nil {
				return err
			}
			head = append(head, x)
			rem += int(x&0x7f) << mul
			mul += 7
			if x&0x80 == 0 {
				break
			}
		}
		body := make([]byte, rem)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		seen(h, body)
		if _, err := w.Write(append(head, body...)); err != nil {
			return err
		}
	}
}

// TestInflightKeepsOrder: each device keeps up to -inflight publishes in flight
// against a broker that is slow to answer, and the broker receives every device's
// messages in the order they were produced, each once, with exact counts.
func TestInflightKeepsOrder(t *testing.T) {
	addr := startBroker(t, "")
	sub := subscribe(t, addr)
	proxy := newAckDelay(t, addr, 2*time.Millisecond)
	const rounds, inflight = 150, 8
	sum := run(t, newSim(t, "-broker", proxy.l.Addr().String(), "-rooms", "1", "-sensors-per-room", "2",
		"-count", fmt.Sprint(rounds), "-speed", "max", "-seed", "3", "-start", monday10,
		"-inflight", fmt.Sprint(inflight), "-drain", "30s"))
	if m := sum.Messages; m.Published != 2*rounds || m.Failed != 0 || m.Resent != 0 {
		t.Fatalf("messages %+v, want all %d published once", m, 2*rounds)
	}
	if n := proxy.most(); n < 2 || n > inflight {
		t.Errorf("at most %d publishes of a device were in flight, want 2…%d", n, inflight)
	}
	got := sub.waitData(t, 2*rounds)
	last := map[string]float64{}
	for _, m := range got {
		var ts float64
		if strings.HasPrefix(m.payload, "[") { // SenML: bt in seconds
			var pack []map[string]any
			if err := json.Unmarshal([]byte(m.payload), &pack); err != nil {
				t.Fatal(err)
			}
			ts = pack[0]["bt"].(float64) * 1000
		} else {
			var obj map[string]any
			if err := json.Unmarshal([]byte(m.payload), &obj); err != nil {
				t.Fatal(err)
			}
			ts = obj["ts"].(float64)
		}
		if prev, ok := last[m.topic]; ok && ts <= prev {
			t.Fatalf("%s: a message of %v arrived after one of %v", m.topic, ts, prev)
		}
		last[m.topic] = ts
	}
	if len(got) != 2*rounds {
		t.Errorf("broker got %d data messages, want %d", len(got), 2*rounds)
	}
}
