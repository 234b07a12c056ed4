package e2e

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent/spool"
	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// interruptLimit is how soon a program must exit after SIGINT. The simulator may
// spend up to its -drain (5 s) sending what it holds, the agent its -shutdown-timeout
// (10 s) flushing its spool; here both have little to do.
const interruptLimit = 10 * time.Second

// TestInterrupt stops every program with SIGINT, as Ctrl-C does, upstream first:
// the simulator (it stops producing, drains and prints its summary), the agent (it
// stops taking MQTT input and flushes its spool to the cloud before it exits), then
// the sensor service. Each must exit 0 within interruptLimit. The agent runs with a
// linger of an hour, so before the SIGINT nothing has been forwarded and everything
// the cloud ends up with was sent by the shutdown flush. Afterwards only the sensor
// service is started again, on its data: it must hold every reading.
func TestInterrupt(t *testing.T) {
	skipShort(t)
	dir := t.TempDir()
	sensor := startSensor(t, filepath.Join(dir, "cloud"), "127.0.0.1:0")
	agent := startAgent(t, sensor.url, filepath.Join(dir, "agent", "spool.db"),
		"-linger", "1h", "-batch-max", "1000000", "-batch-bytes", strconv.Itoa(4<<20))
	st := &stack{sensor: sensor, agent: agent, dir: dir}
	simProc := start(t, "atrium-sim", bins.Sim, st.simArgs("-rooms", "1", "-sensors-per-room", "4", "-interval", "50ms", "-seed", "5")...)

	const atLeast = 200
	testwait.WithinState(t, settleTimeout, "the agent to spool readings", func() (bool, string) {
		if simProc.Exited() {
			t.Fatalf("atrium-sim exited early: %v", simProc.Err())
		}
		n := scrape(t, agent.url).Get("atrium_agent_ingested_total")
		return n >= atLeast, strconv.FormatFloat(n, 'f', -1, 64) + " readings ingested, want ≥ " + strconv.Itoa(atLeast)
	})

	var sum sim.Summary
	ok := t.Run("atrium-sim", func(t *testing.T) {
		d, err := simProc.interrupt(t)
		t.Logf("exited %v after %s", err, d.Round(time.Millisecond))
		if code := exitCode(err); code != 0 || d > interruptLimit {
			t.Fatalf("exit code %d after %s; want 0 within %s", code, d, interruptLimit)
		}
		sum = parseSummary(t, simProc)
		if sum.Expect.Stored < atLeast || sum.Messages.Failed != 0 || sum.Expect.Stored != sum.Readings {
			t.Fatalf("summary: %d readings, expect %+v, messages %+v; want ≥ %d, all published and stored", sum.Readings, sum.Expect, sum.Messages, atLeast)
		}
		// Every reading is in the spool and none in the cloud yet: only the
		// agent's shutdown flush can deliver them.
		am, cm := scrape(t, agent.url), scrape(t, sensor.url)
		if in, left := am.Get("atrium_agent_ingested_total"), am.Get("atrium_agent_spool_readings"); in != float64(sum.Readings) || left != in {
			t.Fatalf("agent ingested %v, holds %v; want all %d simulator readings held", in, left, sum.Readings)
		}
		if got := cm.Get(`atrium_sensor_readings_total{outcome="accepted"}`); got != 0 {
			t.Fatalf("cloud accepted %v readings before the agent's shutdown; the linger should have held them", got)
		}
	})
	if !ok {
		t.FailNow()
	}

	ok = t.Run("atrium-agent", func(t *testing.T) {
		d, err := agent.interrupt(t)
		t.Logf("exited %v after %s, flushing %d readings", err, d.Round(time.Millisecond), sum.Readings)
		if code := exitCode(err); code != 0 || d > interruptLimit {
			t.Fatalf("exit code %d after %s; want 0 within %s", code, d, interruptLimit)
		}
		sp, err := spool.Open(agent.spool, spool.Options{})
		if err != nil {
			t.Fatalf("open the agent's spool after exit: %v", err)
		}
		stats := sp.Stats()
		if err := sp.Close(); err != nil {
			t.Fatal(err)
		}
		if stats.Readings != 0 || stats.DeadLetters != 0 {
			t.Errorf("spool after exit holds %d readings and %d dead letters, want none", stats.Readings, stats.DeadLetters)
		}
		if got := scrape(t, sensor.url).Get(`atrium_sensor_readings_total{outcome="accepted"}`); got != float64(sum.Expect.Stored) {
			t.Errorf("cloud accepted %v readings after the agent's flush, want %d", got, sum.Expect.Stored)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("atrium", func(t *testing.T) {
		d, err := sensor.interrupt(t)
		t.Logf("exited %v after %s", err, d.Round(time.Millisecond))
		if code := exitCode(err); code != 0 || d > interruptLimit {
			t.Fatalf("exit code %d after %s; want 0 within %s", code, d, interruptLimit)
		}
	})

	t.Run("restarted sensor service has every reading", func(t *testing.T) {
		again := startSensor(t, sensor.dataDir, sensor.addr)
		rs := readAll(t, again.url, 1000)
		if len(rs) != sum.Expect.Stored {
			t.Errorf("restarted sensor service lists %d readings, simulator expects %d", len(rs), sum.Expect.Stored)
		}
		perSensor := map[string]int{}
		for _, r := range rs {
			perSensor[r.SensorID]++
		}
		for j := range 4 {
			if id := sim.SensorID(sim.RoomID("", 0), j); perSensor[id] == 0 {
				t.Errorf("sensor %s has no readings", id)
			}
		}
		d, err := again.interrupt(t)
		if code := exitCode(err); code != 0 || d > interruptLimit {
			t.Errorf("restarted sensor service: exit code %d after %s; want 0 within %s", code, d, interruptLimit)
		}
	})
}
