package agent_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// publisher sends one QoS 1 message and fails the test unless it was acknowledged.
type publisher func(t *testing.T, topic, payload string)

// publishers are the MQTT clients every payload form is sent with.
func publishers(t *testing.T, mqttAddr string) map[string]publisher {
	t.Helper()
	pubs := map[string]publisher{
		"paho5": func(t *testing.T, topic, payload string) {
			c := mustDial(t, mqttAddr, "")
			c.MustSend(t, topic, 1, []byte(payload))
		},
	}
	mosq, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("mosquitto_pub: %v", err)
		}
		t.Logf("mosquitto_pub not installed: MQTT 3.1.1 and mosquitto 5 forms skipped")
		return pubs
	}
	host, port, _ := strings.Cut(mqttAddr, ":")
	for name, version := range map[string]string{"mosq311": "mqttv311", "mosq5": "mqttv5"} {
		pubs[name] = func(t *testing.T, topic, payload string) {
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			// With -q 1, mosquitto_pub exits 0 only after the PUBACK.
			out, err := exec.CommandContext(ctx, mosq, "-h", host, "-p", port, "-V", version, "-q", "1",
				"-t", topic, "-m", payload).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquitto_pub -V %s -t %s: %v: %s", version, topic, err, out)
			}
		}
	}
	return pubs
}

// wantReading is an expected stored reading; a zero ts means the agent's clock at receipt.
type wantReading struct {
	typ   string
	value float64
	unit  string
	ts    time.Time
}

func TestPayloadFormsReachTheSensorService(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	ag := startAgent(t, cl.url)
	base := time.Now().Add(-15 * time.Minute).Truncate(time.Second).UTC()

	tests := []formCase{
		{"json ts ms", "", fmt.Sprintf(`{"temperature":21.5,"humidity":40,"ts":%d}`, base.UnixMilli()),
			[]wantReading{{"temperature", 21.5, "Cel", base}, {"humidity", 40, "%RH", base}}},
		{"json rfc3339", "", fmt.Sprintf(`{"co2":612,"light":350.5,"timestamp":%q}`, base.Add(1500*time.Millisecond).Format(time.RFC3339Nano)),
			[]wantReading{{"co2", 612, "ppm", base.Add(1500 * time.Millisecond)}, {"light", 350.5, "lx", base.Add(1500 * time.Millisecond)}}},
		{"json no time", "", `{"noise":42.5,"radon":12,"occupancy":3}`,
			[]wantReading{{"noise", 42.5, "dB", time.Time{}}, {"radon", 12, "", time.Time{}}, {"occupancy", 3, "count", time.Time{}}}},
		{"senml pack", "", fmt.Sprintf(`[{"bn":"whatever/","bt":%d,"n":"temperature","u":"Cel","v":22.25},{"n":"humidity","u":"%%RH","v":41,"t":1},{"n":"co2","v":700,"t":2}]`, base.Unix()+2),
			[]wantReading{{"temperature", 22.25, "Cel", base.Add(2 * time.Second)}, {"humidity", 41, "%RH", base.Add(3 * time.Second)}, {"co2", 700, "ppm", base.Add(4 * time.Second)}}},
		{"plain number", "/pressure", "1013.25",
			[]wantReading{{"pressure", 1013.25, "hPa", time.Time{}}}},
		{"plain negative", "/temperature", "-3.5",
			[]wantReading{{"temperature", -3.5, "Cel", time.Time{}}}},
	}
	pubs := publishers(t, ag.mqtt)
	t.Run("forms", func(t *testing.T) {
		for client, pub := range pubs {
			t.Run(client, func(t *testing.T) {
				t.Parallel()
				testForms(t, cl, ag, pub, "room-"+client, client, tests)
			})
		}
		t.Run("last will", func(t *testing.T) {
			t.Parallel()
			const room, sensor = "room-will", "will-dev"
			topic := "atrium/" + room + "/" + sensor + "/status"
			c, ack, err := dial(t, ag.mqtt, sensor, "", "", &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("offline")})
			if err != nil {
				t.Fatalf("connect: %v (%+v)", err, ack)
			}
			c.MustSend(t, topic, 1, []byte("online"))
			waitDevice(t, ag, sensor, room, "online")
			c.Drop() // no DISCONNECT: the broker sends the will
			waitDevice(t, ag, sensor, room, "offline")
		})
	})

	// Every message above was acknowledged and decoded: the counters say so by form.
	m := ag.metrics(t)
	n := float64(len(pubs))
	for _, c := range []struct {
		form string
		want float64
	}{{"json", 3 * n}, {"senml", n}, {"plain", 2 * n}, {"status", 3*n + 2}} {
		if got := m.Sum("atrium_agent_messages_total", "form", c.form, "result", "ok"); got != c.want {
			t.Errorf("atrium_agent_messages_total{form=%q,result=\"ok\"} = %v, want %v", c.form, got, c.want)
		}
	}
	if got := m.Sum("atrium_agent_messages_total", "result", "dead_letter"); got != 0 {
		t.Errorf("%v messages dead-lettered, want 0", got)
	}
	if got, want := m.Sum("atrium_agent_ingested_total"), n*(2+2+3+3+1+1); got != want {
		t.Errorf("atrium_agent_ingested_total = %v, want %v", got, want)
	}
}

type formCase struct {
	name    string
	suffix  string // after atrium/<room>/<sensor>
	payload string
	want    []wantReading
}

// testForms publishes every case with pub, each under its own sensor id, and checks
// what the sensor service stored, field by field.
func testForms(t *testing.T, cl *cloudSvc, ag *agentRun, pub publisher, room, prefix string, tests []formCase) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sensor := prefix + "-" + strings.ReplaceAll(tc.name, " ", "-")
			before := time.Now().Truncate(time.Millisecond)
			pub(t, "atrium/"+room+"/"+sensor+tc.suffix, tc.payload)
			after := time.Now()
			poll(t, sensor+" stored", func() bool { return cl.count(t, sensor) >= len(tc.want) })
			got := cl.readings(t, sensor, "")
			byIdentity(t, got)
			if len(got) != len(tc.want) {
				t.Fatalf("%d readings stored, want %d: %+v", len(got), len(tc.want), got)
			}
			for _, w := range tc.want {
				r, ok := findType(got, w.typ)
				if !ok {
					t.Errorf("no %s reading stored: %+v", w.typ, got)
					continue
				}
				if r.Value != w.value || r.Unit != w.unit || r.RoomID != room || r.Site != testSite || r.SensorID != sensor {
					t.Errorf("stored %+v, want value %v unit %q room %q site %q", r, w.value, w.unit, room, testSite)
				}
				if w.ts.IsZero() {
					if r.Timestamp.Before(before) || r.Timestamp.After(after) {
						t.Errorf("%s stamped %v by the agent, want within [%v, %v]", w.typ, r.Timestamp, before, after)
					}
				} else if !r.Timestamp.Equal(w.ts) {
					t.Errorf("%s timestamp %v, want %v", w.typ, r.Timestamp, w.ts)
				}
			}
		})
	}
	t.Run("status", func(t *testing.T) {
		sensor := prefix + "-status"
		for _, st := range []string{"online", "offline", "online"} {
			pub(t, "atrium/"+room+"/"+sensor+"/status", st)
			waitDevice(t, ag, sensor, room, st)
		}
		if n := cl.count(t, sensor); n != 0 {
			t.Errorf("a status message stored %d readings", n)
		}
	})
}

func findType(rs []storedReading, typ string) (storedReading, bool) {
	for _, r := range rs {
		if r.Type == typ {
			return r, true
		}
	}
	return storedReading{}, false
}

// device is an entry of the agent's GET /devices.
type device struct {
	ID       string    `json:"id"`
	RoomID   string    `json:"room_id"`
	Status   string    `json:"status"`
	StatusAt time.Time `json:"status_at"`
	Ignored  int64     `json:"ignored_fields"`
}

func devices(t testing.TB, ag *agentRun) map[string]device {
	t.Helper()
	var body struct {
		Devices []device `json:"devices"`
	}
	if code := getJSON(t, ag.status+"/devices", &body); code != http.StatusOK {
		t.Fatalf("GET /devices: %d", code)
	}
	m := map[string]device{}
	for _, d := range body.Devices {
		m[d.ID] = d
	}
	return m
}

func waitDevice(t testing.TB, ag *agentRun, id, room, status string) {
	t.Helper()
	var last device
	deadline := time.Now().Add(waitFor)
	for {
		last = devices(t, ag)[id]
		if last.Status == status && last.RoomID == room {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /devices: %s is %+v, want status %q in room %q", id, last, status, room)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var passwordLine = regexp.MustCompile(`(?m)^MQTT password: (\S+)$`)

func addDevice(t *testing.T, file, id string) string {
	t.Helper()
	out := runCLI(t, "devices", "add", "-id", id, "-credentials", file)
	m := passwordLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no password in the output of devices add: %q", out)
	}
	return m[1]
}

func TestDeviceCredentialsAndACL(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	file := filepath.Join(t.TempDir(), "credentials.json")
	pwA := addDevice(t, file, "dev-a")
	pwB := addDevice(t, file, "dev-b")
	if pwA == pwB {
		t.Fatal("two devices got the same password")
	}
	ag := startAgent(t, cl.url, "-allow-anonymous=false", "-credentials="+file)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)

	t.Run("refused connections", func(t *testing.T) {
		for _, tc := range []struct{ name, client, user, pw string }{
			{"wrong password", "dev-a", "dev-a", pwA + "x"},
			{"another device's password", "dev-a", "dev-a", pwB},
			{"unknown device", "dev-z", "dev-z", pwA},
			{"anonymous without -allow-anonymous", "anon", "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, ack, err := dial(t, ag.mqtt, tc.client, tc.user, tc.pw, nil)
				if err == nil {
					t.Fatalf("connected as %s, want refused", c.ClientID())
				}
				if ack != nil && ack.ReasonCode < 0x80 {
					t.Errorf("CONNACK reason %#x, want a failure", ack.ReasonCode)
				}
			})
		}
	})

	a, ack, err := dial(t, ag.mqtt, "dev-a", "dev-a", pwA, nil)
	if err != nil {
		t.Fatalf("dev-a with its password: %v (%+v)", err, ack)
	}
	// Refused publishes first: once dev-a's own readings (sent after them) are stored,
	// anything accepted before them would be stored too.
	for i, topic := range []string{"atrium/r-1/dev-b", "atrium/r-2/dev-b", "atrium/r-1/dev-b/temperature", "atrium/r-1/dev-c", "atrium/dev-a/dev-b"} {
		payload := fmt.Sprintf(`{"temperature":20,"ts":%d}`, base.Add(time.Duration(i)*time.Second).UnixMilli())
		if strings.HasSuffix(topic, "temperature") {
			payload = "20"
		}
		rc, err := a.Send(topic, 1, []byte(payload))
		if err != nil {
			t.Fatalf("publish to %s: %v", topic, err)
		}
		if rc != 0x87 {
			t.Errorf("dev-a publishing to %s: PUBACK %#x, want 0x87 not authorized", topic, rc)
		}
	}
	const own = 5
	for i := range own {
		a.MustSend(t, "atrium/r-1/dev-a", 1, fmt.Appendf(nil, `{"temperature":%d,"ts":%d}`, 20+i, base.Add(time.Duration(i)*time.Second).UnixMilli()))
	}
	poll(t, "dev-a's readings stored", func() bool { return cl.count(t, "dev-a") >= own })
	if n := cl.count(t, "dev-a"); n != own {
		t.Errorf("dev-a: %d readings stored, want %d", n, own)
	}
	for _, other := range []string{"dev-b", "dev-c"} {
		if rs := cl.readings(t, other, ""); rs != nil {
			t.Errorf("%s: %d readings stored from dev-a's publishes, want none (sensor unknown)", other, len(rs))
		}
	}
	// dev-b itself may publish under its own id.
	b, ack, err := dial(t, ag.mqtt, "dev-b", "dev-b", pwB, nil)
	if err != nil {
		t.Fatalf("dev-b: %v (%+v)", err, ack)
	}
	b.MustSend(t, "atrium/r-2/dev-b/humidity", 1, []byte("55"))
	poll(t, "dev-b's reading stored", func() bool { return cl.count(t, "dev-b") == 1 })

	t.Run("a will counts only on the device's own topics", func(t *testing.T) {
		b.MustSend(t, "atrium/r-2/dev-b/status", 1, []byte("online"))
		waitDevice(t, ag, "dev-b", "r-2", "online")
		x, ack, err := dial(t, ag.mqtt, "dev-a-x", "dev-a", pwA, &paho.WillMessage{Topic: "atrium/r-2/dev-b/status", QoS: 1, Payload: []byte("offline")})
		if err != nil {
			t.Fatalf("dev-a with a will on dev-b's topic: %v (%+v)", err, ack)
		}
		y, ack, err := dial(t, ag.mqtt, "dev-a-y", "dev-a", pwA, &paho.WillMessage{Topic: "atrium/r-1/dev-a/status", QoS: 1, Payload: []byte("offline")})
		if err != nil {
			t.Fatalf("dev-a with a will on its own topic: %v (%+v)", err, ack)
		}
		y.MustSend(t, "atrium/r-1/dev-a/status", 1, []byte("online"))
		waitDevice(t, ag, "dev-a", "r-1", "online")
		clients := ag.metrics(t).Sum("atrium_agent_mqtt_clients")
		x.Drop()
		// mochi sends a will before it counts the client gone.
		poll(t, "dev-a-x gone", func() bool { return ag.metrics(t).Sum("atrium_agent_mqtt_clients") < clients })
		y.Drop()
		waitDevice(t, ag, "dev-a", "r-1", "offline")
		if d := devices(t, ag)["dev-b"]; d.Status != "online" {
			t.Errorf("dev-a's will on dev-b's topic made dev-b %q", d.Status)
		}
	})

	m := ag.metrics(t)
	if got := m.Sum("atrium_agent_mqtt_auth_failures_total"); got < 4 {
		t.Errorf("auth failures %v, want ≥ 4", got)
	}
	if got := m.Sum("atrium_agent_mqtt_acl_denied_total"); got < 5 {
		t.Errorf("ACL denials %v, want ≥ 5", got)
	}
}

func TestCleanShutdownFlushesTheSpool(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	// A linger of an hour and a batch bigger than what is sent: nothing goes to the
	// cloud until the shutdown flush.
	ag := startAgent(t, cl.url, "-linger=1h", "-batch-max=5000", "-shutdown-timeout=60s")
	const msgs, perMsg = 100, 3
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	c := mustDial(t, ag.mqtt, "flusher")
	for i := range msgs {
		c.MustSend(t, "atrium/r-flush/flush-1", 1, fmt.Appendf(nil, `{"temperature":%d,"humidity":%d,"co2":%d,"ts":%d}`,
			i%40, i%100, 400+i, base.Add(time.Duration(i)*time.Second).UnixMilli()))
	}
	if got := ag.metrics(t).Sum("atrium_agent_spool_readings"); got != msgs*perMsg {
		t.Fatalf("spool holds %v readings before shutdown, want %d", got, msgs*perMsg)
	}
	if n := cl.count(t, "flush-1"); n != 0 {
		t.Fatalf("%d readings forwarded before shutdown; the test needs them held back", n)
	}
	c.Close()
	if err := ag.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Run has returned: everything must already be in the cloud, no polling.
	rs := cl.readings(t, "flush-1", "")
	byIdentity(t, rs)
	if len(rs) != msgs*perMsg {
		t.Errorf("%d readings stored after a clean shutdown, want %d", len(rs), msgs*perMsg)
	}
	s, err := spool.Open(ag.cfg.Spool, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.Readings != 0 || st.DeadLetters != 0 {
		t.Errorf("spool after shutdown: %d readings, %d dead letters; want none", st.Readings, st.DeadLetters)
	}
}
