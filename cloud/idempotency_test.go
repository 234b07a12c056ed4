package cloud_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/gateway"
)

// TestGatewayScopesBatchIDsToTheKey runs the gateway with two real API keys in
// front of the sensor service, in the shape of `-target=all` (the service served
// in-process) and with the service run apart (over HTTP). An ingest key that
// learns another key's next batch ids cannot make them answer with its own
// (empty) batches, neither by posting under them nor by naming the other key in
// the header that carries the caller to the service, nor by getting that header
// dropped as hop-by-hop; and a key's own id reused for other readings is 422.
func TestGatewayScopesBatchIDsToTheKey(t *testing.T) {
	shapes := []struct {
		name  string
		start func(t *testing.T, keysFile string) (gatewayURL, sensorURL string)
	}{
		{"in-process", func(t *testing.T, keysFile string) (string, string) {
			s := startGW(t, "sensor,gateway", t.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0")
			return s.url, "http://" + s.app.Addr("sensor")
		}},
		{"over HTTP", func(t *testing.T, keysFile string) (string, string) {
			sn := start(t, t.TempDir())
			gw := startGW(t, "gateway", t.TempDir(), nil, "-keys="+keysFile, "-rate-limit=0", "-sensor-url="+sn.url)
			return gw.url, sn.url
		}},
	}
	for _, shape := range shapes {
		t.Run(shape.name, func(t *testing.T) {
			keysFile := filepath.Join(t.TempDir(), "keys.json")
			agentKey := addKey(t, keysFile, "agent-hq", gateway.ScopeIngest, gateway.ScopeRead)
			intruder := addKey(t, keysFile, "intruder", gateway.ScopeIngest)
			gw, sn := shape.start(t, keysFile)
			base := time.Now().Add(-time.Hour).Truncate(time.Second)
			n := 0 // readings so far: each batch's readings get times of their own
			batch := func(id, sensorID string, values ...float64) []byte {
				rs := ""
				for i, v := range values {
					if i > 0 {
						rs += ","
					}
					rs += fmt.Sprintf(`{"sensor_id":%q,"room_id":"r1","type":"co2","value":%g,"timestamp":"%s"}`,
						sensorID, v, ts(base.Add(time.Duration(n+i)*time.Second)))
				}
				n += len(values)
				return []byte(fmt.Sprintf(`{"batch_id":%q,"readings":[%s]}`, id, rs))
			}
			post := func(t *testing.T, key string, body []byte, headers ...string) answer {
				t.Helper()
				return do(t, "POST", gw+"/sensors/data", body, append(auth(key), headers...)...)
			}

			// The intruder posts empty batches under the agent's next ids: plainly,
			// naming the agent's key in the header, and asking the gateway to drop
			// that header as hop-by-hop.
			poison := []struct {
				id      string
				headers []string
			}{
				{"spool-1", nil},
				{"spool-2", []string{gateway.KeyNameHeader, "agent-hq"}},
				{"spool-3", []string{gateway.KeyNameHeader, "agent-hq", "Connection", gateway.KeyNameHeader}},
			}
			for _, p := range poison {
				a := post(t, intruder, []byte(`{"batch_id":"`+p.id+`","readings":[]}`), p.headers...)
				if a.Code != 200 || num(a.Body["accepted"]) != 0 {
					t.Fatalf("intruder's empty %s: %d %s", p.id, a.Code, a.Raw)
				}
			}
			// A batch on the service's own port (the direct principal): the
			// hop-by-hop trick must not reach it either.
			if a := do(t, "POST", sn+"/sensors/data", batch("direct-1", "d1", 450)); a.Code != 200 || num(a.Body["accepted"]) != 1 {
				t.Fatalf("direct batch: %d %s", a.Code, a.Raw)
			}
			a := post(t, intruder, []byte(`{"batch_id":"direct-1","readings":[]}`), "Connection", gateway.KeyNameHeader)
			if a.Code != 200 || num(a.Body["accepted"]) != 0 {
				t.Errorf("intruder's direct-1 with the caller header dropped: %d %s, want a batch of its own (0 accepted)", a.Code, a.Raw)
			}

			// The agent's real batches: stored, every one.
			want := []float64{}
			for i, p := range poison {
				v := float64(500 + 10*i)
				a := post(t, agentKey, batch(p.id, "hq-1", v))
				if a.Code != 200 || num(a.Body["accepted"]) != 1 || a.Body["batch_id"] != p.id {
					t.Errorf("agent's %s after the intruder's: %d %s, want 1 accepted", p.id, a.Code, a.Raw)
				}
				want = append(want, v)
			}
			r := do(t, "GET", gw+"/sensors/hq-1/data?order=asc", nil, auth(agentKey)...)
			var got []float64
			if rs, ok := r.Body["readings"].([]any); ok {
				for _, x := range rs {
					got = append(got, x.(map[string]any)["value"].(float64))
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("hq-1 readings %v, want %v (%d %s)", got, want, r.Code, r.Raw)
			}

			// Resent by its key: the first answer. The same id with other
			// readings from that key: 422, nothing stored.
			first := post(t, agentKey, batch("spool-9", "hq-2", 700, 701))
			if first.Code != 200 || num(first.Body["accepted"]) != 2 {
				t.Fatalf("spool-9: %d %s", first.Code, first.Raw)
			}
			n -= 2 // the same readings again
			if again := post(t, agentKey, batch("spool-9", "hq-2", 700, 701)); again.Code != 200 || string(again.Raw) != string(first.Raw) {
				t.Errorf("spool-9 resent: %d %s, want %s", again.Code, again.Raw, first.Raw)
			}
			c := post(t, agentKey, batch("spool-9", "hq-2", 999))
			if c.Code != 422 || c.CType != "application/problem+json" {
				t.Errorf("spool-9 with other readings: %d %s %s, want 422 problem+json", c.Code, c.CType, c.Raw)
			}
			c = post(t, intruder, batch("spool-1", "x-1", 1))
			if c.Code != 422 {
				t.Errorf("intruder's own spool-1 with other readings: %d %s, want 422", c.Code, c.Raw)
			}
			if r := do(t, "GET", gw+"/sensors/hq-2/data", nil, auth(agentKey)...); len(r.Body["readings"].([]any)) != 2 {
				t.Errorf("hq-2 readings: %s, want 700 and 701 only", r.Raw)
			}
		})
	}
}
