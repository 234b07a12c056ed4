package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/internal/bus/bustest"
	"github.com/atrium-iot/atrium/internal/flagenv"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/analytics/clickhousestore"
)

// The engines of the scale-out test, each named by an environment variable.
var scaleEngines = []string{"ATRIUM_TEST_MONGODB_URL", "ATRIUM_TEST_CLICKHOUSE_URL", "ATRIUM_TEST_AMQP_URL"}

// scaleURLs returns the engines' URLs, skipping t unless all are set (failing it
// when ATRIUM_REQUIRE_INTEGRATION=1).
func scaleURLs(t *testing.T) (mongo, clickhouse, amqp string) {
	t.Helper()
	var missing []string
	for _, e := range scaleEngines {
		if os.Getenv(e) == "" {
			missing = append(missing, e)
		}
	}
	if len(missing) > 0 {
		testenv.Missing(t, "%s not set: the scale-out test needs every engine", strings.Join(missing, ", "))
	}
	return os.Getenv(scaleEngines[0]), os.Getenv(scaleEngines[1]), os.Getenv(scaleEngines[2])
}

// runID is unique to one run: it prefixes the simulated ids (the MongoDB
// databases have fixed names, shared with every other run) and names the
// ClickHouse database and the RabbitMQ vhost.
func runID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "sc" + hex.EncodeToString(b[:])
}

// scaleVhost makes a RabbitMQ virtual host of the run, so that its durable
// queues are shared with nobody, and deletes it when t ends; it returns base moved
// to it.
func scaleVhost(t *testing.T, base, name string) string {
	t.Helper()
	u, err := bustest.Vhost(t, base, name)
	if err != nil {
		t.Fatalf("a vhost of its own: %v", err)
	}
	return u
}

// scaleClickHouse returns base moved to a database of the run, dropped when t ends.
func scaleClickHouse(t *testing.T, base, run string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/atrium_e2e_" + run
	raw := u.String()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := clickhousestore.Open(ctx, raw, clickhousestore.Options{})
		if err != nil {
			t.Logf("reopen the ClickHouse database to drop it: %v", err)
			return
		}
		defer s.Close()
		if err := s.DropDatabase(ctx); err != nil {
			t.Logf("drop the ClickHouse database: %v", err)
		}
	})
	return raw
}

// ferretPool is FerretDB's default PostgreSQL pool (pool_max_conns).
const ferretPool = 50

// scaleWriters is how many processes of the test write to the MongoDB-wire
// server at once: sensor, two room replicas and notification.
const scaleWriters = 4

// probeMongo tells what the server is. On FerretDB 1.24 an update command holds
// a PostgreSQL connection per statement until it ends: processes whose bulk
// updates (mongox.BulkChunk statements each) together need more connections
// than the pool has wait for each other forever, and the whole server hangs
// (seen with this test and BulkChunk 32). mongox.BulkChunk is 8 for that reason;
// should it grow past what the pool allows, the test fails at once rather than
// hang a shared server.
func probeMongo(t *testing.T, base string) mongox.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := mongox.Connect(ctx, base, mongox.ConnectOptions{AppName: "atrium-e2e-probe"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Disconnect(context.Background())
	srv, err := mongox.Probe(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if srv.FerretDB && scaleWriters*mongox.BulkChunk >= ferretPool {
		t.Fatalf("FerretDB: %d writing processes × mongox.BulkChunk %d statements ≥ its pool of %d connections would deadlock the server", scaleWriters, mongox.BulkChunk, ferretPool)
	}
	return srv
}

// scaleMongo returns base with an appName of the run, and deletes every document
// of the run's ids (prefix run-) from the services' databases when t ends.
func scaleMongo(t *testing.T, base, run string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("appName", run+"-atrium")
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, err := mongox.Connect(ctx, base, mongox.ConnectOptions{AppName: run + "-cleanup"})
		if err != nil {
			t.Logf("connect to clean up: %v", err)
			return
		}
		defer c.Disconnect(context.Background())
		ours := bson.D{{Key: "$regex", Value: "^" + run + "-"}}
		sdb, rdb, ndb := mongox.SensorDB, mongox.RoomDB, mongox.NotificationDB
		// The batch ids are the agent's; the readings name them.
		var batches bson.A
		cur, err := c.Database(sdb).Collection("readings").Find(ctx, bson.D{{Key: "s", Value: ours}})
		if err == nil {
			seen := map[string]bool{}
			for cur.Next(ctx) {
				var d struct {
					B string `bson:"b"`
				}
				if cur.Decode(&d) == nil && d.B != "" && !seen[d.B] {
					seen[d.B] = true
					batches = append(batches, d.B)
				}
			}
			_ = cur.Close(ctx)
		}
		inBatches := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: batches}}}}
		for _, d := range []struct {
			db, coll string
			filter   bson.D
		}{
			{sdb, "readings", bson.D{{Key: "s", Value: ours}}},
			{sdb, "rollups_1h", bson.D{{Key: "s", Value: ours}}},
			{sdb, "sensors", bson.D{{Key: "_id", Value: ours}}},
			{sdb, "batches", inBatches},
			{sdb, "outbox", inBatches},
			{rdb, "rooms", bson.D{{Key: "_id", Value: ours}}},
			{rdb, "sensors", bson.D{{Key: "_id", Value: ours}}},
			{rdb, "latest", bson.D{{Key: "r", Value: ours}}},
			{rdb, "rollups_1m", bson.D{{Key: "r", Value: ours}}},
			{rdb, "rollups_5m", bson.D{{Key: "r", Value: ours}}},
			{rdb, "rollups_1h", bson.D{{Key: "r", Value: ours}}},
			{rdb, "applied", inBatches},
			{ndb, "alerts", bson.D{{Key: "room", Value: ours}}},
			{ndb, "events", bson.D{{Key: "room", Value: ours}}},
			{ndb, "sensors", bson.D{{Key: "_id", Value: ours}}},
		} {
			if _, err := c.Database(d.db).Collection(d.coll).DeleteMany(ctx, d.filter); err != nil {
				t.Logf("clean up %s.%s: %v", d.db, d.coll, err)
			}
		}
	})
	return u.String()
}

// service is a running `atrium -target=X` of the scale-out test.
type service struct {
	*proc
	target, addr, url, dataDir string
	args                       []string
}

// startService runs one part on addr (127.0.0.1:0: a free port) with args.
func startService(t *testing.T, name, target, addr, dataDir string, args ...string) *service {
	t.Helper()
	all := append([]string{"-target=" + target, "-" + addrFlag(target) + "=" + addr, "-data-dir", dataDir, "-log-format", "json"}, args...)
	p := start(t, name, bins.Atrium, all...)
	a := logString(t, p.awaitLog(t, "listening", map[string]string{"server": target}), "addr")
	return &service{proc: p, target: target, addr: a, url: "http://" + a, dataDir: dataDir, args: args}
}

func addrFlag(target string) string {
	if target == "notification" {
		return "notification-addr"
	}
	return target + "-addr"
}

// crash kills the service (SIGKILL: no drain, no acknowledgement) and waits for it.
func (s *service) crash(t *testing.T) {
	t.Helper()
	if err := s.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", s.name, err)
	}
	_ = s.wait(t, exitTimeout)
}

// restart runs the service again on the address it had.
func (s *service) restart(t *testing.T) *service {
	t.Helper()
	return startService(t, s.name, s.target, s.addr, s.dataDir, s.args...)
}

// addKey runs `atrium keys add` and returns the new key.
func addKey(t *testing.T, file, name, scopes string) string {
	t.Helper()
	cmd := exec.Command(bins.Atrium, "keys", "add", "-name", name, "-scopes", scopes, "-keys", file)
	cmd.Env = flagenv.Strip(os.Environ())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("atrium keys add: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// getAuth GETs url with an API key and decodes a 200 answer into v; it returns
// an error rather than failing, for polling.
func getAuth(rawURL, key string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", rawURL, resp.Status, tail(string(body), 300))
	}
	return json.Unmarshal(body, v)
}

// sensorReadings reads every stored reading of one sensor, page by page.
func sensorReadings(t *testing.T, base, key, id string) []reading.Reading {
	t.Helper()
	var all []reading.Reading
	cursor := ""
	for page := 0; page < 10000; page++ {
		q := url.Values{"limit": {"500"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p struct {
			Readings   []reading.Reading `json:"readings"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := getAuth(base+"/sensors/"+url.PathEscape(id)+"/data?"+q.Encode(), key, &p); err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Readings...)
		if p.NextCursor == "" {
			return all
		}
		cursor = p.NextCursor
	}
	t.Fatalf("GET /sensors/%s/data: cursor never ends", id)
	return nil
}

// roomMetrics is the part of GET /rooms/{id}/metrics the test checks.
type roomMetrics struct {
	RoomID  string `json:"room_id"`
	Metrics map[string]struct {
		Value   float64  `json:"value"`
		Sensors int      `json:"sensors"`
		Mean5m  *float64 `json:"mean_5m"`
		Min5m   *float64 `json:"min_5m"`
		Max5m   *float64 `json:"max_5m"`
		Count5m int64    `json:"count_5m"`
	} `json:"metrics"`
}

// expectedType is what a room's metrics of one type must say, computed from the
// stored readings: all of them are in the 5-minute window (the test is shorter).
type expectedType struct {
	value        float64 // mean of each sensor's latest value
	sensors      int
	mean, lo, hi float64
	count        int64
	latest       map[string]reading.Reading
	sum          float64
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// metricsDiff says how got differs from exp, or "" when they agree.
func metricsDiff(got roomMetrics, exp map[string]*expectedType) string {
	var d []string
	for typ, e := range exp {
		g, ok := got.Metrics[typ]
		switch {
		case !ok:
			d = append(d, typ+": missing")
		case g.Count5m != e.count:
			d = append(d, fmt.Sprintf("%s: count_5m %d, want %d", typ, g.Count5m, e.count))
		case g.Min5m == nil || g.Max5m == nil || g.Mean5m == nil:
			d = append(d, typ+": no 5-minute figures")
		case !near(*g.Min5m, e.lo) || !near(*g.Max5m, e.hi) || !near(*g.Mean5m, e.mean):
			d = append(d, fmt.Sprintf("%s: min/mean/max %v/%v/%v, want %v/%v/%v", typ, *g.Min5m, *g.Mean5m, *g.Max5m, e.lo, e.mean, e.hi))
		case g.Sensors != e.sensors || !near(g.Value, e.value):
			d = append(d, fmt.Sprintf("%s: value %v of %d sensors, want %v of %d", typ, g.Value, g.Sensors, e.value, e.sensors))
		}
	}
	return strings.Join(d, "; ")
}

// TestScaleOut runs the cloud as separate processes on the engines it scales out
// on: sensor, two room replicas sharing the room queue, analytics and
// notification on the MongoDB-wire server, ClickHouse and RabbitMQ, behind the
// gateway, fed by the agent and the simulator. While the simulator runs, the
// analytics service and one room replica are killed and restarted; afterwards
// the stored readings are the simulator's, and the analytics and both room
// replicas agree with them. No process writes an embedded store.
func TestScaleOut(t *testing.T) {
	skipShort(t)
	mongoBase, chBase, amqpBase := scaleURLs(t)
	probeMongo(t, mongoBase) // fails at once where several writers would deadlock the server
	began := time.Now()
	run := runID()
	dir := t.TempDir()
	store := scaleMongo(t, mongoBase, run)
	bus := scaleVhost(t, amqpBase, "atrium-e2e-"+run)
	chURL := scaleClickHouse(t, chBase, run)

	keys := filepath.Join(dir, "keys.json")
	ingestKey := addKey(t, keys, "agent", "ingest")
	readKey := addKey(t, keys, "reader", "read")

	common := []string{"-store", store, "-bus", bus}
	data := func(name string) string { return filepath.Join(dir, name) }
	sensorSvc := startService(t, "sensor", "sensor", "127.0.0.1:0", data("sensor"), append(common, "-retention", "8760h", "-rollup-retention", "17520h")...)
	roomA := startService(t, "room-a", "room", "127.0.0.1:0", data("room-a"), common...)
	roomB := startService(t, "room-b", "room", "127.0.0.1:0", data("room-b"), common...)
	notify := startService(t, "notification", "notification", "127.0.0.1:0", data("notification"), common...)
	analyticsSvc := startService(t, "analytics", "analytics", "127.0.0.1:0", data("analytics"),
		append(common, "-analytics-store", chURL, "-sensor-url", sensorSvc.url)...)
	gw := startService(t, "gateway", "gateway", "127.0.0.1:0", data("gateway"), "-keys", keys,
		"-sensor-url", sensorSvc.url, "-room-url", roomA.url, "-analytics-url", analyticsSvc.url, "-notification-url", notify.url,
		"-rate-limit", "100000", "-rate-burst", "100000")
	agent := startAgent(t, gw.url, filepath.Join(dir, "agent", "spool.db"), "-token", ingestKey)
	st := &stack{agent: agent, dir: dir}
	t.Logf("started in %s", time.Since(began).Round(time.Millisecond))

	const rounds = 120
	simProc := start(t, "atrium-sim", bins.Sim, st.simArgs(append(fleetArgs(rounds, 11), "-interval", "100ms", "-site", run)...)...)

	// Mid-stream: kill the analytics service and one room replica once readings
	// flow, let more arrive without them, then start them again.
	accepted := func() float64 {
		return scrape(t, sensorSvc.url).Get(`atrium_sensor_readings_total{outcome="accepted"}`)
	}
	testwait.WithinState(t, settleTimeout, "the first readings", func() (bool, string) {
		n := accepted()
		return n >= 200, fmt.Sprintf("%v accepted", n)
	})
	analyticsSvc.crash(t)
	roomA.crash(t)
	before := accepted()
	testwait.WithinState(t, settleTimeout, "readings while analytics and a room replica are down", func() (bool, string) {
		n := accepted()
		return n >= before+300, fmt.Sprintf("%v accepted, %v at the crash", n, before)
	})
	analyticsSvc = analyticsSvc.restart(t)
	roomA = roomA.restart(t)
	t.Logf("crashed and restarted analytics and room-a at %v and %v accepted readings", before, accepted())

	if err := simProc.wait(t, simTimeout); err != nil {
		t.Fatalf("atrium-sim: %v", err)
	}
	sum := parseSummary(t, simProc)
	st.settle(t)
	t.Logf("simulator: %d readings, expect %+v, elapsed %s; settled at %s", sum.Readings, sum.Expect, sum.Elapsed, time.Since(began).Round(time.Millisecond))
	if sum.Expect.Stored == 0 || sum.Expect.Stored != sum.Readings {
		t.Fatalf("expect %+v with %d readings: want all stored", sum.Expect, sum.Readings)
	}

	// Our sensors and rooms, and what they stored (read through the gateway).
	type ourSensor struct{ id, room string }
	var sensors []ourSensor
	var rooms []string
	for i := range fleetRooms {
		room := sim.RoomID(run, i)
		rooms = append(rooms, room)
		for j := range fleetPerRoom {
			sensors = append(sensors, ourSensor{sim.SensorID(room, j), room})
		}
	}
	stored := map[string][]reading.Reading{} // by room
	total := 0
	for _, s := range sensors {
		rs := sensorReadings(t, gw.url, readKey, s.id)
		stored[s.room] = append(stored[s.room], rs...)
		total += len(rs)
	}

	t.Run("stored", func(t *testing.T) {
		if total != sum.Expect.Stored {
			t.Errorf("stored %d readings, simulator expects %d", total, sum.Expect.Stored)
		}
		m := scrape(t, sensorSvc.url)
		if got := m.Get(`atrium_sensor_readings_total{outcome="accepted"}`); got != float64(sum.Expect.Stored) {
			t.Errorf("sensor service accepted %v readings, simulator expects %d", got, sum.Expect.Stored)
		}
	})

	t.Run("registry through the gateway", func(t *testing.T) {
		got := map[string]registered{}
		for _, s := range pageSensors(t, gw.url, func(u string, v any) {
			if err := getAuth(u, readKey, v); err != nil {
				t.Fatal(err)
			}
		}) {
			got[s.ID] = s
		}
		for _, s := range sensors {
			if r, ok := got[s.id]; !ok || r.RoomID != s.room {
				t.Errorf("GET /sensors: %s = %+v (listed %v), want in room %s", s.id, r, ok, s.room)
			}
		}
		if err := getAuth(gw.url+"/sensors", "", &struct{}{}); err == nil {
			t.Error("GET /sensors without a key answered 200")
		}
	})

	types := map[string]bool{}
	for _, rs := range stored {
		for _, r := range rs {
			types[r.Type] = true
		}
	}

	t.Run("analytics caught up", func(t *testing.T) {
		// The restarted analytics service took the queued events over: the
		// readings it counts for our rooms are those the sensor service stored.
		testwait.WithinState(t, settleTimeout, "analytics to count every stored reading", func() (bool, string) {
			var n int64
			for _, room := range rooms {
				for typ := range types {
					var tr struct {
						Count int64 `json:"count"`
					}
					q := url.Values{"type": {typ}, "room_id": {room}, "bucket": {"1h"}}
					if err := getAuth(gw.url+"/analytics/trends?"+q.Encode(), readKey, &tr); err != nil {
						return false, err.Error()
					}
					n += tr.Count
				}
			}
			return n == int64(total), fmt.Sprintf("analytics counts %d readings, sensor service stored %d", n, total)
		})
	})

	t.Run("room metrics on both replicas", func(t *testing.T) {
		for _, room := range rooms {
			exp := map[string]*expectedType{}
			for _, r := range stored[room] {
				e := exp[r.Type]
				if e == nil {
					e = &expectedType{lo: r.Value, hi: r.Value, latest: map[string]reading.Reading{}}
					exp[r.Type] = e
				}
				e.count++
				e.sum += r.Value
				e.lo, e.hi = min(e.lo, r.Value), max(e.hi, r.Value)
				if l, ok := e.latest[r.SensorID]; !ok || r.Timestamp.After(l.Timestamp) {
					e.latest[r.SensorID] = r
				}
			}
			for _, e := range exp {
				e.mean = e.sum / float64(e.count)
				for _, l := range e.latest {
					e.value += l.Value
				}
				e.sensors = len(e.latest)
				e.value /= float64(e.sensors)
			}
			for _, replica := range []*service{roomA, roomB} {
				var got roomMetrics
				testwait.WithinState(t, settleTimeout, replica.name+"'s metrics of "+room, func() (bool, string) {
					if err := getAuth(replica.url+"/rooms/"+url.PathEscape(room)+"/metrics", "", &got); err != nil {
						return false, err.Error()
					}
					d := metricsDiff(got, exp)
					return d == "", d
				})
			}
		}
		// And through the gateway, which routes to one replica.
		var got roomMetrics
		if err := getAuth(gw.url+"/rooms/"+url.PathEscape(rooms[0])+"/metrics", readKey, &got); err != nil || got.RoomID != rooms[0] {
			t.Errorf("GET /rooms/%s/metrics through the gateway: %+v, %v", rooms[0], got, err)
		}
	})

	t.Run("notification reachable", func(t *testing.T) {
		var alerts json.RawMessage
		if err := getAuth(gw.url+"/alerts", readKey, &alerts); err != nil {
			t.Error(err)
		}
	})

	t.Run("no embedded stores", func(t *testing.T) {
		for _, s := range []*service{sensorSvc, roomA, roomB, notify, analyticsSvc, gw} {
			_ = filepath.WalkDir(s.dataDir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".db") || strings.Contains(p, ".db-")) {
					t.Errorf("%s wrote %s", s.name, p)
				}
				return nil
			})
		}
	})
	t.Logf("total %s (%s readings)", time.Since(began).Round(time.Millisecond), strconv.Itoa(total))
}
