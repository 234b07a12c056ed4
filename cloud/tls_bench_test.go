package cloud_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/tlsx/tlsxtest"
)

// BenchmarkTLSCost measures what TLS costs, plain and TLS side by side in one run,
// on the two paths it sits on:
//
//   - gateway: 16 clients GET /sensors/{id}/data for 2 s per mode through
//     `atrium -target=sensor,gateway`: plain HTTP, HTTPS over keep-alive
//     connections (HTTP/1.1 and HTTP/2), and HTTPS with a new connection — a full
//     handshake — per request. Requests/s and process CPU per request (client,
//     gateway and service all in this process).
//   - agent drain: 100,000 readings spooled by an agent whose gateway is not up
//     yet, then drained through the gateway (the agent by API key over HTTP, or by
//     client certificate over HTTPS): readings/s from the first delivery to the last.
//
// Run: go test -run '^$' -bench TLSCost -benchtime 1x -count 3 ./cloud
func BenchmarkTLSCost(b *testing.B) {
	ca := tlsxtest.NewCA(b, "Bench CA")
	srv := ca.Server(b, "gateway")
	agentCert := ca.Issue(b, tlsxtest.Leaf{CN: "agent-bench"})
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	keys := filepath.Join(b.TempDir(), "keys.json")
	key := addKey(b, keys, "bench", gateway.ScopeRead, gateway.ScopeIngest)
	if err := gateway.AddSubject(keys, "agent-bench", "cn:agent-bench", []gateway.Scope{gateway.ScopeIngest}); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		plain := startGW(b, "sensor,gateway", b.TempDir(), nil, "-keys="+keys, "-rate-limit=0")
		secure := startGW(b, "sensor,gateway", b.TempDir(), nil, "-keys="+keys, "-rate-limit=0",
			"-tls-cert="+srv.CertFile, "-tls-key="+srv.KeyFile, "-client-ca="+ca.File)
		plainURL, secureURL := plain.url, "https://"+secure.app.Addr("gateway")
		seed := tlsBatch("seed", "bench-s1", 500)
		for _, base := range []string{plainURL, secureURL} {
			client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			req, _ := http.NewRequest("POST", base+"/sensors/data", stringsReader(seed))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("seed %s: %v %v", base, resp, err)
			}
			resp.Body.Close()
		}

		modes := []struct {
			name string
			base string
			tr   func() *http.Transport
		}{
			{"http", plainURL, func() *http.Transport { return &http.Transport{MaxIdleConnsPerHost: 64} }},
			{"https-h1", secureURL, func() *http.Transport {
				return &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{RootCAs: pool}}
			}},
			{"https-h2", secureURL, func() *http.Transport {
				return &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
			}},
			{"https-handshake", secureURL, func() *http.Transport {
				return &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}
			}},
		}
		for _, m := range modes {
			tr := m.tr()
			client := &http.Client{Transport: tr}
			var n, fails atomic.Int64
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cpu0 := testenv.ProcessCPU(b)
			start := time.Now()
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for ctx.Err() == nil {
						req, _ := http.NewRequest("GET", m.base+"/sensors/bench-s1/data", nil)
						req.Header.Set("Authorization", "Bearer "+key)
						resp, err := client.Do(req)
						if err != nil {
							fails.Add(1)
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							n.Add(1)
						} else {
							fails.Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			cpu := testenv.ProcessCPU(b) - cpu0
			cancel()
			tr.CloseIdleConnections()
			if n.Load() == 0 || fails.Load() > 0 {
				b.Fatalf("%s: %d ok, %d failed", m.name, n.Load(), fails.Load())
			}
			b.ReportMetric(float64(n.Load())/elapsed.Seconds(), "gw-"+m.name+"-req/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(n.Load()), "gw-"+m.name+"-cpu-µs/req")
		}
		plain.stop()
		secure.stop()

		// Agent drain.
		const readings = 100000
		for _, mode := range []string{"http", "https"} {
			addr := testenv.FreeAddr(b)
			scheme, agentArgs := "http", []string{"-token=" + key}
			gwArgs := []string{"-keys=" + keys, "-rate-limit=0", "-gateway-addr=" + addr}
			if mode == "https" {
				scheme = "https"
				agentArgs = []string{"-cloud-ca=" + ca.File, "-cloud-cert=" + agentCert.CertFile, "-cloud-key=" + agentCert.KeyFile}
				gwArgs = append(gwArgs, "-tls-cert="+srv.CertFile, "-tls-key="+srv.KeyFile, "-client-ca="+ca.File)
			}
			a := startTLSAgent(b, append([]string{"-cloud-url=" + scheme + "://" + addr, "-linger=50ms"}, agentArgs...)...)
			a.publish(b, "drain-"+mode, readings)
			g := startGW(b, "sensor,gateway", b.TempDir(), nil, gwArgs...)
			var first time.Time
			deadline := time.Now().Add(2 * time.Minute)
			for {
				left, _ := a.state(b)
				if first.IsZero() && left < readings {
					first = time.Now()
				}
				if left == 0 {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s: %d readings left", mode, left)
				}
				time.Sleep(5 * time.Millisecond)
			}
			d := time.Since(first)
			b.ReportMetric(float64(readings)/d.Seconds(), "drain-"+mode+"-readings/s")
			g.stop()
		}
	}
}

func stringsReader(s string) io.Reader { return &stringReader{s: s} }

type stringReader struct{ s string }

func (r *stringReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	n := copy(p, r.s)
	r.s = r.s[n:]
	return n, nil
}
