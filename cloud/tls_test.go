package cloud_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/testwait"

	"github.com/atrium-iot/atrium/agent/agenttest"

	"github.com/coder/websocket"
	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/broker/credentials"
	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/tlsx/tlsxtest"
)

// curlPath is curl, which these tests drive as a real TLS client.
func curlPath(t *testing.T) string {
	t.Helper()
	return testenv.Tool(t, "curl")
}

type curlResult struct {
	code    int    // HTTP status, 0 when there was none
	version string // HTTP version, "2" for HTTP/2
	body    string
	stderr  string
	err     error // curl's exit
}

// curl runs curl with args and reads the status from -w.
func curl(t *testing.T, args ...string) curlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curlPath(t), append([]string{"-sS", "-o", "-", "-w", "\n%{http_code} %{http_version}"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	body, code, _ := strings.Cut(reverse(out.String()), "\n")
	r := curlResult{body: reverse(code), stderr: errb.String(), err: err}
	fmt.Sscan(reverse(body), &r.code, &r.version)
	return r
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// tlsGateway is a gateway serving HTTPS, with its CA, keys file and keys.
type tlsGateway struct {
	*gwSystem
	ca      *tlsxtest.CA
	base    string // https://127.0.0.1:port
	reader  string // an API key with the read scope
	admin   string // an API key with the admin scope
	keys    string
	logs    *logging.Buffer
	srvCert tlsxtest.Pair
}

// startTLSGateway runs `atrium -target=sensor,notification,gateway` with
// -tls-cert, -client-ca, and a keys file mapping two agent certificates
// (by CN and by URI SAN) to principals with the ingest and read scopes.
func startTLSGateway(t *testing.T, extra ...string) *tlsGateway {
	t.Helper()
	ca := tlsxtest.NewCA(t, "Atrium Test CA")
	g := &tlsGateway{ca: ca, logs: &logging.Buffer{}, srvCert: ca.Server(t, "gateway-1")}
	g.keys = filepath.Join(t.TempDir(), "keys.json")
	g.reader = addKey(t, g.keys, "dashboard", gateway.ScopeRead)
	g.admin = addKey(t, g.keys, "ops", gateway.ScopeAdmin)
	for name, subject := range map[string]string{"agent-hq": "cn:agent-hq", "agent-b2": "spiffe://atrium/agent/b2"} {
		if err := gateway.AddSubject(g.keys, name, subject, []gateway.Scope{gateway.ScopeIngest, gateway.ScopeRead}); err != nil {
			t.Fatal(err)
		}
	}
	args := append([]string{"-keys=" + g.keys, "-rate-limit=0", "-tls-cert=" + g.srvCert.CertFile, "-tls-key=" + g.srvCert.KeyFile,
		"-client-ca=" + ca.File}, extra...)
	g.gwSystem = startGW(t, "sensor,notification,gateway", t.TempDir(), g.logs, args...)
	g.base = "https://" + g.app.Addr("gateway")
	return g
}

// count is how many readings of sensor the gateway serves.
func (g *tlsGateway) count(t *testing.T, sensor string) int {
	t.Helper()
	r := curl(t, "--cacert", g.ca.File, "-H", "Authorization: Bearer "+g.reader, g.base+"/sensors/"+sensor+"/data")
	if r.code == 404 && strings.Contains(r.body, "not registered") {
		return 0 // the sensor service never heard of it
	}
	if r.code != 200 {
		t.Fatalf("read %s: %d %s %s %v", sensor, r.code, r.body, r.stderr, r.err)
	}
	var v struct{ Readings []any }
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatal(err)
	}
	return len(v.Readings)
}

func tlsBatch(id, sensor string, value float64) string {
	return fmt.Sprintf(`{"batch_id":%q,"readings":[{"sensor_id":%q,"room_id":"r1","type":"co2","value":%g,"timestamp":%q}]}`,
		id, sensor, value, time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano))
}

func TestGatewayOverHTTPS(t *testing.T) {
	g := startTLSGateway(t)
	ca := g.ca
	hq := ca.Issue(t, tlsxtest.Leaf{CN: "agent-hq"})
	b2 := ca.Issue(t, tlsxtest.Leaf{CN: "whatever", URIs: []string{"spiffe://atrium/agent/b2"}})
	stranger := ca.Issue(t, tlsxtest.Leaf{CN: "stranger"})
	expired := ca.Issue(t, tlsxtest.Leaf{CN: "agent-hq", NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreign := tlsxtest.NewCA(t, "Foreign CA").Issue(t, tlsxtest.Leaf{CN: "agent-hq"})
	post := func(p *tlsxtest.Pair, body string, extra ...string) curlResult {
		args := []string{"--cacert", ca.File, "-H", "Content-Type: application/json", "--data", body}
		if p != nil {
			args = append(args, "--cert", p.CertFile, "--key", p.KeyFile)
		}
		return curl(t, append(append(args, extra...), g.base+"/sensors/data")...)
	}

	t.Run("HTTP/2 with the gateway's certificate", func(t *testing.T) {
		r := curl(t, "--cacert", ca.File, g.base+"/healthz")
		if r.err != nil || r.code != 200 || r.version != "2" {
			t.Fatalf("healthz: %d %q %s %v", r.code, r.body, r.stderr, r.err)
		}
		if r := curl(t, "--cacert", ca.File, "--http1.1", g.base+"/"); r.code != 200 || !strings.Contains(r.body, "<html") {
			t.Fatalf("dashboard over HTTP/1.1: %d %.200s", r.code, r.body)
		}
		if r := curl(t, "--cacert", ca.File, "-H", "Authorization: Bearer "+g.reader, g.base+"/sensors"); r.code != 200 {
			t.Fatalf("API key over HTTPS: %d %s", r.code, r.body)
		}
	})
	t.Run("TLS 1.1 and plain HTTP are refused", func(t *testing.T) {
		if r := curl(t, "--cacert", ca.File, "--tlsv1.0", "--tls-max", "1.1", g.base+"/healthz"); r.err == nil || r.code != 0 {
			t.Fatalf("TLS 1.1 served: %d %v", r.code, r.err)
		}
		if r := curl(t, "http://"+g.app.Addr("gateway")+"/healthz"); r.code != 400 {
			t.Fatalf("plain HTTP: %d %s", r.code, r.body)
		}
		if r := curl(t, g.base+"/healthz"); r.err == nil || !strings.Contains(r.stderr, "certificate") {
			t.Fatalf("curl without the CA: %v %s", r.err, r.stderr)
		}
	})
	t.Run("agents by certificate", func(t *testing.T) {
		if r := post(&hq, tlsBatch("b-1", "tls-s1", 500)); r.code != 200 || !strings.Contains(r.body, `"accepted":1`) {
			t.Fatalf("CN principal: %d %s %s", r.code, r.body, r.stderr)
		}
		if r := post(&b2, tlsBatch("b-2", "tls-s2", 501)); r.code != 200 || !strings.Contains(r.body, `"accepted":1`) {
			t.Fatalf("URI principal: %d %s %s", r.code, r.body, r.stderr)
		}
		// The principal's name reaches the sensor service as a key's does: batch
		// ids are scoped to it. The same id from the same certificate with
		// another body is a conflict; from another principal it is a batch of its own.
		if r := post(&hq, tlsBatch("b-1", "tls-s1", 502)); r.code != 422 {
			t.Fatalf("same principal, same id, other body: %d %s", r.code, r.body)
		}
		if r := post(&b2, tlsBatch("b-1", "tls-s3", 503)); r.code != 200 || !strings.Contains(r.body, `"accepted":1`) {
			t.Fatalf("other principal, same id: %d %s", r.code, r.body)
		}
		if !strings.Contains(g.logs.String(), `"key":"agent-hq"`) || !strings.Contains(g.logs.String(), `"key":"agent-b2"`) {
			t.Fatal("access log does not name the principals")
		}
	})
	t.Run("refused certificates store nothing", func(t *testing.T) {
		r := post(&stranger, tlsBatch("x-1", "tls-refused", 1))
		if r.code != 403 || !strings.Contains(r.body, "cn:stranger") || !strings.Contains(r.body, "not mapped") {
			t.Fatalf("unmapped subject: %d %s", r.code, r.body)
		}
		for name, p := range map[string]*tlsxtest.Pair{"expired": &expired, "foreign CA": &foreign} {
			r := post(p, tlsBatch("x-2", "tls-refused", 1))
			if r.err == nil || r.code != 0 {
				t.Fatalf("%s: handshake passed: %d %s", name, r.code, r.body)
			}
		}
		// With TLS 1.3 the client learns of the refusal as a reset or an alert;
		// the gateway's log says why.
		for _, why := range []string{"certificate has expired", "certificate signed by unknown authority"} {
			if !strings.Contains(g.logs.String(), why) {
				t.Fatalf("the gateway's log does not say %q:\n%s", why, g.logs)
			}
		}
		if r := post(nil, tlsBatch("x-3", "tls-refused", 1)); r.code != 401 {
			t.Fatalf("no certificate, no key: %d %s", r.code, r.body)
		}
		if n := g.count(t, "tls-refused"); n != 0 {
			t.Fatalf("refused requests stored %d readings", n)
		}
	})
	t.Run("alerts over wss", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		c, resp, err := websocket.Dial(ctx, "wss://"+g.app.Addr("gateway")+gateway.WebSocketPath+"?access_token="+g.reader,
			&websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			t.Fatalf("wss: %v %v", err, resp)
		}
		defer c.CloseNow()
		r := curl(t, "--cacert", ca.File, "-H", "Authorization: Bearer "+g.admin, "-H", "Content-Type: application/json",
			"--data", `{"severity":"info","title":"over TLS","message":"hello","channels":["websocket"]}`, g.base+"/notifications/send")
		if r.code != 202 {
			t.Fatalf("send: %d %s", r.code, r.body)
		}
		for {
			_, msg, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if strings.Contains(string(msg), "over TLS") {
				break
			}
		}
	})
}

// TestGatewayCertificateRotation replaces the gateway's certificate files while
// clients keep opening new connections: they see the new certificate, and no
// request fails; then SIGHUP makes it reload at once.
func TestGatewayCertificateRotation(t *testing.T) {
	g := startTLSGateway(t, "-tls-reload-interval=100ms")
	pool := x509.NewCertPool()
	pool.AddCert(g.ca.Cert)

	var seen sync.Map // CN → requests that saw it
	var failures, done atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				resp, err := client.Get(g.base + "/healthz")
				if err != nil {
					failures.Add(1)
					t.Errorf("request failed during rotation: %v", err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					t.Errorf("status %d during rotation", resp.StatusCode)
				}
				cn := resp.TLS.PeerCertificates[0].Subject.CommonName
				n, _ := seen.LoadOrStore(cn, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				done.Add(1)
			}
		})
	}
	waitSeen := func(cn string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			if n, ok := seen.Load(cn); ok && n.(*atomic.Int64).Load() > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no connection saw %s", cn)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitSeen("gateway-1")
	// Replace both files, one after the other as a deploy tool would: in between
	// the pair does not match, and the gateway keeps the old one.
	next := g.ca.Server(t, "gateway-2")
	replace := func(p tlsxtest.Pair) {
		for _, f := range []struct{ from, to string }{{p.CertFile, g.srvCert.CertFile}, {p.KeyFile, g.srvCert.KeyFile}} {
			b, err := os.ReadFile(f.from)
			if err != nil {
				t.Fatal(err)
			}
			tmp := f.to + ".tmp"
			if err := os.WriteFile(tmp, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, f.to); err != nil {
				t.Fatal(err)
			}
			time.Sleep(150 * time.Millisecond) // let a reload see the half-replaced pair
		}
	}
	replace(next)
	waitSeen("gateway-2")
	if r := curl(t, "-v", "--cacert", g.ca.File, g.base+"/healthz"); r.code != 200 || !strings.Contains(r.stderr, "CN=gateway-2") {
		t.Fatalf("curl after rotation: %d %s", r.code, r.stderr)
	}
	cancel()
	wg.Wait()
	if failures.Load() > 0 || done.Load() < 10 {
		t.Fatalf("%d failed of %d", failures.Load(), done.Load())
	}
	if !strings.Contains(g.logs.String(), "certificate not reloaded, keeping the previous one") {
		t.Fatal("the half-replaced pair was not reported")
	}
}

// TestGatewayReloadsOnSIGHUP: with polling far off, SIGHUP reloads the certificate.
func TestGatewayReloadsOnSIGHUP(t *testing.T) {
	// Held by the test too, so a SIGHUP sent before the gateway listens for it
	// does not end the test process.
	hup := make(chan os.Signal, 16)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g := startTLSGateway(t, "-tls-reload-interval=1h")
	next := g.ca.Server(t, "gateway-2")
	for _, f := range [][2]string{{next.CertFile, g.srvCert.CertFile}, {next.KeyFile, g.srvCert.KeyFile}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if r := curl(t, "-v", "--cacert", g.ca.File, g.base+"/healthz"); strings.Contains(r.stderr, "CN=gateway-2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tlsAgent is a running agent with plain MQTT and its status server.
type tlsAgent struct {
	ag     *agent.Agent
	status string
}

func startTLSAgent(t testing.TB, args ...string) *tlsAgent {
	t.Helper()
	ag := agenttest.Run(t, nil, nil, append([]string{"-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-spool=" + filepath.Join(t.TempDir(), "spool.db"), "-site=hq", "-linger=20ms", "-shutdown-timeout=1s"}, args...)...).Agent
	return &tlsAgent{ag: ag, status: "http://" + ag.HTTPAddr()}
}

// publish sends n readings of sensor over MQTT 5 with QoS 1: each PUBACK means
// the reading is in the agent's spool.
func (a *tlsAgent) publish(t testing.TB, sensor string, n int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", a.ag.MQTTAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: sensor, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	base := time.Now().Add(-time.Minute).UnixMilli()
	const perMessage = 100 // SenML records per message
	for i := 0; i < n; {
		var payload string
		if n-i < perMessage {
			payload = fmt.Sprintf(`{"co2":%d,"ts":%d}`, 500+i%1000, base+int64(i))
			i++
		} else {
			payload = fmt.Sprintf(`[{"bt":%.3f,"n":"co2","v":%d,"t":0}`, float64(base+int64(i))/1000, 500)
			for j := 1; j < perMessage; j++ {
				payload += fmt.Sprintf(`,{"n":"co2","v":%d,"t":%.3f}`, 500+j, float64(j)/1000)
			}
			payload += "]"
			i += perMessage
		}
		if _, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: "atrium/room-tls/" + sensor, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
}

// state is the agent's /status: readings still spooled and the forwarder's last error.
func (a *tlsAgent) state(t testing.TB) (spooled int, lastError string) {
	t.Helper()
	v := httpxtest.GetOK[struct {
		Spool     struct{ Readings int }
		Forwarder struct{ LastError string }
	}](t, a.status+"/status")
	return v.Spool.Readings, v.Forwarder.LastError
}

// TestAgentForwardsOverMutualTLS: the agent trusts the gateway's CA (-cloud-ca)
// and authenticates with its certificate (-cloud-cert), no API key; an agent that
// trusts another CA, or whose certificate names no principal, keeps its readings
// in the spool and says why in /readyz and /status.
func TestAgentForwardsOverMutualTLS(t *testing.T) {
	g := startTLSGateway(t)
	hq := g.ca.Issue(t, tlsxtest.Leaf{CN: "agent-hq"})

	t.Run("delivered by certificate", func(t *testing.T) {
		a := startTLSAgent(t, "-cloud-url="+g.base, "-cloud-ca="+g.ca.File, "-cloud-cert="+hq.CertFile, "-cloud-key="+hq.KeyFile)
		a.publish(t, "mtls-1", 5)
		testwait.Within(t, 20*time.Second, "readings through the gateway", func() bool { return g.count(t, "mtls-1") == 5 })
		// The cloud stores a batch before the agent reads its answer and acks the spool.
		testwait.Within(t, 10*time.Second, "the spool emptied", func() bool { n, _ := a.state(t); return n == 0 })
		if a := httpxtest.Get(t, a.status+"/readyz"); a.Code != 200 {
			t.Fatalf("readyz: %d %s", a.Code, a.Raw)
		}
	})
	t.Run("a gateway signed by another CA", func(t *testing.T) {
		other := tlsxtest.NewCA(t, "Other CA")
		a := startTLSAgent(t, "-cloud-url="+g.base, "-cloud-ca="+other.File, "-cloud-cert="+hq.CertFile, "-cloud-key="+hq.KeyFile)
		a.publish(t, "mtls-2", 3)
		var ready answer
		testwait.Within(t, 10*time.Second, "readyz names the CA", func() bool {
			ready = httpxtest.Get(t, a.status+"/readyz")
			return ready.Code == 503 && strings.Contains(string(ready.Raw), "not signed by the CAs of -cloud-ca")
		})
		for _, want := range []string{`\"gateway-1\"`, "Atrium Test CA", other.File, "Other CA"} {
			if !strings.Contains(string(ready.Raw), want) {
				t.Fatalf("readyz lacks %q: %s", want, ready.Raw)
			}
		}
		testwait.Within(t, 10*time.Second, "the forwarder's error", func() bool {
			_, e := a.state(t)
			return strings.Contains(e, "not signed by")
		})
		if n, _ := a.state(t); n != 3 {
			t.Fatalf("spool holds %d readings, want 3", n)
		}
		if n := g.count(t, "mtls-2"); n != 0 {
			t.Fatalf("%d stored", n)
		}
	})
	t.Run("a certificate without a principal", func(t *testing.T) {
		stranger := g.ca.Issue(t, tlsxtest.Leaf{CN: "stranger"})
		a := startTLSAgent(t, "-cloud-url="+g.base, "-cloud-ca="+g.ca.File, "-cloud-cert="+stranger.CertFile, "-cloud-key="+stranger.KeyFile)
		a.publish(t, "mtls-3", 2)
		testwait.Within(t, 10*time.Second, "the forwarder's error", func() bool {
			_, e := a.state(t)
			return strings.Contains(e, "cloud answered 403") && strings.Contains(e, "cn:stranger")
		})
		if n, _ := a.state(t); n != 2 {
			t.Fatalf("spool holds %d readings, want 2", n)
		}
		if n := g.count(t, "mtls-3"); n != 0 {
			t.Fatalf("%d stored", n)
		}
	})
	t.Run("no certificate where one is needed", func(t *testing.T) {
		a := startTLSAgent(t, "-cloud-url="+g.base, "-cloud-ca="+g.ca.File)
		a.publish(t, "mtls-4", 1)
		testwait.Within(t, 10*time.Second, "the forwarder's error", func() bool {
			_, e := a.state(t)
			return strings.Contains(e, "cloud answered 401")
		})
		if n := g.count(t, "mtls-4"); n != 0 {
			t.Fatalf("%d stored", n)
		}
	})
	t.Run("an expired certificate does not start", func(t *testing.T) {
		old := g.ca.Issue(t, tlsxtest.Leaf{CN: "agent-hq", NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
		cfg, err := agent.ParseFlags([]string{"-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
			"-spool=" + filepath.Join(t.TempDir(), "spool.db"), "-cloud-url=" + g.base, "-cloud-cert=" + old.CertFile, "-cloud-key=" + old.KeyFile},
			func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := agent.New(context.Background(), cfg, logging.Discard()); err == nil || !strings.Contains(err.Error(), `"agent-hq" expired at`) {
			t.Fatalf("agent with an expired certificate: %v", err)
		}
	})
}

// TestUpstreamsOverHTTPS runs the sensor service in a process of its own serving
// HTTPS, and a gateway that reaches it at an https:// -sensor-url trusting
// -upstream-ca; without that CA the gateway cannot reach it.
func TestUpstreamsOverHTTPS(t *testing.T) {
	ca := tlsxtest.NewCA(t, "Upstream CA")
	sc := ca.Server(t, "sensor")
	sn := startGW(t, "sensor", t.TempDir(), nil, "-tls-cert="+sc.CertFile, "-tls-key="+sc.KeyFile)
	sensorURL := "https://" + sn.app.Addr("sensor")
	if r := curl(t, "--cacert", ca.File, sensorURL+"/healthz"); r.code != 200 {
		t.Fatalf("sensor service over HTTPS: %d %s", r.code, r.stderr)
	}
	keys := filepath.Join(t.TempDir(), "keys.json")
	key := addKey(t, keys, "agent", gateway.ScopeIngest, gateway.ScopeRead)
	gw := startGW(t, "gateway", t.TempDir(), nil, "-keys="+keys, "-sensor-url="+sensorURL, "-upstream-ca="+ca.File)
	r := curl(t, "-H", "Authorization: Bearer "+key, "-H", "Content-Type: application/json", "--data", tlsBatch("u-1", "up-1", 600), gw.url+"/sensors/data")
	if r.code != 200 || !strings.Contains(r.body, `"accepted":1`) {
		t.Fatalf("ingest through an https upstream: %d %s", r.code, r.body)
	}
	if r := curl(t, "-H", "Authorization: Bearer "+key, gw.url+"/sensors/up-1/data"); r.code != 200 || !strings.Contains(r.body, `"up-1"`) {
		t.Fatalf("read through an https upstream: %d %s", r.code, r.body)
	}
	blind := startGW(t, "gateway", t.TempDir(), nil, "-keys="+keys, "-sensor-url="+sensorURL)
	if r := curl(t, "-H", "Authorization: Bearer "+key, blind.url+"/sensors/up-1/data"); r.code != 502 {
		t.Fatalf("gateway without -upstream-ca: %d %s", r.code, r.body)
	}
}

// mosquittoPub runs mosquitto_pub against addr with args, QoS 1, MQTT 3.1.1.
func mosquittoPub(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	p := testenv.Tool(t, "mosquitto_pub")
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, append([]string{"-h", host, "-p", port, "-V", "mqttv311", "-q", "1"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestTLSOnEveryHop: devices publish with mosquitto_pub over TLS to the agent,
// by certificate or by password on the same listener (-tls-client-auth
// optional); the agent forwards over HTTPS with its own certificate to the
// gateway, which serves the sensor service. Certificates of another CA, expired
// ones, and publishes outside the certificate's topics store nothing; with
// -tls-client-auth require a device without a certificate fails the handshake.
func TestTLSOnEveryHop(t *testing.T) {
	g := startTLSGateway(t)
	ca := g.ca
	hq := ca.Issue(t, tlsxtest.Leaf{CN: "agent-hq"})
	agentSrv := ca.Server(t, "agent-mqtt")
	creds := filepath.Join(t.TempDir(), "credentials.json")
	password, err := credentials.Add(creds, "pw-sensor")
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"-cloud-url=" + g.base, "-cloud-ca=" + ca.File, "-cloud-cert=" + hq.CertFile, "-cloud-key=" + hq.KeyFile,
		"-tls-addr=127.0.0.1:0", "-tls-cert=" + agentSrv.CertFile, "-tls-key=" + agentSrv.KeyFile, "-tls-client-ca=" + ca.File,
		"-credentials=" + creds, "-allow-anonymous=false"}
	a := startTLSAgent(t, append(common, "-tls-client-auth=optional")...)

	dev := ca.Issue(t, tlsxtest.Leaf{CN: "cert-sensor"})
	byDNS := ca.Issue(t, tlsxtest.Leaf{CN: "not a valid id!", DNS: []string{"dns-sensor"}})
	expired := ca.Issue(t, tlsxtest.Leaf{CN: "old-sensor", NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreign := tlsxtest.NewCA(t, "Foreign CA").Issue(t, tlsxtest.Leaf{CN: "cert-sensor"})
	tlsArgs := func(p *tlsxtest.Pair) []string {
		args := []string{"--cafile", ca.File}
		if p != nil {
			args = append(args, "--cert", p.CertFile, "--key", p.KeyFile)
		}
		return args
	}
	pub := func(p *tlsxtest.Pair, id, topic, msg string, extra ...string) (string, error) {
		return mosquittoPub(t, a.ag.TLSAddr(), append(append(tlsArgs(p), "-i", id, "-t", topic, "-m", msg), extra...)...)
	}

	if out, err := pub(&dev, "cert-sensor", "atrium/room-tls/cert-sensor/co2", "640"); err != nil {
		t.Fatalf("by certificate: %v %s", err, out)
	}
	if out, err := pub(&byDNS, "dns-sensor", "atrium/room-tls/dns-sensor/co2", "641"); err != nil {
		t.Fatalf("by the certificate's DNS name: %v %s", err, out)
	}
	if out, err := pub(nil, "pw-sensor", "atrium/room-tls/pw-sensor/co2", "642", "-u", "pw-sensor", "-P", password); err != nil {
		t.Fatalf("by password over TLS: %v %s", err, out)
	}
	// Refused: another device's topic (the ACL of the certificate's id), a
	// username that is not the certificate's, an expired certificate, another CA.
	_, _ = pub(&dev, "cert-sensor-2", "atrium/room-tls/intruded/co2", "1")
	if out, err := pub(&dev, "cert-sensor-3", "atrium/room-tls/intruded/co2", "1", "-u", "intruded"); err == nil {
		t.Fatalf("a username other than the certificate's was let in: %s", out)
	}
	for name, p := range map[string]*tlsxtest.Pair{"expired": &expired, "foreign CA": &foreign} {
		if out, err := pub(p, "x-"+strings.ReplaceAll(name, " ", "-"), "atrium/room-tls/old-sensor/co2", "1"); err == nil {
			t.Fatalf("%s certificate let in: %s", name, out)
		}
	}
	for sensor, n := range map[string]int{"cert-sensor": 1, "dns-sensor": 1, "pw-sensor": 1} {
		testwait.Within(t, 20*time.Second, sensor+" through every hop", func() bool { return g.count(t, sensor) == n })
	}
	for _, sensor := range []string{"intruded", "old-sensor"} {
		if n := g.count(t, sensor); n != 0 {
			t.Fatalf("%s: %d readings stored", sensor, n)
		}
	}

	t.Run("require", func(t *testing.T) {
		a := startTLSAgent(t, append(common, "-tls-client-auth=require")...)
		out, err := mosquittoPub(t, a.ag.TLSAddr(), append(tlsArgs(nil), "-i", "pw-sensor", "-t", "atrium/room-tls/pw-sensor/co2", "-m", "650",
			"-u", "pw-sensor", "-P", password)...)
		if err == nil {
			t.Fatalf("a device without a certificate was let in: %s", out)
		}
		if out, err := mosquittoPub(t, a.ag.TLSAddr(), append(tlsArgs(&dev), "-i", "cert-sensor", "-t", "atrium/room-tls/cert-sensor/co2", "-m", "651")...); err != nil {
			t.Fatalf("by certificate: %v %s", err, out)
		}
		testwait.Within(t, 20*time.Second, "the certificate device's second reading", func() bool { return g.count(t, "cert-sensor") == 2 })
		if n := g.count(t, "pw-sensor"); n != 1 {
			t.Fatalf("pw-sensor: %d readings", n)
		}
	})
}
