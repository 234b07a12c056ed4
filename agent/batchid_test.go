package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/reading"
)

// TestStatusServerIsLoopbackByDefault: the status server has no authentication, so
// it listens on loopback unless -http-addr (or ATRIUM_HTTP_ADDR) says otherwise.
func TestStatusServerIsLoopbackByDefault(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "default", want: "127.0.0.1:9100"},
		{name: "exposed by flag", args: []string{"-http-addr", ":9100"}, want: ":9100"},
		{name: "exposed by environment", env: map[string]string{"ATRIUM_HTTP_ADDR": "0.0.0.0:9100"}, want: "0.0.0.0:9100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := agent.ParseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.HTTPAddr != tc.want {
				t.Errorf("HTTPAddr = %q, want %q", cfg.HTTPAddr, tc.want)
			}
		})
	}
	var help bytes.Buffer
	_, _ = agent.ParseFlags([]string{"-h"}, noEnv, &help)
	if !strings.Contains(help.String(), `(default "127.0.0.1:9100")`) || !strings.Contains(help.String(), "-mismatch-retries") {
		t.Errorf("-h does not document the loopback default and -mismatch-retries:\n%s", help.String())
	}
	if _, err := agent.ParseFlags([]string{"-mismatch-retries=-1"}, noEnv, io.Discard); err == nil {
		t.Error("-mismatch-retries=-1 accepted")
	}
}

// startAgentLogged is startAgent with the agent's JSON log in logs.
func startAgentLogged(t *testing.T, logs io.Writer, cloudURL string, extra ...string) *agentRun {
	t.Helper()
	args := append([]string{
		"-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-cloud-url=" + cloudURL, "-spool=" + filepath.Join(t.TempDir(), "spool.db"),
		"-site=" + testSite, "-linger=50ms", "-shutdown-timeout=2s",
	}, extra...)
	return runAgent(t, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil, args...)
}

// TestHostileCloudAnswersAreNotTakenAsStored: a cloud that answers the agent's
// batches with the first answer of someone else's empty batch under the same id (what
// a global idempotency namespace did) makes the agent count, log, retry and finally
// dead-letter the readings, never delete them as stored. The status server never
// shows a batch id, while the batch is being retried or after.
func TestHostileCloudAnswersAreNotTakenAsStored(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		ids = map[string]int{} // Idempotency-Key → attempts
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/sensors/data" {
			w.WriteHeader(http.StatusOK)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Idempotency-Key")
		mu.Lock()
		ids[id]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"batch_id":%q,"accepted":0,"duplicates":0,"rejected":[]}`, id)
	}))
	t.Cleanup(srv.Close)

	logs := &logging.Buffer{}
	ag := startAgentLogged(t, logs, srv.URL, "-mismatch-retries=2")
	c := mustDial(t, ag.mqtt, "victim")
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	const msgs, perMsg = 3, 2
	for i := range msgs {
		c.MustSend(t, "atrium/r-hostile/victim-1", 1, fmt.Appendf(nil, `{"temperature":%d,"humidity":%d,"ts":%d}`,
			20+i, 40+i, base.Add(time.Duration(i)*time.Second).UnixMilli()))
	}
	sent := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for id := range ids {
			out = append(out, id)
		}
		return out
	}
	poll(t, "the first answer", func() bool { return len(sent()) > 0 })
	// While the batch is retried, and after: no page of the status server names it.
	pages := []string{"/status", "/devices", "/metrics", "/healthz", "/readyz"}
	check := func(when string) {
		for _, p := range pages {
			body := httpxtest.Get(t, ag.status+p).String()
			for _, id := range sent() {
				if strings.Contains(body, id) {
					t.Errorf("%s: GET %s shows batch id %s", when, p, id)
				}
			}
		}
	}
	check("while retrying")
	poll(t, "the readings in the dead letters", func() bool {
		m := ag.metrics(t)
		return m.Sum("atrium_agent_dead_letters") == msgs*perMsg && m.Sum("atrium_agent_spool_readings") == 0
	})
	check("after")
	m := ag.metrics(t)
	if got := m.Sum("atrium_agent_forward_answer_mismatch_total", "reason", "counts"); got != 3*float64(len(sent())) {
		t.Errorf("mismatches counted %v, want 3 per batch (%d batches)", got, len(sent()))
	}
	if got := m.Sum("atrium_agent_forwarded_total"); got != 0 {
		t.Errorf("forwarded %v readings, want 0: none was stored", got)
	}
	mu.Lock()
	for id, n := range ids {
		if raw, err := hex.DecodeString(id); err != nil || len(raw) != 16 {
			t.Errorf("batch id %q: want 128 bits in hex", id)
		}
		if n != 3 {
			t.Errorf("batch %s sent %d times, want 3 (-mismatch-retries=2)", id, n)
		}
	}
	mu.Unlock()
	logged := logs.Records("cloud answer does not match the batch")
	if len(logged) != 3*len(sent()) {
		t.Errorf("%d mismatch log lines, want %d", len(logged), 3*len(sent()))
	}
	for _, l := range logged {
		if l["batch_id"] == nil || l["readings"] == nil || l["accepted"] != 0.0 || l["reason"] != "counts" {
			t.Errorf("mismatch log line %v: want batch_id, readings, accepted 0, reason counts", l)
		}
	}
	c.Close()
	if err := ag.stop(); err != nil {
		t.Fatal(err)
	}
	dls := listDeadLetters(t, ag.cfg.Spool)
	if len(dls) != msgs*perMsg {
		t.Fatalf("%d dead letters, want %d", len(dls), msgs*perMsg)
	}
	for _, d := range dls {
		if !strings.Contains(d.Reason, "cloud answer did not match the batch 3 times") || d.Batch == "" {
			t.Errorf("dead letter %+v: want the batch and the reason", d)
		}
	}
}

// TestAnotherKeyCannotClaimTheAgentsBatchIDs runs the real sensor service behind the
// real gateway. Another ingest key learns (here: is told) the agent's open batch ids
// and posts empty batches under them before the agent sends them. The agent's
// readings must all be stored: the other key's ids are its own.
func TestAnotherKeyCannotClaimTheAgentsBatchIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	agentKey, otherKey := "agent-key-"+strings.Repeat("a", 32), "other-key-"+strings.Repeat("b", 32)
	keys := filepath.Join(dir, "keys.json")
	var entries []map[string]any
	for name, k := range map[string]string{"agent": agentKey, "other": otherKey} {
		sum := sha256.Sum256([]byte(k))
		entries = append(entries, map[string]any{"name": name, "sha256": hex.EncodeToString(sum[:]), "scopes": []string{"ingest"}})
	}
	kb, _ := json.Marshal(entries)
	if err := os.WriteFile(keys, kb, 0o600); err != nil {
		t.Fatal(err)
	}
	app := cloudtest.Start(t, "-target=sensor,gateway", "-data-dir="+filepath.Join(dir, "cloud"), "-keys="+keys,
		"-gateway-addr=127.0.0.1:0", "-sensor-addr=127.0.0.1:0", "-log-level=error")
	gw, sensorURL := "http://"+app.Addr("gateway"), "http://"+app.Addr("sensor")
	cl := &cloudSvc{t: t, url: sensorURL}

	// The agent's spool, with three batches formed (as a crash or an outage leaves them).
	spoolPath := filepath.Join(dir, "agent", "spool.db")
	if err := os.MkdirAll(filepath.Dir(spoolPath), 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := spool.Open(spoolPath, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const total = 12
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var rs [][]byte
	for i := range total {
		rd := reading.Reading{SensorID: "victim-2", RoomID: "r-victim", Site: testSite, Type: "temperature", Unit: "Cel",
			Value: 20 + float64(i)/10, Timestamp: base.Add(time.Duration(i) * time.Second)}
		rs = append(rs, rd.AppendJSON(nil))
	}
	if err := s.Append(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	batches, err := s.FormBatches(3, 4, 0)
	if err != nil || len(batches) != 3 {
		t.Fatalf("FormBatches = %d, %v", len(batches), err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The other key claims every id first, with an empty batch.
	for _, b := range batches {
		body := fmt.Sprintf(`{"batch_id":%q,"readings":[]}`, b.ID)
		a := httpxtest.DoJSON(t, http.MethodPost, gw+"/sensors/data", []byte(body), "Authorization", "Bearer "+otherKey, "Idempotency-Key", b.ID)
		t.Logf("other key's empty batch under the agent's id: %d %s", a.Code, bytes.TrimSpace(a.Raw))
	}

	ag := startAgentArgs(t, "-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-cloud-url="+gw, "-token="+agentKey, "-spool="+spoolPath, "-site="+testSite,
		"-linger=50ms", "-shutdown-timeout=2s", "-mismatch-retries=1")
	poll(t, "the agent's spool to empty", func() bool {
		m := ag.metrics(t)
		return m.Sum("atrium_agent_spool_readings") == 0
	})
	m := ag.metrics(t)
	stored, dead := cl.count(t, "victim-2"), int(m.Sum("atrium_agent_dead_letters"))
	if stored+dead != total {
		t.Fatalf("%d readings stored and %d dead-lettered of %d: readings lost", stored, dead, total)
	}
	if stored != total {
		t.Errorf("%d of %d readings stored (%d dead-lettered, not lost): another key's batch under the same id answered for the agent's",
			stored, total, dead)
	}
	if got := m.Sum("atrium_agent_forward_answer_mismatch_total"); got != 0 {
		t.Errorf("%v answers did not match their batch, want 0", got)
	}
	if got := m.Sum("atrium_agent_forwarded_total"); got != total {
		t.Errorf("forwarded %v, want %d", got, total)
	}
}
