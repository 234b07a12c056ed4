package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/tlsx/tlsxtest"
)

// TestSimulatedFleetOverTLS runs the fleet of TestSimulatedFleet with TLS on every
// hop, each part its own process: the simulator publishes over MQTT/TLS to the
// agent's TLS listener; the agent forwards over HTTPS to the gateway and
// authenticates with its client certificate (no API key); the gateway reaches the
// sensor service, which serves HTTPS in a process of its own, through
// -upstream-ca. The sensor service holds exactly the readings the simulator
// expects stored.
func TestSimulatedFleetOverTLS(t *testing.T) {
	skipShort(t)
	const rounds = 20
	ca := tlsxtest.NewCA(t, "Atrium e2e CA")
	server := ca.Server(t, "e2e-server") // 127.0.0.1 and localhost
	agentCert := ca.Issue(t, tlsxtest.Leaf{CN: "agent-e2e"})
	// atrium-sim trusts the system's CAs; Go reads them from SSL_CERT_FILE.
	t.Setenv("SSL_CERT_FILE", ca.File)
	dir := t.TempDir()

	sensor := start(t, "atrium", bins.Atrium, "-target=sensor", "-sensor-addr", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "sensor"),
		"-tls-cert", server.CertFile, "-tls-key", server.KeyFile, "-log-format", "json")
	sensorURL := "https://" + logString(t, sensor.awaitLog(t, "listening", map[string]string{"server": "sensor"}), "addr")

	keys := filepath.Join(dir, "keys.json")
	if err := gateway.AddSubject(keys, "agent-e2e", "cn:agent-e2e", []gateway.Scope{gateway.ScopeIngest}); err != nil {
		t.Fatal(err)
	}
	gw := start(t, "atrium", bins.Atrium, "-target=gateway", "-gateway-addr", "127.0.0.1:0", "-data-dir", filepath.Join(dir, "gateway"),
		"-keys", keys, "-rate-limit", "0", "-tls-cert", server.CertFile, "-tls-key", server.KeyFile, "-client-ca", ca.File,
		"-sensor-url", sensorURL, "-upstream-ca", ca.File, "-log-format", "json")
	gwURL := "https://" + logString(t, gw.awaitLog(t, "listening", map[string]string{"server": "gateway"}), "addr")

	ag := startAgent(t, gwURL, filepath.Join(dir, "agent", "spool.db"),
		"-cloud-ca", ca.File, "-cloud-cert", agentCert.CertFile, "-cloud-key", agentCert.KeyFile,
		"-tls-addr", "127.0.0.1:0", "-tls-cert", server.CertFile, "-tls-key", server.KeyFile)
	tlsAddr := logString(t, ag.awaitLog(t, "mqtt broker started", nil), "tls_addr")

	p := start(t, "atrium-sim", bins.Sim, append([]string{"-broker", "ssl://" + tlsAddr, "-summary", "json", "-log-format", "json"},
		fleetArgs(rounds, 11)...)...)
	if err := p.wait(t, simTimeout); err != nil {
		t.Fatalf("atrium-sim: %v\n%s", err, tail(p.Log.String(), 4000))
	}
	sum := parseSummary(t, p)
	if m := sum.Messages; m.Failed != 0 || m.Published != m.Produced || sum.Expect.Stored == 0 {
		t.Fatalf("simulator over TLS: messages %+v, expect %+v", m, sum.Expect)
	}
	st := &stack{agent: ag}
	st.settle(t)

	// Read back from the sensor service over HTTPS.
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	old := httpClient.Transport
	httpClient.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(func() { httpClient.Transport = old })
	stored := readAll(t, sensorURL, 500)
	if len(stored) != sum.Expect.Stored {
		t.Fatalf("stored %d readings, the simulator expects %d", len(stored), sum.Expect.Stored)
	}
	if len(listSensors(t, sensorURL)) != fleetRooms*fleetPerRoom {
		t.Fatalf("sensors registered: want %d", fleetRooms*fleetPerRoom)
	}
	t.Logf("%d readings from %d devices through TLS on every hop", len(stored), fleetRooms*fleetPerRoom)
}
