package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/launch"
)

// Shape of the footprint load: footprintDevices connections, each publishing one
// message of two readings per second for footprintSeconds seconds.
const (
	footprintDevices = 1000
	footprintSeconds = 30
	footprintTarget  = 40 << 20 // bytes of RSS

	// footprintPendingWrites is the agent's -max-pending-writes default, given to
	// the bare broker too so both reserve the same outbound queue per connection.
	footprintPendingWrites = 256
)

// BenchmarkFootprint runs the built atrium-agent binary (as shipped: CGO_ENABLED=0,
// -trimpath, -ldflags="-s -w") against the real sensor service, connects 1,000 MQTT
// clients, each on its own connection publishing one message per second for 30 s,
// and reports the agent's resident memory from /proc/<pid>/status: VmRSS at the end,
// the largest VmRSS sampled each second, and VmHWM (the kernel's peak). Target: RSS ≤
// 40 MB. It checks that every reading reached the spool and the sensor service.
// Gated by ATRIUM_BENCH_BIG=1; run it once: -bench=Footprint -benchtime=1x.
//
// Variants change the agent's Go runtime settings through its environment, as a
// service unit would. The broker=bare-mochi variant is the floor under the agent:
// the same load on a mochi-mqtt broker alone (testdata/baremochi: allow-all auth,
// no spool, no forwarder, the agent's outbound queue size), built the same way.
func BenchmarkFootprint(b *testing.B) {
	if os.Getenv("ATRIUM_BENCH_BIG") != "1" {
		b.Skip("set ATRIUM_BENCH_BIG=1 to run the 1,000-device footprint benchmark")
	}
	footprintRaiseFiles(b, 2*footprintDevices+256)
	agentBin := footprintBuild(b, "./cmd/atrium-agent")
	mochiBin := footprintBuild(b, "./agent/testdata/baremochi")
	variants := []struct {
		name string
		bare bool
		env  []string
	}{
		{"broker=agent/runtime=default", false, nil},
		{"broker=agent/runtime=GOMEMLIMIT-32MiB", false, []string{"GOMEMLIMIT=32MiB"}},
		{"broker=bare-mochi/runtime=default", true, nil},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				if v.bare {
					footprintRun(b, mochiBin, v.env, "")
				} else {
					footprintRun(b, agentBin, v.env, benchStartCloud(b, filepath.Join(b.TempDir(), "cloud")))
				}
			}
		})
	}
}

// footprintRun is one measurement: broker up, devices connected and publishing,
// memory sampled, every reading accounted for. cloudURL is the sensor service the
// agent forwards to; empty means bin is the bare mochi broker.
func footprintRun(b *testing.B, bin string, env []string, cloudURL string) {
	dir := b.TempDir()
	var args []string
	if cloudURL != "" {
		args = []string{"-http-addr=127.0.0.1:0", "-allow-anonymous", "-cloud-url=" + cloudURL,
			"-spool=" + filepath.Join(dir, "spool.db"), "-site=bench-site", "-log-format=json", "-log-level=info"}
	} else {
		args = []string{"-max-pending-writes=" + strconv.Itoa(footprintPendingWrites)}
	}
	proc := footprintStart(b, bin, env, args)
	idle := footprintMem(b, proc.pid)

	clients := benchConnect(b, proc.mqtt, footprintDevices)
	connected := footprintMem(b, proc.pid)
	cpu0, wall0 := footprintCPU(b, proc.pid), time.Now()

	var peak int64 // largest VmRSS sampled, written by the sampler until stop closes
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if m, err := footprintReadMem(proc.pid); err == nil && m.rss > peak {
				peak = m.rss
			}
		}
	}()

	errs := make(chan error, len(clients))
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Go(func() {
			// Spread the devices over the second, as real ones are.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(len(clients)))
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for n := 0; n < footprintSeconds; n++ {
				if err := benchPublishOne(cl); err != nil {
					errs <- err
					return
				}
				<-t.C
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	end := footprintMem(b, proc.pid)
	cpuShare := (footprintCPU(b, proc.pid) - cpu0).Seconds() / time.Since(wall0).Seconds()
	close(stop)
	<-sampled
	peak = max(peak, end.rss)

	if cloudURL != "" {
		want := int64(2 * footprintDevices * footprintSeconds)
		if st := benchStatus(b, proc.http); st.Appended != want {
			b.Fatalf("agent spooled %d readings, want %d", st.Appended, want)
		}
		benchWaitDrained(b, proc.http, cloudURL, int(want))
	}

	mb := func(n int64) float64 { return float64(n) / (1 << 20) }
	b.ReportMetric(mb(end.rss), "RSS-MiB")
	b.ReportMetric(mb(peak), "peak-RSS-MiB")
	b.ReportMetric(mb(end.hwm), "VmHWM-MiB")
	b.ReportMetric(mb(end.anon), "RssAnon-MiB")
	b.ReportMetric(mb(end.file), "RssFile-MiB")
	b.ReportMetric(mb(idle.rss), "idle-RSS-MiB")
	b.ReportMetric(mb(connected.rss), "connected-RSS-MiB")
	b.ReportMetric(100*cpuShare, "CPU-%")
	if end.hwm > footprintTarget {
		b.Logf("VmHWM %.1f MiB is over the %d MiB target", mb(end.hwm), footprintTarget>>20)
	}
}

// footprintRaiseFiles raises the soft limit on open files to at least need (the
// benchmark holds one end of every connection, the agent the other; the agent
// inherits the limit).
func footprintRaiseFiles(b *testing.B, need uint64) {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		b.Skipf("open files hard limit %d is under the %d this benchmark needs", lim.Max, need)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
}

// footprintBuild builds pkg (a path from the module's root) as the agent ships
// into a temporary directory.
func footprintBuild(b *testing.B, pkg string) string {
	b.Helper()
	dir := b.TempDir()
	if err := launch.Compile(b.Context(), dir, []string{"CGO_ENABLED=0"}, []string{"-trimpath", "-ldflags=-s -w"}, pkg); err != nil {
		b.Fatal(err)
	}
	return filepath.Join(dir, filepath.Base(pkg))
}

// footprintProc is a running broker process and the addresses it logged (http is
// empty for the bare broker).
type footprintProc struct {
	pid        int
	mqtt, http string
}

// footprintStart starts the binary with its MQTT listener on a loopback port and
// waits for its "agent started" (or "broker started") log line; it is stopped with
// SIGINT at the end of the benchmark.
func footprintStart(b *testing.B, bin string, env, args []string) footprintProc {
	b.Helper()
	p, err := launch.StartEnv(env, bin, append([]string{"-mqtt-addr=127.0.0.1:0"}, args...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := p.Stop(benchWait); err != nil {
			b.Errorf("broker: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), benchWait)
	defer cancel()
	line, err := p.Await(ctx, func(l map[string]any) bool { return l["msg"] == "agent started" || l["msg"] == "broker started" })
	if err != nil {
		b.Fatalf("broker did not log its start: %v\n%s", err, p.Log.String())
	}
	mqttAddr, _ := line["mqtt"].(string)
	httpAddr, _ := line["status"].(string)
	return footprintProc{pid: p.Cmd.Process.Pid, mqtt: mqttAddr, http: httpAddr}
}

// footprintCPU is the CPU time (user + system) the process has used.
func footprintCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which ends at the last ')': utime and stime
	// are the 14th and 15th fields of the line, the 12th and 13th after it.
	i := strings.LastIndexByte(string(raw), ')')
	f := strings.Fields(string(raw)[i+1:])
	if i < 0 || len(f) < 13 {
		b.Fatalf("/proc/%d/stat: unexpected %q", pid, raw)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / footprintClockTicks
}

// footprintClockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux.
const footprintClockTicks = 100

// footprintMemory is a process's resident set now (VmRSS) and at its peak (VmHWM),
// and the parts of VmRSS that are anonymous memory (RssAnon: heap, stacks) and
// mapped files (RssFile: the binary's pages, the spool's mmap), in bytes.
type footprintMemory struct{ rss, hwm, anon, file int64 }

func footprintMem(b *testing.B, pid int) footprintMemory {
	b.Helper()
	m, err := footprintReadMem(pid)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func footprintReadMem(pid int) (footprintMemory, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return footprintMemory{}, err
	}
	var m footprintMemory
	for line := range strings.Lines(string(raw)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM" && name != "RssAnon" && name != "RssFile") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return footprintMemory{}, fmt.Errorf("/proc/%d/status %s: %w", pid, name, err)
		}
		switch name {
		case "VmRSS":
			m.rss = kb << 10
		case "VmHWM":
			m.hwm = kb << 10
		case "RssAnon":
			m.anon = kb << 10
		case "RssFile":
			m.file = kb << 10
		}
	}
	if m.rss == 0 {
		return footprintMemory{}, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return m, nil
}
