package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/broker"
	"github.com/atrium-iot/atrium/broker/credentials"
	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// startBroker runs the agent's MQTT broker on a free loopback port, open to
// anonymous clients; with a credentials file, clients that give a username are
// checked against it. (The agent's broker rather than a bare mochi server: mochi
// v2.7.9's own Close can deadlock while a client is being removed, which the
// broker package works around.)
func startBroker(t *testing.T, credentialsFile string) string {
	t.Helper()
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", AllowAnonymous: true, CredentialsFile: credentialsFile}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Error(err)
		}
	})
	return b.Addr()
}

type received struct {
	topic   string
	payload string
}

// subscriber keeps what arrives on atrium/#.
type subscriber struct {
	*mqtttest.Client
}

func subscribe(t *testing.T, addr string) *subscriber {
	t.Helper()
	c := mqtttest.MustDial(t, addr, mqtttest.Login("test-sub", "", ""), mqtttest.Options{Within: 20 * time.Second})
	c.MustSubscribe(t, "atrium/#", 1)
	return &subscriber{c}
}

// byStatus returns the messages whose topic is (status) or is not (data) a status
// topic.
func byStatus(msgs []*paho.Publish, status bool) []received {
	var out []received
	for _, m := range msgs {
		if strings.HasSuffix(m.Topic, "/status") == status {
			out = append(out, received{m.Topic, string(m.Payload)})
		}
	}
	return out
}

// data returns the data messages (not status) received so far.
func (s *subscriber) data() []received { return byStatus(s.Messages(), false) }

// status counts the status messages with payload received so far.
func (s *subscriber) status(payload string) int {
	n := 0
	for _, m := range byStatus(s.Messages(), true) {
		if m.payload == payload {
			n++
		}
	}
	return n
}

// waitData waits until at least n data messages arrived, then returns them.
func (s *subscriber) waitData(t *testing.T, n int) []received {
	t.Helper()
	msgs := s.Wait(t, strconv.Itoa(n)+" data messages", func(msgs []*paho.Publish) bool { return len(byStatus(msgs, false)) >= n })
	return byStatus(msgs, false)
}

// barrier publishes a marker from another client and waits until it arrives: the
// broker delivers to the subscriber in the order it took the messages, so whatever
// it took before (a finished simulation's publishes and resent copies) has arrived.
func (s *subscriber) barrier(t *testing.T, addr string) {
	t.Helper()
	c := mqtttest.MustDial(t, addr, mqtttest.Login("test-barrier", "", ""), mqtttest.Options{Within: 20 * time.Second})
	defer c.Close()
	const topic = "atrium/test/barrier/status"
	c.MustSend(t, topic, 1, []byte("barrier"))
	s.WaitTopic(t, topic)
}

// decoded is what an independent decoder makes of the received messages, by the
// contract's rules.
type decoded struct {
	forms    map[sim.Form]int
	types    map[string]int
	readings []reading.Reading
	expect   sim.Expect
}

func decodeAll(t *testing.T, msgs []received, now time.Time) decoded {
	t.Helper()
	d := decoded{forms: map[sim.Form]int{}, types: map[string]int{}}
	seen := map[string]bool{}
	for _, m := range msgs {
		parts := strings.Split(m.topic, "/")
		room, sensor := parts[1], parts[2]
		var rs []reading.Reading
		ok := true
		switch {
		case len(parts) == 4:
			d.forms[sim.FormPlain]++
			v, err := strconv.ParseFloat(m.payload, 64)
			ok = err == nil
			rs = []reading.Reading{{SensorID: sensor, RoomID: room, Type: parts[3], Value: v}}
		case strings.HasPrefix(m.payload, "["):
			d.forms[sim.FormSenML]++
			var pack []struct {
				BN string   `json:"bn"`
				BT *float64 `json:"bt"`
				N  string   `json:"n"`
				U  string   `json:"u"`
				V  float64  `json:"v"`
			}
			if ok = json.Unmarshal([]byte(m.payload), &pack) == nil; ok {
				bn, bt := "", 0.0
				for _, r := range pack {
					if r.BN != "" {
						bn = r.BN
					}
					if r.BT != nil {
						bt = *r.BT
					}
					if bn != sensor+"/" {
						t.Errorf("SenML bn %q on topic %s", bn, m.topic)
					}
					rs = append(rs, reading.Reading{SensorID: sensor, RoomID: room, Type: r.N, Unit: r.U, Value: r.V,
						Timestamp: time.UnixMilli(int64(math.Round(bt * 1000))).UTC()})
				}
			}
		default:
			d.forms[sim.FormJSON]++
			var obj map[string]float64
			if ok = json.Unmarshal([]byte(m.payload), &obj) == nil; ok {
				ts := time.UnixMilli(int64(obj["ts"])).UTC()
				for k, v := range obj {
					if k != "ts" {
						rs = append(rs, reading.Reading{SensorID: sensor, RoomID: room, Type: k, Value: v, Timestamp: ts})
					}
				}
			}
		}
		if !ok {
			d.expect.Malformed++
			continue
		}
		for _, r := range rs {
			d.types[r.Type]++
			plain := r.Timestamp.IsZero()
			if plain {
				r.Timestamp = now
			}
			d.readings = append(d.readings, r)
			if reading.Validate(&r, now) != nil {
				d.expect.Rejected++
				continue
			}
			key := r.SensorID + "|" + r.Type + "|" + strconv.FormatInt(r.UnixMilli(), 10)
			if !plain && seen[key] {
				d.expect.Duplicates++
				continue
			}
			seen[key] = true
			d.expect.Stored++
		}
	}
	return d
}

func newSim(t *testing.T, args ...string) *sim.Simulator {
	t.Helper()
	cfg, err := sim.ParseFlags(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(cfg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func run(t *testing.T, s *sim.Simulator) sim.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	sum, err := s.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := sum.Messages; m.Produced != m.Published+m.Failed || m.Failed != m.Overflowed+m.Refused+m.Unsent {
		t.Errorf("message counts do not add up: %+v", m)
	}
	return sum
}

func mapsEqual[K comparable](t *testing.T, name string, got, want map[K]int) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %v, want %v", name, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %v, want %v", name, got, want)
			return
		}
	}
}

const monday10 = "2026-03-02T10:00:00Z"

func TestSimulateExactCounts(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		check  func(t *testing.T, sum sim.Summary)
		stable bool // no fault: the exact numbers are known in advance
	}{
		{
			name:   "no faults: every form, 2 rooms x 4 devices x 10 rounds",
			args:   []string{"-rooms", "2", "-sensors-per-room", "4", "-count", "10"},
			stable: true,
			check: func(t *testing.T, sum sim.Summary) {
				// Per room and round: s1 JSON 1 message (3 readings), s2 SenML 1 (3),
				// s3 plain 2 (2), s4 SenML 1 (3): 5 messages, 11 readings.
				want := sim.Summary{Devices: 8, Rounds: 10, Frames: 80, Readings: 220}
				if sum.Devices != want.Devices || sum.Rounds != want.Rounds || sum.Frames != want.Frames || sum.Readings != want.Readings {
					t.Errorf("got devices %d rounds %d frames %d readings %d, want %+v", sum.Devices, sum.Rounds, sum.Frames, sum.Readings, want)
				}
				if sum.Messages.Published != 100 || sum.Expect != (sim.Expect{Stored: 220}) {
					t.Errorf("published %d expect %+v, want 100 and 220 stored", sum.Messages.Published, sum.Expect)
				}
				mapsEqual(t, "by form", sum.ByForm, map[sim.Form]int{sim.FormJSON: 20, sim.FormSenML: 40, sim.FormPlain: 40})
				mapsEqual(t, "by type", sum.ByType, map[string]int{"temperature": 60, "humidity": 40, "co2": 40, "occupancy": 20, "pir": 20, "noise": 20, "light": 20})
				if sum.Status.Online != 8 || sum.Status.Offline != 8 {
					t.Errorf("status %+v, want 8 online and 8 offline", sum.Status)
				}
			},
		},
		{
			name: "message and device faults",
			args: []string{"-rooms", "2", "-sensors-per-room", "4", "-count", "60",
				"-faults", "spike=0.05,skew=0.08,malformed=0.05,duplicate=0.05,dropout=0.02,stuck=0.02"},
			check: func(t *testing.T, sum sim.Summary) {
				f := sum.Faults
				if f.Spikes == 0 || f.Skews == 0 || f.SkewFuture == 0 || f.Malformed == 0 || f.Duplicates == 0 || f.Dropouts == 0 || f.Stuck == 0 {
					t.Errorf("some fault never happened in 480 frames: %+v", f)
				}
				if sum.Frames != 480-f.DropoutFrames {
					t.Errorf("frames %d, want 480 − %d dropout frames", sum.Frames, f.DropoutFrames)
				}
				if sum.Expect.Malformed != f.Malformed || sum.Expect.Rejected < f.Spikes+f.SkewFuture {
					t.Errorf("expect %+v does not follow from faults %+v", sum.Expect, f)
				}
				if sum.Expect.Duplicates < f.Duplicates {
					t.Errorf("expect %d duplicates, at least one reading per duplicated frame (%d)", sum.Expect.Duplicates, f.Duplicates)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-seed", "42", "-speed", "max", "-start", monday10}, tt.args...)
			var sums []sim.Summary
			for i := range 2 { // the same seed twice: the same run
				addr := startBroker(t, "")
				sub := subscribe(t, addr)
				sum := run(t, newSim(t, append(args, "-broker", "tcp://"+addr)...))
				tt.check(t, sum)
				got := sub.waitData(t, sum.Messages.Published)
				if len(got) != sum.Messages.Published || sum.Messages.Failed != 0 {
					t.Fatalf("run %d: received %d data messages, summary published %d failed %d", i, len(got), sum.Messages.Published, sum.Messages.Failed)
				}
				dec := decodeAll(t, got, time.Now())
				mapsEqual(t, "forms received", dec.forms, sum.ByForm)
				mapsEqual(t, "types received", dec.types, sum.ByType)
				if dec.expect != sum.Expect {
					t.Errorf("decoding what arrived gives %+v, summary expects %+v", dec.expect, sum.Expect)
				}
				if n := sub.status("online"); n < sum.Devices {
					t.Errorf("%d online statuses arrived, want %d", n, sum.Devices)
				}
				sums = append(sums, sum)
			}
			a, b := sums[0], sums[1]
			if a.Faults != b.Faults || a.Expect != b.Expect || a.Readings != b.Readings || a.Frames != b.Frames {
				t.Errorf("same seed, different runs:\n%+v\n%+v", a, b)
			}
		})
	}
}

func TestSimulatedValuesArePlausible(t *testing.T) {
	addr := startBroker(t, "")
	sub := subscribe(t, addr)
	// A Monday from 07:00, room-101 (capacity 8), 5-minute rounds for 12 hours.
	sum := run(t, newSim(t, "-broker", addr, "-rooms", "1", "-sensors-per-room", "4", "-interval", "5m",
		"-count", "144", "-speed", "max", "-seed", "3", "-start", "2026-03-02T07:00:00Z"))
	dec := decodeAll(t, sub.waitData(t, sum.Messages.Published), time.Now())
	var maxCO2, maxOcc float64
	minT, maxT := 100.0, -100.0
	for _, r := range dec.readings {
		switch r.Type {
		case "co2":
			maxCO2 = max(maxCO2, r.Value)
		case "occupancy":
			maxOcc = max(maxOcc, r.Value)
			if h := r.Timestamp.Hour(); (h < 8 || h >= 18) && r.Value != 0 {
				t.Errorf("%v people at %s, outside working hours", r.Value, r.Timestamp)
			}
		case "temperature":
			minT, maxT = min(minT, r.Value), max(maxT, r.Value)
		}
	}
	if maxOcc < 1 || maxOcc > 8 {
		t.Errorf("max occupancy %v, want 1…8 (capacity 8)", maxOcc)
	}
	// 8 people in 224 m³ at 4 ACH: steady state 420 + 8·0.005/224·1e6·900 ≈ 581 ppm.
	if maxCO2 < 450 || maxCO2 > 700 {
		t.Errorf("max CO2 %v ppm, want a rise above outdoor but below the 581 ppm steady state plus noise", maxCO2)
	}
	if minT < 16 || maxT > 24 {
		t.Errorf("temperature %v…%v °C, want within setback and set-point plus occupant heat", minT, maxT)
	}
}

func TestReconnectStorm(t *testing.T) {
	addr := startBroker(t, "")
	sub := subscribe(t, addr)
	sum := run(t, newSim(t, "-broker", addr, "-rooms", "1", "-sensors-per-room", "4", "-count", "30",
		"-speed", "max", "-seed", "9", "-start", monday10, "-faults", "reconnect=0.1"))
	if sum.Faults.ReconnectStorms == 0 {
		t.Fatal("no storm in 30 rounds at 0.1; pick another seed")
	}
	if sum.Reconnects < sum.Faults.ReconnectStorms*sum.Devices {
		t.Errorf("reconnects %d, want at least %d storms × %d devices", sum.Reconnects, sum.Faults.ReconnectStorms, sum.Devices)
	}
	// One online status per connection, less those cut before they could say it.
	if sum.Status.Online < sum.Devices || sum.Status.Online > sum.Devices+sum.Reconnects {
		t.Errorf("online statuses %d, want %d…%d", sum.Status.Online, sum.Devices, sum.Devices+sum.Reconnects)
	}
	if sum.Messages.Published != sum.Messages.Produced || sum.Messages.Produced != 30*5 {
		t.Errorf("messages %+v, want all 150 published", sum.Messages)
	}
	got := sub.waitData(t, sum.Messages.Published)
	sub.barrier(t, addr) // any resent copy lands before the upper bound is counted
	if n := len(sub.data()); n < sum.Messages.Published || n > sum.Messages.Published+sum.Messages.Resent {
		t.Errorf("received %d, want %d…%d", len(got), sum.Messages.Published, sum.Messages.Published+sum.Messages.Resent)
	}
	// The broker sends each cut connection's last will: offline statuses beyond the clean ones.
	testwait.WithinState(t, 10*time.Second, "last wills beyond the clean offline statuses", func() (bool, string) {
		n := sub.status("offline")
		return n > sum.Status.Offline, strconv.Itoa(n) + " offline statuses, " + strconv.Itoa(sum.Status.Offline) + " of them clean"
	})
}

// gate is a TCP proxy to the broker that refuses connections until opened.
type gate struct {
	l    net.Listener
	open atomic.Bool
}

func newGate(t *testing.T, to string) *gate {
	g := &gate{}
	g.l = proxy(t, to, func(c, b net.Conn) {
		if !g.open.Load() {
			c.Close()
			b.Close()
			return
		}
		go func() { _, _ = io.Copy(b, c); b.Close() }()
		go func() { _, _ = io.Copy(c, b); c.Close() }()
	})
	return g
}

// proxy listens on loopback for clients of the broker at to, and hands each
// client it accepts, with its own connection to the broker, to serve.
func proxy(t *testing.T, to string, serve func(client, broker net.Conn)) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			serve(c, b)
		}
	}()
	return l
}

func TestOverflowWhileDisconnected(t *testing.T) {
	addr := startBroker(t, "")
	sub := subscribe(t, addr)
	g := newGate(t, addr)
	// 2 devices (s1 JSON, s2 SenML: one message a round each), 20 rounds, room for 5.
	s := newSim(t, "-broker", g.l.Addr().String(), "-rooms", "1", "-sensors-per-room", "2", "-count", "20",
		"-queue", "5", "-speed", "max", "-seed", "1", "-start", monday10, "-connect-wait", "100ms", "-drain", "40s")
	type result struct {
		sum sim.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := s.Run(context.Background())
		done <- result{sum, err}
	}()
	testwait.Within(t, 20*time.Second, "the 20 rounds", func() bool { return s.Stats().Rounds >= 20 })
	g.open.Store(true)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	m := r.sum.Messages
	if m.Produced != 40 || m.Overflowed != 30 || m.Published != 10 || m.Failed != 30 {
		t.Errorf("messages %+v, want 40 produced, 30 overflowed, 10 published", m)
	}
	got := sub.waitData(t, 10)
	// What is kept is the newest: rounds 15…19, stamped 10:01:15…10:01:35.
	first := time.Date(2026, 3, 2, 10, 1, 15, 0, time.UTC)
	for _, r := range decodeAll(t, got, time.Now()).readings {
		if r.Timestamp.Before(first) {
			t.Errorf("reading of %s survived the overflow; only rounds from %s should", r.Timestamp, first)
		}
	}
}

func TestCredentials(t *testing.T) {
	devices := filepath.Join(t.TempDir(), "devices.json")
	pw1, err := credentials.Add(devices, "room-101-s1")
	if err != nil {
		t.Fatal(err)
	}
	pw2, err := credentials.Add(devices, "room-101-s2")
	if err != nil {
		t.Fatal(err)
	}
	addr := startBroker(t, devices)
	sub := subscribe(t, addr)
	creds := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(creds, []byte(`[{"username":"room-101-s1","password":"`+pw1+`"},{"username":"other","password_hash":"x"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	// room-101-s1 has its own password in the file; room-101-s2 takes -password.
	sum := run(t, newSim(t, "-broker", addr, "-rooms", "1", "-sensors-per-room", "2", "-count", "3", "-speed", "max",
		"-start", monday10, "-credentials", creds, "-password", pw2))
	if sum.Messages.Published != 6 {
		t.Errorf("published %d, want 6 (2 devices × 3 rounds)", sum.Messages.Published)
	}
	sub.waitData(t, 6)
}

func TestFlags(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		broker string
		err    string
	}{
		{"default", nil, env(), "tcp://127.0.0.1:1883", ""},
		{"agent's address moves the simulator", nil, env("ATRIUM_MQTT_ADDR", "127.0.0.1:18830"), "tcp://127.0.0.1:18830", ""},
		{"agent listening on all interfaces", nil, env("ATRIUM_MQTT_ADDR", ":18830"), "tcp://127.0.0.1:18830", ""},
		{"ATRIUM_BROKER wins", nil, env("ATRIUM_MQTT_ADDR", "127.0.0.1:18830", "ATRIUM_BROKER", "tcp://10.0.0.1:1"), "tcp://10.0.0.1:1", ""},
		{"-broker wins", []string{"-broker", "tcp://h:2"}, env("ATRIUM_MQTT_ADDR", "127.0.0.1:18830"), "tcp://h:2", ""},
		{"bad fault name", []string{"-faults", "gremlins=0.1"}, env(), "", "gremlins"},
		{"bad fault rate", []string{"-faults", "spike=2"}, env(), "", "rate"},
		{"rates over 1", []string{"-faults", "spike=0.6,malformed=0.6"}, env(), "", "exceed"},
		{"bad speed", []string{"-speed", "fast"}, env(), "", "speed"},
		{"bad qos", []string{"-qos", "3"}, env(), "", "qos"},
		{"bad start", []string{"-start", "yesterday"}, env(), "", "start"},
		{"faults from env", nil, env("ATRIUM_FAULTS", "dropout=0.5"), "tcp://127.0.0.1:1883", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := sim.ParseFlags(tt.args, tt.getenv, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one mentioning %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Broker != tt.broker {
				t.Errorf("broker %q, want %q", cfg.Broker, tt.broker)
			}
		})
	}
	t.Run("speed max and faults", func(t *testing.T) {
		cfg, err := sim.ParseFlags([]string{"-speed", "max", "-faults", "spike=0.25, reconnect=0.001"}, env(), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Speed != 0 || cfg.Faults != (sim.Faults{Spike: 0.25, Reconnect: 0.001}) {
			t.Errorf("speed %v faults %+v", cfg.Speed, cfg.Faults)
		}
	})
	t.Run("-h documents every flag with its variable", func(t *testing.T) {
		var out bytes.Buffer
		if err := sim.Run(context.Background(), []string{"-h"}, env(), io.Discard, &out); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"broker", "rooms", "sensors-per-room", "interval", "qos", "username", "password", "credentials",
			"site", "seed", "duration", "count", "replay", "speed", "faults", "log-format", "log-level", "start"} {
			if !strings.Contains(out.String(), "-"+f+" ") && !strings.Contains(out.String(), "-"+f+"\n") {
				t.Errorf("-h does not document -%s", f)
			}
			if !strings.Contains(out.String(), "$ATRIUM_"+strings.ToUpper(strings.ReplaceAll(f, "-", "_"))) {
				t.Errorf("-h does not name the variable of -%s", f)
			}
		}
	})
}

func TestRunProgram(t *testing.T) {
	addr := startBroker(t, "")
	sub := subscribe(t, addr)
	var out, errOut bytes.Buffer
	getenv := func(k string) string {
		if k == "ATRIUM_MQTT_ADDR" { // the agent's variable moves the simulator
			return addr
		}
		return ""
	}
	// Paced: 4 rounds 30 ms apart at speed 1 take at least 90 ms.
	err := sim.Run(context.Background(), []string{"-rooms", "1", "-sensors-per-room", "1", "-count", "4", "-interval", "30ms",
		"-site", "hq", "-summary", "json", "-log-format", "json"}, getenv, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	var sum sim.Summary
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v\n%s", err, out.String())
	}
	if sum.Messages.Published != 4 {
		t.Errorf("published %d, want 4", sum.Messages.Published)
	}
	if d, err := time.ParseDuration(sum.Elapsed); err != nil || d < 90*time.Millisecond {
		t.Errorf("elapsed %q, want at least 90ms of pacing", sum.Elapsed)
	}
	for _, m := range sub.waitData(t, 4) {
		if m.topic != "atrium/hq-room-101/hq-room-101-s1" {
			t.Errorf("topic %q, want the site-prefixed ids", m.topic)
		}
	}
	if !strings.Contains(errOut.String(), `"msg":"simulator started"`) {
		t.Errorf("no JSON start log: %s", errOut.String())
	}
}

func TestStopsOnCancel(t *testing.T) {
	addr := startBroker(t, "")
	s := newSim(t, "-broker", addr, "-rooms", "1", "-sensors-per-room", "2", "-interval", "10ms", "-start", monday10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var sum sim.Summary
	go func() {
		var err error
		sum, err = s.Run(ctx)
		done <- err
	}()
	testwait.Within(t, 20*time.Second, "4 messages published", func() bool { return s.Stats().Messages.Published >= 4 })
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if sum.Messages.Published < 4 || sum.Messages.Produced != sum.Messages.Published+sum.Messages.Failed {
		t.Errorf("messages %+v", sum.Messages)
	}
}
