package agent_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent"
)

// clockSkew is how far ahead of the sensor service the agent's clock runs in the
// mixed run: inside the 5 minutes both allow into the future, so a reading 8 minutes
// ahead of the cloud passes the agent (4 minutes ahead of it) and is rejected by
// the cloud, as with a gateway box whose clock drifted.
const clockSkew = 4 * time.Minute

// startAgentClock is startAgent with the agent's clock set to now.
func startAgentClock(t testing.TB, cloudURL string, now func() time.Time) *agentRun {
	t.Helper()
	args := []string{
		"-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-cloud-url=" + cloudURL, "-spool=" + filepath.Join(t.TempDir(), "spool.db"),
		"-site=" + testSite, "-linger=50ms", "-shutdown-timeout=2s",
	}
	return runAgent(t, nil, func(c *agent.Config) { c.Now = now }, args...)
}

// mixedMsg is one publish of the mixed run and where each of its readings must end.
// A message nothing can be read from stands for one unit, its dead letter.
type mixedMsg struct {
	topic, payload string
	mosquitto      bool // sent with mosquitto_pub -V mqttv311 when it is installed
	stored         int  // readings stored in the cloud
	duplicates     int  // readings the cloud already had
	rejected       int  // readings the cloud rejects (dead letters of the agent, with the batch id)
	dead           int  // dead letters written by ingest
	ignored        int  // fields ignored, counted against the device
	result         string
}

func (m mixedMsg) units() int { return m.stored + m.duplicates + m.rejected + m.dead }

// mixedRound is one round of the mixed run: base is its time (explicit timestamps
// are in the past), future is 8 minutes ahead of the cloud's clock.
func mixedRound(base, future time.Time) []mixedMsg {
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	sec := base.Unix()
	dup := fmt.Sprintf(`{"temperature":21.5,"humidity":40,"ts":%d}`, ms(time.Second))
	return []mixedMsg{
		// JSON objects: good, with firmware extras, with one field out of range, resent.
		{topic: "atrium/r-mix/mix-json", payload: dup, stored: 2, result: "ok"},
		{topic: "atrium/r-mix/mix-json", payload: fmt.Sprintf(`{"temperature":22,"fw":"1.0.3","ok":true,"cfg":{"v":[1,2]},"ts":%d}`, ms(2*time.Second)),
			stored: 1, ignored: 3, result: "ok"},
		{topic: "atrium/r-mix/mix-json", payload: fmt.Sprintf(`{"co2":600,"rssi_text":"good","err":null,"humidity":140,"ts":%d}`, ms(3*time.Second)),
			stored: 1, dead: 1, ignored: 2, result: "partial"},
		{topic: "atrium/r-mix/mix-json", payload: dup, duplicates: 2, result: "ok"},
		// Valid for the agent, in the future for the cloud.
		{topic: "atrium/r-mix/mix-json", payload: fmt.Sprintf(`{"temperature":21,"ts":%d}`, future.UnixMilli()), rejected: 1, result: "ok"},
		// Nothing numeric: the whole message is the dead letter.
		{topic: "atrium/r-mix/mix-json", payload: `{"fw":"2.0","ok":false}`, dead: 1, result: "dead_letter"},
		// SenML: two bad records among good ones, then a good pack.
		{topic: "atrium/r-mix/mix-senml", payload: fmt.Sprintf(`[{"bn":"mix-senml/","bt":%d,"n":"co2","u":"ppm","v":700},`+
			`{"n":"temperature","u":"Cel","v":120},{"n":"humidity","vs":"high"},{"n":"humidity","u":"%%RH","v":45,"t":1}]`, sec+10),
			stored: 2, dead: 2, result: "partial"},
		{topic: "atrium/r-mix/mix-senml", payload: fmt.Sprintf(`[{"bt":%d,"n":"co2","v":710},{"n":"co2","v":720,"t":1}]`, sec+20),
			stored: 2, result: "ok"},
		// Plain numbers: good, out of range, not a number.
		{topic: "atrium/r-mix/mix-plain/temperature", payload: "21.25", stored: 1, result: "ok"},
		{topic: "atrium/r-mix/mix-plain/humidity", payload: "101", dead: 1, result: "dead_letter"},
		{topic: "atrium/r-mix/mix-plain/light", payload: "bright", dead: 1, result: "dead_letter"},
		// Garbage.
		{topic: "atrium/r-mix/mix-garbage", payload: `{"temperature":21.5,`, dead: 1, result: "dead_letter"},
		{topic: "atrium/r-mix/mix-garbage", payload: "\x00\xff\xfe not json", dead: 1, result: "dead_letter"},
		{topic: "atrium/r-mix/mix-garbage", payload: `[1,2,3`, dead: 1, result: "dead_letter"},
		// An MQTT 3.1.1 client with an extra field.
		{topic: "atrium/r-mix/mix-mosq", payload: fmt.Sprintf(`{"temperature":20,"fw":"x","ts":%d}`, ms(30*time.Second)),
			mosquitto: true, stored: 1, ignored: 1, result: "ok"},
	}
}

// TestMixedRunAccountsForEveryReading publishes a mix of good, partly bad, bad,
// duplicate and cloud-rejected payloads through real MQTT clients to a real agent
// forwarding to the real sensor service, and checks that every published reading is
// accounted for exactly: stored (read back from the service), a duplicate the
// service already had, rejected by the service (and kept by the agent as a dead
// letter with the reason), or dead-lettered by the agent with its reason.
func TestMixedRunAccountsForEveryReading(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	ag := startAgentClock(t, cl.url, func() time.Time { return time.Now().Add(clockSkew) })
	mosq, _ := exec.LookPath("mosquitto_pub")
	host, port, _ := strings.Cut(ag.mqtt, ":")
	c := mustDial(t, ag.mqtt, "mixed")

	const rounds = 10
	start := time.Now().Add(-time.Hour).Truncate(time.Second)
	var (
		sent                                []mixedMsg
		units, stored, dups, rejected, dead int
		ignored                             = map[string]int{}
		results                             = map[string]int{}
		storedBySensor                      = map[string]int{}
	)
	for i := range rounds {
		base := start.Add(time.Duration(i) * 100 * time.Second)
		future := time.Now().Add(8*time.Minute + time.Duration(i)*time.Millisecond)
		for _, m := range mixedRound(base, future) {
			if m.mosquitto && mosq != "" {
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				out, err := exec.CommandContext(ctx, mosq, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
					"-t", m.topic, "-m", m.payload).CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("mosquitto_pub: %v: %s", err, out)
				}
			} else {
				c.MustSend(t, m.topic, 1, []byte(m.payload)) // a dead letter is acknowledged too: it is on disk
			}
			sent = append(sent, m)
			units += m.units()
			stored += m.stored
			dups += m.duplicates
			rejected += m.rejected
			dead += m.dead
			results[m.result]++
			sensor := strings.Split(m.topic, "/")[2]
			ignored[sensor] += m.ignored
			storedBySensor[sensor] += m.stored
		}
	}

	poll(t, "the spool drained into the cloud", func() bool {
		m := ag.metrics(t)
		return m.Sum("atrium_agent_spool_readings") == 0 && m.Sum("atrium_agent_cloud_rejected_total") == float64(rejected)
	})

	// Stored: read back from the sensor service, each identity once.
	gotStored := 0
	for sensor, want := range storedBySensor {
		rs := cl.readings(t, sensor, "")
		byIdentity(t, rs)
		if len(rs) != want {
			t.Errorf("%s: %d readings stored, want %d", sensor, len(rs), want)
		}
		for _, r := range rs {
			if r.Type == "temperature" && (r.Value < -40 || r.Value > 85) || r.Type == "humidity" && r.Value > 100 {
				t.Errorf("%s: out-of-range reading stored: %+v", sensor, r)
			}
			if r.Timestamp.After(time.Now().Add(5 * time.Minute)) {
				t.Errorf("%s: reading stored more than 5 minutes ahead: %+v", sensor, r)
			}
		}
		gotStored += len(rs)
	}

	// Duplicates and rejections, as the sensor service counted them.
	cm := scrape(t, cl.url)
	gotDups := int(cm.Sum("atrium_sensor_readings_total", "outcome", "duplicate"))
	gotRejected := int(cm.Sum("atrium_sensor_readings_total", "outcome", "rejected"))
	if gotDups != dups || gotRejected != rejected {
		t.Errorf("sensor service counted %d duplicates and %d rejections, want %d and %d", gotDups, gotRejected, dups, rejected)
	}

	// The agent's counters.
	m := ag.metrics(t)
	for _, c := range []struct {
		name string
		got  float64
		want int
	}{
		{"atrium_agent_dead_lettered_total", m.Sum("atrium_agent_dead_lettered_total"), dead + rejected},
		{"atrium_agent_cloud_rejected_total", m.Sum("atrium_agent_cloud_rejected_total"), rejected},
		{`atrium_agent_messages_total{result="ok"}`, m.Sum("atrium_agent_messages_total", "result", "ok"), results["ok"]},
		{`atrium_agent_messages_total{result="partial"}`, m.Sum("atrium_agent_messages_total", "result", "partial"), results["partial"]},
		{`atrium_agent_messages_total{result="dead_letter"}`, m.Sum("atrium_agent_messages_total", "result", "dead_letter"), results["dead_letter"]},
		{"atrium_agent_ingested_total", m.Sum("atrium_agent_ingested_total"), stored + dups + rejected},
		{"atrium_agent_ignored_fields_total", m.Sum("atrium_agent_ignored_fields_total"), ignored["mix-json"] + ignored["mix-mosq"]},
		{`atrium_agent_ignored_fields_total{device="mix-json"}`, m.Sum("atrium_agent_ignored_fields_total", "device", "mix-json"), ignored["mix-json"]},
		{"atrium_agent_messages_refused_total", m.Sum("atrium_agent_messages_refused_total"), 0},
		{"atrium_agent_dropped_total", m.Sum("atrium_agent_dropped_total"), 0},
		{"atrium_agent_dead_letters_evicted_total", m.Sum("atrium_agent_dead_letters_evicted_total"), 0},
	} {
		if c.got != float64(c.want) {
			t.Errorf("%s = %v, want %d", c.name, c.got, c.want)
		}
	}
	devs := devices(t, ag)
	for sensor, want := range ignored {
		if got := devs[sensor].Ignored; got != int64(want) {
			t.Errorf("/devices: %s ignored_fields = %d, want %d", sensor, got, want)
		}
	}

	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	// Dead letters: listed with their reasons; those of the cloud carry the batch id.
	dls := listDeadLetters(t, ag.cfg.Spool)
	gotDead, gotCloud := 0, 0
	for _, d := range dls {
		if d.Reason == "" || d.Payload == "" {
			t.Errorf("dead letter without a reason or payload: %+v", d)
		}
		if d.Batch != "" {
			gotCloud++
			if !strings.Contains(d.Reason, "cloud rejected the reading") || !strings.Contains(d.Reason, "future") || !strings.Contains(d.Payload, `"temperature"`) {
				t.Errorf("dead letter of a rejected reading: %+v", d)
			}
			continue
		}
		gotDead++
		if !strings.HasPrefix(d.Topic, "atrium/r-mix/") {
			t.Errorf("dead letter of ingest without its topic: %+v", d)
		}
	}
	if gotDead != dead || gotCloud != rejected {
		t.Errorf("%d dead letters of ingest and %d of the cloud, want %d and %d", gotDead, gotCloud, dead, rejected)
	}

	// Everything published is accounted for, exactly.
	if sum := gotStored + gotDups + gotCloud + gotDead; sum != units || gotRejected != gotCloud {
		t.Errorf("stored %d + duplicates %d + rejected %d + dead-lettered %d = %d, published %d (the cloud rejected %d)",
			gotStored, gotDups, gotCloud, gotDead, sum, units, gotRejected)
	}
	t.Logf("%d messages, %d readings: %d stored, %d duplicates, %d rejected by the cloud, %d dead-lettered by the agent",
		len(sent), units, gotStored, gotDups, gotCloud, gotDead)
}
