package cloud_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/testenv"
)

func benchSystem(b *testing.B) string {
	b.Helper()
	app := cloudtest.Start(b, "-target=sensor", "-sensor-addr=127.0.0.1:0", "-data-dir="+b.TempDir())
	return "http://" + app.Addr("sensor")
}

// batchBody is a 500-reading batch of 100 sensors with identities unique per n.
func batchBody(n int64, gz bool) []byte {
	var buf bytes.Buffer
	base := time.Now().Add(-24*time.Hour).UnixMilli() + n*500
	fmt.Fprintf(&buf, `{"batch_id":"bench-%d","readings":[`, n)
	for i := range int64(500) {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"sensor_id":"sensor_%03d","room_id":"room-%d","type":"temperature","value":%d.%d,"unit":"Cel","timestamp":%d}`,
			i%100, i%10, 18+i%6, i%10, base+i)
	}
	buf.WriteString(`]}`)
	if !gz {
		return buf.Bytes()
	}
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	_, _ = zw.Write(buf.Bytes())
	_ = zw.Close()
	return z.Bytes()
}

// BenchmarkHTTPIngest posts 500-reading batches over loopback HTTP from concurrent
// clients into the sensor service on its SQLite store; the target is ≥200,000
// readings/s stored on a 2-core machine.
func BenchmarkHTTPIngest(b *testing.B) {
	for _, tc := range []struct {
		clients int
		gzip    bool
	}{{1, false}, {8, false}, {8, true}} {
		b.Run(fmt.Sprintf("clients=%d/gzip=%v", tc.clients, tc.gzip), func(b *testing.B) {
			url := benchSystem(b)
			bodies := make([][]byte, b.N)
			for i := range bodies {
				bodies[i] = batchBody(int64(i), tc.gzip)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: tc.clients}}
			var next atomic.Int64
			errs := make(chan error, tc.clients)
			b.ResetTimer()
			start := time.Now()
			cpu0 := testenv.ProcessCPU(b)
			for range tc.clients {
				go func() {
					for {
						n := next.Add(1) - 1
						if n >= int64(len(bodies)) {
							errs <- nil
							return
						}
						req, _ := http.NewRequest("POST", url+"/sensors/data", bytes.NewReader(bodies[n]))
						req.Header.Set("Content-Type", "application/json")
						if tc.gzip {
							req.Header.Set("Content-Encoding", "gzip")
						}
						resp, err := client.Do(req)
						if err != nil {
							errs <- err
							return
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							errs <- fmt.Errorf("status %d", resp.StatusCode)
							return
						}
					}
				}()
			}
			for range tc.clients {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*500)/time.Since(start).Seconds(), "readings/s")
			b.ReportMetric(500, "readings/op")
			// CPU time of the whole process (server and clients) per reading: less
			// sensitive than readings/s to other load on the machine.
			b.ReportMetric(float64(testenv.ProcessCPU(b)-cpu0)/float64(time.Microsecond)/float64(b.N*500), "cpu-µs/reading")
		})
	}
}
