package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/internal/flagenv"
	"github.com/atrium-iot/atrium/internal/reading"
)

// The simulated fleet of these tests: 3 rooms of 4 devices, one of each role.
const (
	fleetRooms   = 3
	fleetPerRoom = 4
)

func fleetArgs(count int, seed uint64, extra ...string) []string {
	return append([]string{
		"-rooms", strconv.Itoa(fleetRooms), "-sensors-per-room", strconv.Itoa(fleetPerRoom),
		"-interval", "50ms", "-count", strconv.Itoa(count), "-seed", strconv.FormatUint(seed, 10),
	}, extra...)
}

// TestSimulatedFleet runs the simulator without faults for a fixed number of rounds
// (speed 1, 50 ms apart, timestamps from now) and checks that the cloud has every
// device in the right room and exactly the readings the simulator expects stored.
func TestSimulatedFleet(t *testing.T) {
	skipShort(t)
	const rounds = 40
	st := startStack(t)
	sum := st.runSim(t, fleetArgs(rounds, 7)...)
	agentM := st.settle(t)
	t.Logf("simulator: %d messages, %d readings, expect %+v, elapsed %s", sum.Messages.Published, sum.Readings, sum.Expect, sum.Elapsed)

	t.Run("summary", func(t *testing.T) {
		if sum.Devices != fleetRooms*fleetPerRoom || sum.Rounds != rounds {
			t.Errorf("devices %d, rounds %d; want %d, %d", sum.Devices, sum.Rounds, fleetRooms*fleetPerRoom, rounds)
		}
		if m := sum.Messages; m.Failed != 0 || m.Resent != 0 || m.Published != m.Produced {
			t.Errorf("messages %+v: want every one published once", m)
		}
		// Without faults every reading is valid and new.
		if e := sum.Expect; e.Stored != sum.Readings || e.Rejected != 0 || e.Malformed != 0 || e.Duplicates != 0 {
			t.Errorf("expect %+v with %d readings: want all stored", e, sum.Readings)
		}
		if sum.Expect.Stored == 0 {
			t.Fatal("nothing to store")
		}
	})

	t.Run("registry", func(t *testing.T) {
		got := map[string]registered{}
		for _, s := range listSensors(t, st.sensor.url) {
			got[s.ID] = s
		}
		if len(got) != fleetRooms*fleetPerRoom {
			t.Errorf("GET /sensors lists %d sensors, want %d", len(got), fleetRooms*fleetPerRoom)
		}
		for i := range fleetRooms {
			room := sim.RoomID("", i)
			for j := range fleetPerRoom {
				id := sim.SensorID(room, j)
				s, ok := got[id]
				if !ok {
					t.Errorf("sensor %s missing from GET /sensors", id)
					continue
				}
				wantTypes := slices.Sorted(slices.Values(sim.Roles[j%len(sim.Roles)].Types))
				gotTypes := slices.Sorted(slices.Values(s.Types))
				if s.RoomID != room || s.Site != "e2e" || !slices.Equal(gotTypes, wantTypes) {
					t.Errorf("sensor %s: room %q, site %q, types %v; want %q, %q, %v", id, s.RoomID, s.Site, gotTypes, room, "e2e", wantTypes)
				}
			}
		}
	})

	t.Run("stored", func(t *testing.T) {
		// A page size that does not divide the per-sensor counts exercises the cursor.
		rs := readAll(t, st.sensor.url, 37)
		if len(rs) != sum.Expect.Stored {
			t.Errorf("stored %d readings, simulator expects %d", len(rs), sum.Expect.Stored)
		}
		byType := map[string]int{}
		perSensor := map[string]int{}
		for _, r := range rs {
			byType[r.Type]++
			perSensor[r.SensorID]++
			if r.Site != "e2e" {
				t.Errorf("reading %+v: site %q, want e2e", storedID(r), r.Site)
			}
		}
		for typ, n := range sum.ByType {
			if byType[typ] != n {
				t.Errorf("stored %d %s readings, simulator published %d", byType[typ], typ, n)
			}
		}
		for i := range fleetRooms {
			for j := range fleetPerRoom {
				id := sim.SensorID(sim.RoomID("", i), j)
				if want := rounds * len(sim.Roles[j%len(sim.Roles)].Types); perSensor[id] != want {
					t.Errorf("sensor %s: %d readings stored, want %d (%d rounds)", id, perSensor[id], want, rounds)
				}
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m := scrape(t, st.sensor.url)
		for _, c := range []struct {
			series string
			want   int
		}{
			{`atrium_sensor_readings_total{outcome="accepted"}`, sum.Expect.Stored},
			{`atrium_sensor_readings_total{outcome="duplicate"}`, 0},
			{`atrium_sensor_readings_total{outcome="rejected"}`, 0},
		} {
			if got := m.Get(c.series); got != float64(c.want) {
				t.Errorf("sensor %s = %v, want %d", c.series, got, c.want)
			}
		}
		if got := agentM.Get("atrium_agent_dead_lettered_total"); got != 0 {
			t.Errorf("agent dead-lettered %v messages, want 0", got)
		}
		if got := agentM.Get("atrium_agent_ingested_total"); got != float64(sum.Readings) {
			t.Errorf("agent ingested %v readings, simulator published %d", got, sum.Readings)
		}
	})
}

// TestSimulatedFaults runs the simulator with spikes, malformed payloads, clock skew
// (past and future) and duplicated messages, and checks where each fault ends up.
//
// The arithmetic. The simulator's Expect counts readings, one by one, with package
// reading's rules (firmware-sim/doc.go): Rejected = Spikes + readings of SkewFuture
// frames, Malformed = malformed messages, Duplicates = readings of duplicated frames.
// The agent decides field by field and record by record (agent/decode): an invalid
// reading is a dead letter of its own, its valid companions are stored. So:
//
//   - the agent dead-letters Expect.Malformed whole messages and Expect.Rejected
//     single readings: Malformed + Rejected dead letters;
//   - Malformed + Spikes + SkewFuture messages have something refused (one spike,
//     one future skew or one malformation spoils exactly one message): counted as
//     messages_total{result="dead_letter"} when nothing in them was kept, else
//     {result="partial"};
//   - the invalid readings inside those dead letters are Expect.Rejected;
//   - the agent keeps the valid readings of a message with an invalid one (the
//     message is dead-lettered for its invalid readings only), so the cloud stores
//     exactly Expect.Stored;
//   - the cloud counts Expect.Duplicates duplicates: the copy of a duplicated
//     message repeats identities the first copy stored (a skew into the past that
//     lands on an earlier frame's timestamp is counted by both sides alike);
//   - every reading of a well-formed message is either stored, a duplicate, or an
//     invalid reading in a dead letter: Readings = accepted + duplicates + invalid.
func TestSimulatedFaults(t *testing.T) {
	skipShort(t)
	const rounds = 60
	st := startStack(t)
	sum := st.runSim(t, fleetArgs(rounds, 11, "-faults", "spike=0.05,malformed=0.05,skew=0.1,duplicate=0.05")...)
	agentM := st.settle(t)
	cloudM := scrape(t, st.sensor.url)
	f, e := sum.Faults, sum.Expect
	t.Logf("simulator: %d messages, %d readings, faults %+v, expect %+v, elapsed %s", sum.Messages.Published, sum.Readings, f, e, sum.Elapsed)
	if m := sum.Messages; m.Failed != 0 || m.Resent != 0 {
		t.Fatalf("messages %+v: the arithmetic below assumes every message published once", m)
	}
	if f.Spikes == 0 || f.Malformed == 0 || f.SkewFuture == 0 || f.Skews == f.SkewFuture || f.Duplicates == 0 {
		t.Fatalf("faults %+v: want at least one of each kind (spike, malformed, past and future skew, duplicate)", f)
	}
	wantDead := f.Malformed + e.Rejected
	wantRefused := f.Malformed + f.Spikes + f.SkewFuture

	t.Run("simulator bookkeeping", func(t *testing.T) {
		per := readingsPerFrame(t)
		if e.Malformed != f.Malformed || e.Rejected != f.Spikes+per*f.SkewFuture {
			t.Errorf("expect malformed %d, rejected %d; want %d and %d spikes + %d×%d future-skewed readings",
				e.Malformed, e.Rejected, f.Malformed, f.Spikes, per, f.SkewFuture)
		}
		if e.Duplicates != per*f.Duplicates {
			t.Logf("duplicates %d ≠ %d×%d copies: some past skews landed on earlier frames' timestamps", e.Duplicates, per, f.Duplicates)
		}
	})

	t.Run("agent metrics", func(t *testing.T) {
		if got := agentM.Get("atrium_agent_dead_lettered_total"); got != float64(wantDead) {
			t.Errorf("agent dead_lettered_total = %v, want malformed messages %d + invalid readings %d = %d",
				got, f.Malformed, e.Rejected, wantDead)
		}
		var refused float64
		for _, form := range []string{"json", "senml", "plain"} {
			for _, result := range []string{"dead_letter", "partial"} {
				refused += agentM.Get(fmt.Sprintf(`atrium_agent_messages_total{form=%q,result=%q}`, form, result))
			}
		}
		if refused != float64(wantRefused) {
			t.Errorf("agent messages_total{result=dead_letter|partial} sums to %v, want malformed %d + spikes %d + future skews %d = %d",
				refused, f.Malformed, f.Spikes, f.SkewFuture, wantRefused)
		}
	})

	stored := readAll(t, st.sensor.url, 1000)
	accepted := int(cloudM.Get(`atrium_sensor_readings_total{outcome="accepted"}`))
	dups := int(cloudM.Get(`atrium_sensor_readings_total{outcome="duplicate"}`))

	// Stop the agent (it drains and exits 0) and read its dead letters with its CLI.
	if d, err := st.agent.interrupt(t); err != nil {
		t.Fatalf("agent exit after SIGINT (%s): %v", d, err)
	}
	dead := deadLetters(t, st.agent.spool)
	tally := tallyDeadLetters(t, dead)
	t.Logf("dead letters: %+v", tally)

	t.Run("dead letters", func(t *testing.T) {
		if len(dead) != wantDead {
			t.Errorf("`atrium-agent spool dead-letters` lists %d, want %d", len(dead), wantDead)
		}
		if want := e.Rejected - f.Spikes; tally.malformed != f.Malformed || tally.spiked != f.Spikes || tally.future != want || tally.other != 0 {
			t.Errorf("dead letters: %d malformed, %d spiked, %d future, %d other; want %d, %d, %d (readings of %d future-skewed frames), 0",
				tally.malformed, tally.spiked, tally.future, tally.other, f.Malformed, f.Spikes, want, f.SkewFuture)
		}
		if tally.companions != 0 {
			t.Errorf("dead letters hold %d valid readings; each invalid reading should stand alone", tally.companions)
		}
		if tally.invalid != e.Rejected {
			t.Errorf("dead letters hold %d invalid readings, simulator expects %d rejected", tally.invalid, e.Rejected)
		}
	})

	t.Run("cloud", func(t *testing.T) {
		if accepted != e.Stored || len(stored) != e.Stored {
			t.Errorf("cloud accepted %d, lists %d; want Expect.Stored %d", accepted, len(stored), e.Stored)
		}
		if dups != e.Duplicates {
			t.Errorf("cloud counted %d duplicates, simulator expects %d", dups, e.Duplicates)
		}
		if got := cloudM.Get(`atrium_sensor_readings_total{outcome="rejected"}`); got != 0 {
			t.Errorf("cloud rejected %v readings; the agent should have dead-lettered every invalid one", got)
		}
		if got := accepted + dups + tally.invalid; got != sum.Readings {
			t.Errorf("accepted %d + duplicates %d + invalid readings %d = %d, simulator published %d readings",
				accepted, dups, tally.invalid, got, sum.Readings)
		}
	})

}

// readingsPerFrame is the number of readings of a JSON or SenML frame, the same for
// every such role of the simulator (a plain device sends one reading per message).
func readingsPerFrame(t *testing.T) int {
	t.Helper()
	n := 0
	for _, r := range sim.Roles {
		if r.Form == sim.FormPlain {
			continue
		}
		if n != 0 && len(r.Types) != n {
			t.Fatalf("roles carry %d and %d readings per frame; the arithmetic assumes one size", n, len(r.Types))
		}
		n = len(r.Types)
	}
	return n
}

// deadLetter is one line of `atrium-agent spool dead-letters`.
type deadLetter struct {
	ID      uint64    `json:"id"`
	At      time.Time `json:"at"`
	Topic   string    `json:"topic"`
	Batch   string    `json:"batch"`
	Reason  string    `json:"reason"`
	Payload string    `json:"payload"`
}

// deadLetters lists the dead letters of a stopped agent's spool with its CLI.
func deadLetters(t *testing.T, spool string) []deadLetter {
	t.Helper()
	cmd := exec.Command(bins.Agent, "spool", "dead-letters", "-spool", spool, "-limit", "100000")
	cmd.Env = flagenv.Strip(os.Environ())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("atrium-agent spool dead-letters: %v\n%s", err, stderr.Bytes())
	}
	var dls []deadLetter
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var d deadLetter
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dead letter line %q: %v", sc.Text(), err)
		}
		dls = append(dls, d)
	}
	return dls
}

// deadTally classifies dead letters by reading their payloads with the contract's
// rules, independently of the agent's reasons.
type deadTally struct {
	malformed, spiked, future, other int // messages
	readings                         int // readings in well-formed dead letters
	invalid                          int // of those, out of range or too far in the future
	companions                       int // of those, valid (they shared a message with an invalid one)
}

func tallyDeadLetters(t *testing.T, dls []deadLetter) deadTally {
	t.Helper()
	var tl deadTally
	for _, d := range dls {
		typ, ok := plainType(d.Topic)
		if d.Batch != "" || !ok && strings.Count(d.Topic, "/") != 2 {
			tl.other++
			continue
		}
		rs, ts, ok := payloadReadings(d.Payload, typ)
		if !ok {
			tl.malformed++
			continue
		}
		future := !ts.IsZero() && ts.After(d.At.Add(reading.MaxFuture+time.Second))
		bad := 0
		for _, r := range rs {
			if future || !inRange(r.typ, r.value) {
				bad++
			}
		}
		tl.readings += len(rs)
		tl.invalid += bad
		tl.companions += len(rs) - bad
		switch {
		case future:
			tl.future++
		case bad > 0:
			tl.spiked++
		default:
			tl.other++
		}
	}
	return tl
}

// plainType is the type of a plain-number topic atrium/<room>/<sensor>/<type>.
func plainType(topic string) (string, bool) {
	parts := strings.Split(topic, "/")
	if len(parts) != 4 {
		return "", false
	}
	return parts[3], true
}

type typedValue struct {
	typ   string
	value float64
}

// payloadReadings reads a simulator payload: a plain number (typ set), a JSON object
// of metrics with "ts" in Unix ms, or a SenML pack with "bt" in seconds. ok is false
// for a payload that is none of these (malformed).
func payloadReadings(payload, typ string) (rs []typedValue, ts time.Time, ok bool) {
	if typ != "" {
		v, err := strconv.ParseFloat(strings.TrimSpace(payload), 64)
		if err != nil {
			return nil, time.Time{}, false
		}
		return []typedValue{{typ, v}}, time.Time{}, true
	}
	p := strings.TrimSpace(payload)
	if strings.HasPrefix(p, "[") {
		var pack []struct {
			BT *float64 `json:"bt"`
			N  string   `json:"n"`
			V  *float64 `json:"v"`
		}
		if err := json.Unmarshal([]byte(p), &pack); err != nil || len(pack) == 0 {
			return nil, time.Time{}, false
		}
		for _, r := range pack {
			if r.BT != nil {
				ts = time.UnixMilli(int64(math.Round(*r.BT * 1000)))
			}
			if r.V == nil {
				return nil, time.Time{}, false
			}
			rs = append(rs, typedValue{r.N, *r.V})
		}
		return rs, ts, true
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(p), &obj); err != nil {
		return nil, time.Time{}, false
	}
	for k, raw := range obj {
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, time.Time{}, false
		}
		if k == "ts" {
			ts = time.UnixMilli(int64(v))
			continue
		}
		rs = append(rs, typedValue{k, v})
	}
	return rs, ts, true
}

// inRange applies the plausible ranges of reading.Known; other types have none.
func inRange(typ string, v float64) bool {
	k, ok := reading.Known[typ]
	return !ok || (v >= k.Min && v <= k.Max)
}

// TestSimulatedFullSpeed runs the fleet without faults at -speed max, its clock
// started an hour ago so that no timestamp runs ahead of the wall clock. Every
// reading is valid and new by the simulator's count; the cloud must store them all.
//
// The light devices publish plain numbers, which carry no timestamp: the agent
// stamps them with its clock, in milliseconds. At full speed a device publishes its
// next light reading as soon as the previous PUBACK arrives, often within the same
// millisecond, so two readings get one identity and the cloud counts the second as
// a duplicate, while atrium-sim counts every plain reading as new. The conservation
// (stored + duplicates = Expect.Stored) always holds; the equality may not.
func TestSimulatedFullSpeed(t *testing.T) {
	skipShort(t)
	const rounds = 300
	st := startStack(t)
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	sum := st.runSim(t, fleetArgs(rounds, 3, "-speed", "max", "-start", start)...)
	st.settle(t)
	m := scrape(t, st.sensor.url)
	accepted := int(m.Get(`atrium_sensor_readings_total{outcome="accepted"}`))
	dups := int(m.Get(`atrium_sensor_readings_total{outcome="duplicate"}`))
	t.Logf("simulator: %d readings, expect %+v, elapsed %s; cloud accepted %d, duplicates %d", sum.Readings, sum.Expect, sum.Elapsed, accepted, dups)
	if sum.Messages.Failed != 0 || sum.Expect.Stored != sum.Readings {
		t.Fatalf("messages %+v, expect %+v: want every reading published and expected stored", sum.Messages, sum.Expect)
	}

	stored := readAll(t, st.sensor.url, 1000)
	t.Run("every reading reaches the cloud", func(t *testing.T) {
		if accepted+dups != sum.Expect.Stored {
			t.Errorf("cloud accepted %d + duplicates %d, simulator published %d readings", accepted, dups, sum.Expect.Stored)
		}
		if len(stored) != accepted {
			t.Errorf("cloud lists %d readings, accepted %d", len(stored), accepted)
		}
	})

	t.Run("receiver-stamped readings stay distinct", func(t *testing.T) {
		if accepted != sum.Expect.Stored || dups != 0 {
			t.Errorf("cloud stored %d and counted %d duplicates, simulator expects %d stored: plain readings stamped by the agent in one millisecond share an identity",
				accepted, dups, sum.Expect.Stored)
		}
		// Where the readings are missing: per device, against rounds × its types.
		perSensor := map[string]int{}
		for _, r := range stored {
			perSensor[r.SensorID]++
		}
		for i := range fleetRooms {
			for j := range fleetPerRoom {
				id, role := sim.SensorID(sim.RoomID("", i), j), sim.Roles[j%len(sim.Roles)]
				if want := rounds * len(role.Types); perSensor[id] != want {
					t.Logf("sensor %s (%s, %s form): %d of %d readings stored", id, role.Name, role.Form, perSensor[id], want)
				}
			}
		}
	})
}
