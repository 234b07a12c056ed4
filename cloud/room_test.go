package cloud_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testwait"

	"github.com/atrium-iot/atrium/internal/bus/bustest"

	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/amqpbus"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/servicetest"
)

// roomReady bounds the wait for a room service to answer /readyz: over RabbitMQ
// it must connect its consumer first, which takes longer on a loaded machine.
const roomReady = 60 * time.Second

// roomStartParts runs `atrium` in this process with the given -target, every part
// on a loopback port.
func roomStartParts(t testing.TB, target, dataDir string, extra ...string) *cloud.App {
	t.Helper()
	args := append([]string{"-target=" + target, "-data-dir=" + dataDir, "-sensor-addr=127.0.0.1:0", "-room-addr=127.0.0.1:0"}, extra...)
	return cloudtest.Start(t, args...)
}

// roomCount polls the room service until the count of readings of typ in the
// room's history for today reaches want (or the deadline passes), and returns it.
func roomCount(t testing.TB, roomURL, roomID, typ string, want int, within time.Duration) int {
	t.Helper()
	day := time.Now().UTC().Truncate(24 * time.Hour)
	u := fmt.Sprintf("%s/rooms/%s/history?type=%s&bucket=1d&from=%s&to=%s", roomURL, roomID, typ,
		day.Add(-24*time.Hour).Format(time.RFC3339), day.Add(48*time.Hour).Format(time.RFC3339))
	deadline := time.Now().Add(within)
	got := -1
	for {
		if a := roomGet(u); a.Code == 200 {
			got = 0
			for _, b := range a.Body["buckets"].([]any) {
				got += num(b.(map[string]any)["count"])
			}
		}
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roomGet is a GET that does not fail the test when the server is unreachable.
func roomGet(u string) answer {
	a, _ := httpxtest.Send(nil, http.MethodGet, u, nil)
	return a
}

func roomBatch(id, roomID string, n int, at time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"batch_id":%q,"readings":[`, id)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sensor_id":"%s-s%d","room_id":%q,"type":"co2","value":%d,"timestamp":%q}`,
			roomID, i%4, roomID, 500+i%10, ts(at.Add(time.Duration(i)*time.Millisecond)))
	}
	b.WriteString("]}")
	return b.Bytes()
}

// TestRoomInProcess runs the sensor and room services in one process on the
// in-process bus: readings posted to the sensor service become room metrics.
func TestRoomInProcess(t *testing.T) {
	app := roomStartParts(t, "sensor,room", t.TempDir())
	sensorURL, roomURL := "http://"+app.Addr("sensor"), "http://"+app.Addr("room")
	servicetest.WaitReadyWithin(t, roomReady, roomURL)
	now := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	body := fmt.Sprintf(`{"batch_id":"inproc-1","readings":[
		{"sensor_id":"t1","room_id":"lobby","type":"temperature","value":21,"timestamp":%q},
		{"sensor_id":"t2","room_id":"lobby","type":"temperature","value":23,"timestamp":%q},
		{"sensor_id":"c1","room_id":"lobby","type":"co2","value":1200,"timestamp":%q}]}`, ts(now), ts(now), ts(now))
	if a := do(t, "POST", sensorURL+"/sensors/data", []byte(body)); a.Code != 200 || num(a.Body["accepted"]) != 3 {
		t.Fatalf("ingest: %d %s", a.Code, a.Raw)
	}
	if n := roomCount(t, roomURL, "lobby", "temperature", 2, 20*time.Second); n != 2 {
		t.Fatalf("temperature readings in the lobby = %d, want 2", n)
	}
	a := do(t, "GET", roomURL+"/rooms/lobby/metrics", nil)
	m := a.Body["metrics"].(map[string]any)
	if temp := m["temperature"].(map[string]any); temp["value"] != 22.0 || temp["sensors"] != 2.0 || a.Body["air_quality"] != "poor" {
		t.Errorf("metrics = %s, want temperature 22 from 2 sensors, air poor", a.Raw)
	}
}

// roomVhost makes a RabbitMQ virtual host for one test, so that its durable
// "room" queue is shared with nobody, and returns the URL of base moved to it.
// Without rabbitmqctl it returns base.
func roomVhost(t testing.TB, base string) string {
	t.Helper()
	u, err := bustest.Vhost(t, base, fmt.Sprintf("atrium-room-test-%d", time.Now().UnixNano()))
	if err != nil {
		t.Logf("using the shared vhost: %v", err)
		return base
	}
	return u
}

// roomBuildAtrium builds the atrium program into a temporary directory.
func roomBuildAtrium(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "atrium")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/atrium-iot/atrium/cmd/atrium").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

// roomProc is an `atrium` process.
type roomProc struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs bytes.Buffer
}

// roomStartProc runs `atrium -target=<part>` with its own data directory on a
// loopback port and waits until it serves.
func roomStartProc(t testing.TB, bin, part string, args ...string) *roomProc {
	t.Helper()
	args = append([]string{"-target=" + part, "-" + part + "-addr=127.0.0.1:0", "-data-dir=" + t.TempDir(), "-log-format=json"}, args...)
	p := &roomProc{cmd: exec.Command(bin, args...)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
			p.mu.Unlock()
			var line struct{ Msg, Server, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" && line.Server == part {
				select {
				case addr <- line.Addr:
				default:
				}
			}
		}
	}()
	exited := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s logs:\n%s", part, p.tail(4000))
		}
	})
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-exited:
		t.Fatalf("%s exited: %s", part, p.tail(4000))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not listen in 60 s: %s", part, p.tail(4000))
	}
	servicetest.WaitReadyWithin(t, roomReady, p.url)
	return p
}

func (p *roomProc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.logs.String()
	return s[max(0, len(s)-n):]
}

// TestRoomProcessesOverRabbitMQ runs the sensor and room services as separate
// processes over RabbitMQ: readings in at the sensor service, metrics out at the
// room service; an event published twice on the bus is counted once.
func TestRoomProcessesOverRabbitMQ(t *testing.T) {
	amqp := roomVhost(t, amqpURL(t))
	bin := roomBuildAtrium(t)
	sensor := roomStartProc(t, bin, "sensor", "-bus="+amqp)
	room := roomStartProc(t, bin, "room", "-bus="+amqp)

	at := time.Now().UTC().Add(-30 * time.Second).Truncate(time.Second)
	for i := range 5 {
		body := roomBatch(fmt.Sprintf("proc-%d", i), "atrium-hall", 100, at.Add(time.Duration(i)*time.Second))
		if a := do(t, "POST", sensor.url+"/sensors/data", body); a.Code != 200 || num(a.Body["accepted"]) != 100 {
			t.Fatalf("ingest %d: %d %s", i, a.Code, a.Raw)
		}
	}
	if n := roomCount(t, room.url, "atrium-hall", "co2", 500, 60*time.Second); n != 500 {
		t.Fatalf("co2 readings in the hall = %d, want 500", n)
	}
	a := do(t, "GET", room.url+"/rooms/atrium-hall/metrics", nil)
	co2 := a.Body["metrics"].(map[string]any)["co2"].(map[string]any)
	// Each sensor's latest is the last of its readings in batch 4 (i = 96..99:
	// values 506..509), so the room's value is their mean.
	if co2["value"] != 507.5 || co2["sensors"] != 4.0 || a.Body["air_quality"] != "good" {
		t.Errorf("metrics = %s, want co2 507.5 from 4 sensors, good air", a.Raw)
	}

	// The same event twice, straight on the bus: nothing changes.
	b, err := amqpbus.New(t.Context(), amqp, amqpbus.Options{Logger: logging.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ev := roomBatch("proc-redelivered", "atrium-hall", 10, at.Add(time.Minute))
	for range 2 {
		if err := b.Publish(t.Context(), bus.SensorDataReceived, ev); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Within(t, 60*time.Second, "the duplicate counted", func() bool {
		return strings.Contains(string(roomGet(room.url+"/metrics").Raw), `atrium_room_batches_total{outcome="duplicate"} 1`)
	})
	if n := roomCount(t, room.url, "atrium-hall", "co2", 510, time.Second); n != 510 {
		t.Errorf("after publishing one event twice: %d readings, want 510", n)
	}
}

// TestRoomRabbitMQRestart stops and starts the RabbitMQ application while
// batches flow from the sensor process to the room process: once the broker is
// back, the room metrics converge on every reading, none lost, none counted
// twice. It disturbs every user of the broker, so it runs only with
// ATRIUM_TEST_RABBITMQ_RESTART=1.
func TestRoomRabbitMQRestart(t *testing.T) {
	if os.Getenv("ATRIUM_TEST_RABBITMQ_RESTART") != "1" {
		t.Skip("restarts the shared RabbitMQ: set ATRIUM_TEST_RABBITMQ_RESTART=1")
	}
	amqp := roomVhost(t, amqpURL(t))
	bin := roomBuildAtrium(t)
	sensor := roomStartProc(t, bin, "sensor", "-bus="+amqp)
	room := roomStartProc(t, bin, "room", "-bus="+amqp)
	ctl := func(arg string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "rabbitmqctl", arg).CombinedOutput(); err != nil {
			t.Errorf("rabbitmqctl %s: %v: %s", arg, err, out)
		}
	}
	var restarted sync.Once
	t.Cleanup(func() { restarted.Do(func() { ctl("start_app") }) })

	const batches, size = 60, 50
	at := time.Now().UTC().Add(-4 * time.Minute).Truncate(time.Second)
	var stoppedAt time.Time
	for i := range batches {
		if i == batches/3 {
			ctl("stop_app")
			stoppedAt = time.Now()
		}
		body := roomBatch(fmt.Sprintf("restart-%d", i), "atrium-restart", size, at.Add(time.Duration(i)*time.Second))
		// A client retries a batch (same id) until the sensor service takes it;
		// the broker comes back 10 s after it went.
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if !stoppedAt.IsZero() && time.Since(stoppedAt) > 10*time.Second {
				restarted.Do(func() { ctl("start_app") })
			}
			a := roomPost(sensor.url+"/sensors/data", body)
			if a.Code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch %d not accepted in 3 min: %d %s", i, a.Code, a.Raw)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	restarted.Do(func() { ctl("start_app") })
	if n := roomCount(t, room.url, "atrium-restart", "co2", batches*size, 3*time.Minute); n != batches*size {
		t.Fatalf("co2 readings after the restart = %d, want %d", n, batches*size)
	}
}

// roomPost posts body with a 5 s timeout and never fails the test on a
// connection error.
func roomPost(u string, body []byte) answer {
	a, _ := httpxtest.Send(&http.Client{Timeout: 5 * time.Second}, http.MethodPost, u, body, "Content-Type", "application/json")
	return a
}

// BenchmarkRoomRabbitMQ publishes sensor.data.received events of 500 readings
// on RabbitMQ and measures how fast the room service (in this process, on its
// SQLite store) applies them: readings/s end to end through the broker.
func BenchmarkRoomRabbitMQ(b *testing.B) {
	base := os.Getenv("ATRIUM_TEST_AMQP_URL")
	if base == "" {
		b.Skip("ATRIUM_TEST_AMQP_URL not set")
	}
	amqp := roomVhost(b, base)
	app := roomStartParts(b, "room", b.TempDir(), "-bus="+amqp)
	roomURL := "http://" + app.Addr("room")
	servicetest.WaitReadyWithin(b, roomReady, roomURL)
	pub, err := amqpbus.New(context.Background(), amqp, amqpbus.Options{Logger: logging.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	at := time.Now().UTC().Add(-time.Hour)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = roomBatch(fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), fmt.Sprintf("bench-%d", i%10), 500, at.Add(time.Duration(i)*time.Second))
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	const publishers = 4
	for p := range publishers {
		wg.Go(func() {
			for i := p; i < b.N; i += publishers {
				if err := pub.Publish(context.Background(), bus.SensorDataReceived, bodies[i]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := fmt.Sprintf(`atrium_room_batches_total{outcome="applied"} %d`, b.N)
	testwait.Within(b, 5*time.Minute, "every reading applied", func() bool { return strings.Contains(string(roomGet(roomURL+"/metrics").Raw), want) })
	b.ReportMetric(float64(b.N*500)/time.Since(start).Seconds(), "readings/s")
}
