package agent_test

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// seqTime is the timestamp of the i-th reading of a numbered stream.
func seqTime(base time.Time, i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

// counterPayload is one reading of type "counter" (unknown to Atrium, so taken as is)
// whose value is its sequence number.
func counterPayload(base time.Time, i int) []byte {
	return fmt.Appendf(nil, `{"counter":%d,"ts":%d}`, i, seqTime(base, i).UnixMilli())
}

// seqs returns the sequence numbers of stored counter readings, checking each value
// matches its timestamp, sorted.
func seqs(t testing.TB, base time.Time, rs []storedReading) []int {
	t.Helper()
	byIdentity(t, rs)
	out := make([]int, 0, len(rs))
	for _, r := range rs {
		i := int(r.Timestamp.Sub(base) / time.Second)
		if r.Type != "counter" || r.Value != float64(i) || !r.Timestamp.Equal(seqTime(base, i)) {
			t.Errorf("stored %+v is not reading %d of the stream", r, i)
		}
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// span is [from, to).
func span(from, to int) []int {
	out := make([]int, 0, max(to-from, 0))
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestCloudOutageLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	cl := startCloudDown(t)
	ag := startAgent(t, cl.url)
	const pubs, msgs, metricsPerMsg = 8, 500, 5
	const total = pubs * msgs * metricsPerMsg
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	value := func(typ string, i int) float64 {
		switch typ {
		case "temperature":
			return float64(i%100) - 20
		case "humidity":
			return float64(i % 101)
		case "co2":
			return float64(400 + i)
		case "light":
			return float64(i) * 2.5
		default: // occupancy
			return float64(i % 7)
		}
	}
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			c, ack, err := dial(t, ag.mqtt, fmt.Sprintf("outage-%d", p), "", "", nil)
			if err != nil {
				t.Errorf("publisher %d: %v (%+v)", p, err, ack)
				return
			}
			topic := fmt.Sprintf("atrium/r-out/outage-%d", p)
			for i := range msgs {
				payload := fmt.Appendf(nil, `{"temperature":%g,"humidity":%g,"co2":%g,"light":%g,"occupancy":%g,"ts":%d}`,
					value("temperature", i), value("humidity", i), value("co2", i), value("light", i), value("occupancy", i), seqTime(base, i).UnixMilli())
				if rc, err := c.Send(topic, 1, payload); err != nil || rc >= 0x80 {
					t.Errorf("publisher %d message %d: reason %#x, err %v", p, i, rc, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	m := ag.metrics(t)
	if got := m.Sum("atrium_agent_spool_readings"); got != total {
		t.Fatalf("spool holds %v readings with the cloud down, want %d (every PUBACK means on disk)", got, total)
	}
	if got := m.Sum("atrium_agent_forwarded_total"); got != 0 {
		t.Fatalf("forwarded %v with the cloud down", got)
	}

	cl.start() // same port, same data directory
	poll(t, "spool drained and every reading forwarded", func() bool {
		m := ag.metrics(t)
		return m.Sum("atrium_agent_spool_readings") == 0 && m.Sum("atrium_agent_forwarded_total") >= total
	})
	if got := ag.metrics(t).Sum("atrium_agent_forwarded_total"); got != total {
		t.Errorf("atrium_agent_forwarded_total = %v, want %d", got, total)
	}
	stored := 0
	for p := range pubs {
		sensor := fmt.Sprintf("outage-%d", p)
		rs := cl.readings(t, sensor, "")
		stored += len(rs)
		for _, r := range byIdentity(t, rs) {
			i := int(r.Timestamp.Sub(base) / time.Second)
			if i < 0 || i >= msgs || !r.Timestamp.Equal(seqTime(base, i)) || r.Value != value(r.Type, i) || r.RoomID != "r-out" || r.Site != testSite {
				t.Errorf("%s: unexpected reading %+v", sensor, r)
			}
		}
		if len(rs) != msgs*metricsPerMsg {
			t.Errorf("%s: %d readings stored, want %d", sensor, len(rs), msgs*metricsPerMsg)
		}
	}
	if stored != total {
		t.Errorf("%d readings stored, want exactly %d", stored, total)
	}
	cm := scrape(t, cl.url)
	if got := cm.Sum("atrium_sensor_readings_total", "outcome", "accepted"); got != total {
		t.Errorf("sensor service accepted %v readings, want %d", got, total)
	}
	if got := cm.Sum("atrium_sensor_readings_total", "outcome", "duplicate"); got != 0 {
		t.Errorf("sensor service saw %v duplicates, want 0 (each batch id sent with one content)", got)
	}
}

// TestKillDashNineLosesNothing runs the real atrium-agent binary, kills it with SIGKILL
// at random moments while devices publish, and restarts it on the same spool.
func TestKillDashNineLosesNothing(t *testing.T) {
	t.Parallel()
	bin := buildAgent(t)
	cl := startCloud(t)
	dir := t.TempDir()
	mqttAddr, statusAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	args := []string{"-allow-anonymous", "-mqtt-addr", mqttAddr, "-http-addr", statusAddr,
		"-spool", filepath.Join(dir, "spool.db"), "-cloud-url", cl.url, "-site", "kill-site",
		"-linger", "50ms", "-batch-max", "100", "-log-format", "json", "-log-level", "warn"}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)

	const pubs, perPub, kills = 4, 500, 3
	base := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	type stream struct {
		next      int          // next sequence number never sent
		acked     map[int]bool // got a success PUBACK
		uncertain []int        // sent, no PUBACK: the agent may or may not have it
		resent    int          // uncertain ones sent again
	}
	streams := make([]*stream, pubs)
	for p := range streams {
		streams[p] = &stream{acked: map[int]bool{}}
	}

	for round := 0; round <= kills; round++ {
		child := startChild(t, bin, statusAddr, args...)
		killAt := int64(-1) // the final round runs to the end
		if round < kills {
			killAt = 50 + rng.Int64N(250)
		}
		var acks atomic.Int64
		var killed atomic.Bool
		var wg sync.WaitGroup
		for p, s := range streams {
			wg.Go(func() {
				c, ack, err := dial(t, mqttAddr, fmt.Sprintf("kill-%d", p), "", "", nil)
				if err != nil {
					if !killed.Load() {
						t.Errorf("round %d publisher %d: %v (%+v)", round, p, err, ack)
					}
					return
				}
				defer c.Close()
				topic := fmt.Sprintf("atrium/r-kill/kill-%d", p)
				for {
					var i int
					resend := len(s.uncertain) > 0
					switch {
					case resend:
						i = s.uncertain[0]
					case s.next < perPub:
						i = s.next
					default:
						return
					}
					rc, err := c.Send(topic, 1, counterPayload(base, i))
					if err != nil || rc >= 0x80 {
						if !killed.Load() {
							t.Errorf("round %d publisher %d reading %d: reason %#x, err %v (the agent was not killed)", round, p, i, rc, err)
						}
						if !resend {
							s.uncertain = append(s.uncertain, i)
							s.next++
						}
						return
					}
					if resend {
						s.uncertain = s.uncertain[1:]
						s.resent++
					} else {
						s.next++
					}
					s.acked[i] = true
					if acks.Add(1) == killAt {
						killed.Store(true)
						kill(child)
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.Fatalf("round %d failed; agent log:\n%s", round, tail(child))
		}
		if round < kills && !killed.Load() {
			t.Fatalf("round %d ended before the kill at %d acks", round, killAt)
		}
		if round < kills {
			t.Logf("round %d: killed after %d acks", round, killAt)
		}
		if round == kills {
			// Everything is published and acknowledged: wait for the cloud to have it.
			for p := range streams {
				sensor := fmt.Sprintf("kill-%d", p)
				poll(t, sensor+" complete", func() bool { return cl.count(t, sensor) >= perPub })
			}
			if err := child.Stop(waitFor); err != nil {
				t.Errorf("atrium-agent on SIGINT: %v; log:\n%s", err, tail(child))
			}
		}
	}

	resent := 0
	for p, s := range streams {
		got := seqs(t, base, cl.readings(t, fmt.Sprintf("kill-%d", p), ""))
		if !slices.Equal(got, span(0, perPub)) {
			t.Errorf("publisher %d: stored %d readings, want exactly 0..%d once each", p, len(got), perPub-1)
		}
		if len(s.acked) != perPub || len(s.uncertain) != 0 {
			t.Errorf("publisher %d: %d acked, %d unresolved", p, len(s.acked), len(s.uncertain))
		}
		resent += s.resent
	}
	// The cloud dedupes by identity, so the store alone cannot show a batch sent twice
	// under two ids. Its counters can: a batch replayed under its own id is a "replayed"
	// batch; a reading under a new id is a "duplicate". Only readings the devices sent
	// again (no PUBACK before the kill, yet already on disk) may be duplicates.
	cm := scrape(t, cl.url)
	dups := cm.Sum("atrium_sensor_readings_total", "outcome", "duplicate")
	t.Logf("sensor service: accepted %v, duplicate %v readings; batches new %v, replayed %v; readings sent again by devices %d",
		cm.Sum("atrium_sensor_readings_total", "outcome", "accepted"), dups,
		cm.Sum("atrium_sensor_batches_total", "outcome", "new"), cm.Sum("atrium_sensor_batches_total", "outcome", "replayed"), resent)
	if dups > float64(resent) {
		t.Errorf("%v duplicate readings at the cloud, but devices sent only %d readings again: a batch went out under a second id", dups, resent)
	}
	if got := cm.Sum("atrium_sensor_readings_total", "outcome", "accepted"); got != pubs*perPub {
		t.Errorf("sensor service accepted %v readings, want %d", got, pubs*perPub)
	}
}

// poison is a message the agent must dead-letter, with a word its reason must contain.
type poison struct {
	name, topic, payload, reason string
}

func poisons(now time.Time) []poison {
	future := now.Add(time.Hour).UnixMilli()
	return []poison{
		{"broken JSON", "atrium/r-p/poison-json", `{"temperature":21.5,`, "invalid JSON"},
		{"string value", "atrium/r-p/poison-string", `{"temperature":"21.5"}`, "temperature"},
		{"out of range", "atrium/r-p/poison-range", `{"humidity":140}`, "plausible range"},
		{"future timestamp", "atrium/r-p/poison-future", fmt.Sprintf(`{"temperature":21,"ts":%d}`, future), "future"},
		{"short topic", "atrium/r-p", `{"temperature":21}`, "topic"},
		{"upper-case type", "atrium/r-p/poison-type/Temperature", `21`, "topic"},
		{"bad sensor id", "atrium/r-p/bad sensor!", `{"temperature":21}`, "topic"},
		{"plain word", "atrium/r-p/poison-plain/temperature", `warm`, "number"},
		{"SenML string value", "atrium/r-p/poison-senml", `[{"n":"temperature","vs":"hot"}]`, "SenML"},
		{"unknown status", "atrium/r-p/poison-status/status", `maybe`, "status"},
	}
}

func TestPoisonPayloadsAreDeadLettered(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	ag := startAgent(t, cl.url)
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	bad := poisons(time.Now())
	const msgs = 200 // every 10th is poison
	c := mustDial(t, ag.mqtt, "poisoner")
	var sentBad []poison
	good := 0
	for i := range msgs {
		if i%10 == 9 {
			p := bad[len(sentBad)%len(bad)]
			sentBad = append(sentBad, p)
			c.MustSend(t, p.topic, 1, []byte(p.payload)) // a dead letter is acknowledged: it is on disk
			continue
		}
		c.MustSend(t, "atrium/r-p/good-1", 1, fmt.Appendf(nil, `{"temperature":%d,"humidity":%d,"ts":%d}`, i%50, i%100, seqTime(base, i).UnixMilli()))
		good++
	}
	poll(t, "good readings stored", func() bool { return cl.count(t, "good-1") >= 2*good })
	poll(t, "spool drained", func() bool { return ag.metrics(t).Sum("atrium_agent_spool_readings") == 0 })
	rs := cl.readings(t, "good-1", "")
	if len(rs) != 2*good {
		t.Errorf("%d good readings stored, want %d", len(rs), 2*good)
	}
	for _, r := range byIdentity(t, rs) {
		i := int(r.Timestamp.Sub(base) / time.Second)
		want := float64(i % 50)
		if r.Type == "humidity" {
			want = float64(i % 100)
		}
		if i%10 == 9 || r.Value != want {
			t.Errorf("unexpected reading %+v", r)
		}
	}
	for _, sensor := range []string{"poison-json", "poison-string", "poison-range", "poison-future", "poison-type", "poison-plain", "poison-senml", "poison-status"} {
		if rs := cl.readings(t, sensor, ""); rs != nil {
			t.Errorf("%s: %d readings stored from poison", sensor, len(rs))
		}
	}

	m := ag.metrics(t)
	for _, c := range []struct {
		name string
		got  float64
		want int
	}{
		{`atrium_agent_messages_total{result="dead_letter"}`, m.Sum("atrium_agent_messages_total", "result", "dead_letter"), len(sentBad)},
		{`atrium_agent_messages_total{result="ok"}`, m.Sum("atrium_agent_messages_total", "result", "ok"), good},
		{"atrium_agent_dead_lettered_total", m.Sum("atrium_agent_dead_lettered_total"), len(sentBad)},
		{"atrium_agent_dead_letters", m.Sum("atrium_agent_dead_letters"), len(sentBad)},
		{"atrium_agent_ingested_total", m.Sum("atrium_agent_ingested_total"), 2 * good},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s = %v, want %d", c.name, c.got, c.want)
		}
	}
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}

	dls := listDeadLetters(t, ag.cfg.Spool)
	if len(dls) != len(sentBad) {
		t.Fatalf("%d dead letters listed, want %d", len(dls), len(sentBad))
	}
	for i, p := range sentBad { // dead letters are listed in arrival order
		d := dls[i]
		if d.Topic != p.topic || d.Payload != p.payload || d.Batch != "" {
			t.Errorf("dead letter %d is %s %q (batch %q), want %s %q", i, d.Topic, d.Payload, d.Batch, p.topic, p.payload)
		}
		if !strings.Contains(d.Reason, p.reason) {
			t.Errorf("%s: reason %q does not mention %q", p.name, d.Reason, p.reason)
		}
		if _, err := time.Parse(time.RFC3339, d.At); err != nil {
			t.Errorf("%s: at %q: %v", p.name, d.At, err)
		}
	}

	out := runCLI(t, "spool", "requeue", "-spool", ag.cfg.Spool)
	if want := fmt.Sprintf("requeued 0 of %d dead letters", len(sentBad)); !strings.Contains(out, want) {
		t.Errorf("requeue said %q, want %q", out, want)
	}
	after := listDeadLetters(t, ag.cfg.Spool)
	if len(after) != len(dls) {
		t.Errorf("%d dead letters after requeue, want the same %d", len(after), len(dls))
	}
	for i := range min(len(after), len(dls)) {
		if after[i] != dls[i] {
			t.Errorf("dead letter %d changed by requeue: %+v, was %+v", i, after[i], dls[i])
		}
	}
}

// startFilling starts a cloud that is down, an agent with a spool of maxBytes full
// under policy, and a device connected to the agent to fill it.
func startFilling(t *testing.T, policy string, maxBytes int) (*cloudSvc, *agentRun, *mqtttest.Client) {
	t.Helper()
	cl := startCloudDown(t)
	ag := startAgent(t, cl.url, "-spool-full="+policy, fmt.Sprintf("-spool-max-bytes=%d", maxBytes))
	return cl, ag, mustDial(t, ag.mqtt, "filler")
}

func TestFullSpoolPolicies(t *testing.T) {
	t.Parallel()
	const maxBytes = 64 << 10
	t.Run("reject-new", func(t *testing.T) {
		t.Parallel()
		cl, ag, c := startFilling(t, "reject-new", maxBytes)
		base := time.Now().Add(-time.Hour).Truncate(time.Second)
		const topic = "atrium/r-full/full-reject"
		acked := -1
		for i := range 5000 {
			rc, err := c.Send(topic, 1, counterPayload(base, i))
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			if rc >= 0x80 {
				if rc != 0x97 {
					t.Errorf("refusal PUBACK %#x, want 0x97 quota exceeded", rc)
				}
				acked = i
				break
			}
		}
		if acked <= 0 {
			t.Fatalf("the spool of %d bytes never refused a publish", maxBytes)
		}
		// Still full: every further publish is refused too.
		for i := acked + 1; i < acked+20; i++ {
			if rc, err := c.Send(topic, 1, counterPayload(base, i)); err != nil || rc < 0x80 {
				t.Fatalf("message %d on a full spool: reason %#x, err %v; want a refusal", i, rc, err)
			}
		}
		m := ag.metrics(t)
		if got := m.Sum("atrium_agent_rejected_total"); got < 20 {
			t.Errorf("atrium_agent_rejected_total = %v, want ≥ 20", got)
		}
		if got := m.Sum("atrium_agent_messages_refused_total"); got < 20 {
			t.Errorf("atrium_agent_messages_refused_total = %v, want ≥ 20", got)
		}
		if got := m.Sum("atrium_agent_spool_readings"); got != float64(acked) {
			t.Errorf("spool holds %v readings, want the %d acknowledged", got, acked)
		}
		t.Logf("a %d-byte spool took %d readings", maxBytes, acked)

		cl.start()
		poll(t, "the backlog stored", func() bool {
			return ag.metrics(t).Sum("atrium_agent_spool_readings") == 0 && cl.count(t, "full-reject") >= acked
		})
		if got := seqs(t, base, cl.readings(t, "full-reject", "")); !slices.Equal(got, span(0, acked)) {
			t.Errorf("stored %d readings, want exactly the %d acknowledged (0..%d)", len(got), acked, acked-1)
		}
		// Room again: publishes are taken.
		c.MustSend(t, topic, 1, counterPayload(base, acked+100))
		poll(t, "a publish after the drain stored", func() bool { return cl.count(t, "full-reject") == acked+1 })
	})

	t.Run("drop-oldest", func(t *testing.T) {
		t.Parallel()
		cl, ag, c := startFilling(t, "drop-oldest", maxBytes)
		base := time.Now().Add(-time.Hour).Truncate(time.Second)
		const sent = 1500
		for i := range sent {
			c.MustSend(t, "atrium/r-full/full-drop", 1, counterPayload(base, i))
		}
		m := ag.metrics(t)
		dropped := int(m.Sum("atrium_agent_dropped_total"))
		if dropped <= 0 {
			t.Fatalf("atrium_agent_dropped_total = %d after %d readings into %d bytes, want > 0", dropped, sent, maxBytes)
		}
		if got := m.Sum("atrium_agent_spool_readings"); got != float64(sent-dropped) {
			t.Errorf("spool holds %v readings, want %d acked − %d dropped", got, sent, dropped)
		}
		t.Logf("%d readings sent, %d dropped", sent, dropped)

		cl.start()
		poll(t, "the newest readings stored", func() bool {
			return ag.metrics(t).Sum("atrium_agent_spool_readings") == 0 && cl.count(t, "full-drop") >= sent-dropped
		})
		got := seqs(t, base, cl.readings(t, "full-drop", ""))
		newest := span(dropped, sent)
		if !slices.Equal(got, newest) {
			var extra []int
			for _, i := range got {
				if i < dropped {
					extra = append(extra, i)
				}
			}
			missing := len(newest) - (len(got) - len(extra))
			t.Errorf("stored %d readings, want exactly the newest %d (%d..%d): %d newest missing, %d dropped ones stored anyway (%v…%v); "+
				"they are the batch the forwarder took before the spool dropped it and kept resending from memory during the outage",
				len(got), len(newest), dropped, sent-1, missing, len(extra), extra[:min(1, len(extra))], extra[max(len(extra)-1, 0):])
		}
	})
}

// refusingProxy stands in front of the sensor service: it answers 400 to the third
// batch id it sees, and 503 with Retry-After: 1 to the first three other batch posts.
type refusingProxy struct {
	*httptest.Server
	mu          sync.Mutex
	keys        []string
	refusedKey  string
	refused     []storedReading // the readings of the refused batch
	unavailable []time.Time     // when each 503 was answered
	retriedAt   time.Time       // when the first batch came back after the third 503
	firstKey    string
}

func newRefusingProxy(t *testing.T, target string) *refusingProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &refusingProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if r.Method != http.MethodPost || r.URL.Path != "/sensors/data" || key == "" {
			rp.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		if !slices.Contains(p.keys, key) {
			p.keys = append(p.keys, key)
			if len(p.keys) == 1 {
				p.firstKey = key
			}
			if len(p.keys) == 3 {
				p.refusedKey = key
			}
		}
		switch {
		case key == p.refusedKey:
			p.refused = readBatch(t, r)
			p.mu.Unlock()
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"type":"about:blank","title":"Bad Request","status":400,"detail":"batch refused by the test proxy"}`)
			return
		case len(p.unavailable) < 3:
			p.unavailable = append(p.unavailable, time.Now())
			p.mu.Unlock()
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `{"type":"about:blank","title":"Service Unavailable","status":503}`)
			return
		}
		if key == p.firstKey && p.retriedAt.IsZero() {
			p.retriedAt = time.Now()
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

// readBatch decodes a forwarder's gzip batch body.
func readBatch(t *testing.T, r *http.Request) []storedReading {
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		t.Errorf("batch body: %v", err)
		return nil
	}
	var b struct {
		BatchID  string          `json:"batch_id"`
		Readings []storedReading `json:"readings"`
	}
	if err := json.NewDecoder(zr).Decode(&b); err != nil {
		t.Errorf("batch body: %v", err)
	}
	if b.BatchID != r.Header.Get("Idempotency-Key") {
		t.Errorf("batch_id %q differs from the Idempotency-Key %q", b.BatchID, r.Header.Get("Idempotency-Key"))
	}
	return b.Readings
}

func TestCloudRefusalsAndRetryAfter(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	proxy := newRefusingProxy(t, cl.url)
	spoolPath := filepath.Join(t.TempDir(), "spool.db")
	ag := startAgent(t, proxy.URL, "-batch-max=25", "-spool="+spoolPath)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const msgs, perMsg = 50, 4
	c := mustDial(t, ag.mqtt, "refused")
	for i := range msgs {
		c.MustSend(t, "atrium/r-proxy/proxy-1", 1, fmt.Appendf(nil, `{"temperature":%d,"humidity":%d,"co2":%d,"light":%d,"ts":%d}`,
			i%40, i%100, 400+i, i, seqTime(base, i).UnixMilli()))
	}
	poll(t, "spool drained", func() bool { return ag.metrics(t).Sum("atrium_agent_spool_readings") == 0 })

	proxy.mu.Lock()
	refusedKey, refused, unavailable, retriedAt := proxy.refusedKey, proxy.refused, proxy.unavailable, proxy.retriedAt
	proxy.mu.Unlock()
	if refusedKey == "" || len(refused) == 0 {
		t.Fatalf("no batch was refused (keys seen: %d)", len(proxy.keys))
	}
	if len(unavailable) != 3 || retriedAt.IsZero() {
		t.Fatalf("%d answers 503, first batch retried at %v", len(unavailable), retriedAt)
	}
	// Retry-After: 1 is a floor on each wait.
	for i, at := range append(unavailable[1:], retriedAt) {
		if gap := at.Sub(unavailable[i]); gap < 900*time.Millisecond {
			t.Errorf("retry %d came %v after a 503 with Retry-After: 1", i+1, gap)
		}
	}
	refusedIDs := map[string]bool{}
	for _, r := range refused {
		refusedIDs[r.identity()] = true
	}
	rs := cl.readings(t, "proxy-1", "")
	stored := byIdentity(t, rs)
	for id := range refusedIDs {
		if _, ok := stored[id]; ok {
			t.Errorf("reading %s of the refused batch was stored", id)
		}
	}
	if len(rs)+len(refused) != msgs*perMsg {
		t.Errorf("%d stored + %d refused, want %d", len(rs), len(refused), msgs*perMsg)
	}
	m := ag.metrics(t)
	if got := m.Sum("atrium_agent_dead_lettered_total"); got != float64(len(refused)) {
		t.Errorf("atrium_agent_dead_lettered_total = %v, want %d", got, len(refused))
	}
	if got := m.Sum("atrium_agent_forward_retries_total"); got != 3 {
		t.Errorf("atrium_agent_forward_retries_total = %v, want 3", got)
	}
	if got := m.Sum("atrium_agent_forwarded_total"); got != float64(len(rs)) {
		t.Errorf("atrium_agent_forwarded_total = %v, want %d", got, len(rs))
	}
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}

	dls := listDeadLetters(t, spoolPath)
	if len(dls) != len(refused) {
		t.Fatalf("%d dead letters, want the %d readings of the refused batch", len(dls), len(refused))
	}
	for _, d := range dls {
		var r storedReading
		if err := json.Unmarshal([]byte(d.Payload), &r); err != nil {
			t.Errorf("dead letter payload %q: %v", d.Payload, err)
		}
		if d.Batch != refusedKey || !refusedIDs[r.identity()] {
			t.Errorf("dead letter of batch %q holds %s; want batch %q", d.Batch, r.identity(), refusedKey)
		}
		if !strings.Contains(d.Reason, "400") || !strings.Contains(d.Reason, "batch refused by the test proxy") {
			t.Errorf("reason %q does not name the 400 and its detail", d.Reason)
		}
	}

	// An operator requeues them; the cloud now takes them (under a new batch id).
	out := runCLI(t, "spool", "requeue", "-spool", spoolPath, "-site", testSite)
	if want := fmt.Sprintf("requeued %d of %d dead letters", len(refused), len(refused)); !strings.Contains(out, want) {
		t.Errorf("requeue said %q, want %q", out, want)
	}
	again := startAgent(t, proxy.URL, "-spool="+spoolPath)
	poll(t, "requeued readings stored", func() bool { return cl.count(t, "proxy-1") >= msgs*perMsg })
	if rs := cl.readings(t, "proxy-1", ""); len(rs) != msgs*perMsg || len(byIdentity(t, rs)) != msgs*perMsg {
		t.Errorf("%d readings stored after the requeue, want %d", len(rs), msgs*perMsg)
	}
	if err := again.stop(); err != nil {
		t.Fatal(err)
	}
	if dls := listDeadLetters(t, spoolPath); len(dls) != 0 {
		t.Errorf("%d dead letters left after the requeue", len(dls))
	}
}
