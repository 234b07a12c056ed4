package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/atrium-iot/atrium/agent/agenttest"
	"github.com/atrium-iot/atrium/cloud/cloudtest"
	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/testenv"
	"github.com/atrium-iot/atrium/internal/testwait"
)

// building is the whole system on loopback ports: `atrium -target=all`, an edge
// agent and the simulator publishing to it over MQTT.
type building struct {
	url     string // the gateway
	browser string // the key the browser is given: read and admin
	tester  string // the test's own key: read, ingest, admin
	rooms   []string
}

func startBuilding(t *testing.T) *building {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	b := &building{}
	var agentKey string
	for _, k := range []struct {
		name   string
		scopes []gateway.Scope
		into   *string
	}{
		{"browser", []gateway.Scope{gateway.ScopeRead, gateway.ScopeAdmin}, &b.browser},
		{"agent", []gateway.Scope{gateway.ScopeIngest}, &agentKey},
		{"tester", []gateway.Scope{gateway.ScopeRead, gateway.ScopeIngest, gateway.ScopeAdmin}, &b.tester},
	} {
		key, err := gateway.AddKey(keys, k.name, k.scopes)
		if err != nil {
			t.Fatal(err)
		}
		*k.into = key
	}

	app := cloudtest.Start(t, "-target=all", "-data-dir="+filepath.Join(dir, "cloud"), "-keys="+keys,
		"-gateway-addr=127.0.0.1:0", "-sensor-addr=127.0.0.1:0", "-room-addr=127.0.0.1:0",
		"-analytics-addr=127.0.0.1:0", "-notification-addr=127.0.0.1:0", "-shutdown-timeout=5s")
	b.url = "http://" + app.Addr("gateway")
	testwait.WithinState(t, 20*time.Second, "the gateway to be ready", func() (bool, string) {
		code, body := b.call(t, "GET", "/readyz", nil, "")
		return code == 200, body
	})

	ag := agenttest.Run(t, nil, nil, "-mqtt-addr=127.0.0.1:0", "-http-addr=127.0.0.1:0", "-allow-anonymous",
		"-spool="+filepath.Join(dir, "spool.db"), "-cloud-url="+b.url, "-token="+agentKey,
		"-linger=50ms", "-shutdown-timeout=2s")

	const rooms = 3
	s, err := sim.New(sim.Config{Broker: "tcp://" + ag.MQTTAddr(), Rooms: rooms, SensorsPerRoom: 4, Interval: time.Second,
		QoS: 1, Speed: 1, Seed: 42, Queue: 100, Drain: time.Second, ConnectWait: 10 * time.Second}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	sctx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan struct{})
	go func() { defer close(simDone); _, _ = s.Run(sctx) }()
	t.Cleanup(func() { stopSim(); <-simDone })
	for i := range rooms {
		b.rooms = append(b.rooms, sim.RoomID("", i))
	}
	return b
}

// call makes one request to the gateway with key (none when empty).
func (b *building) call(t *testing.T, method, path string, body any, key string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

// browserLog records what the page asked for and what it wrote to its console.
type browserLog struct {
	mu       sync.Mutex
	requests []string
	console  []chromedp.ConsoleMessage
}

func (l *browserLog) request(u string) {
	l.mu.Lock()
	l.requests = append(l.requests, u)
	l.mu.Unlock()
}

func (l *browserLog) snapshot() ([]string, []chromedp.ConsoleMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.requests...), append([]chromedp.ConsoleMessage(nil), l.console...)
}

// startBrowser starts headless Chromium with a fresh profile and records every
// request and console message of its tab.
func startBrowser(t *testing.T) (context.Context, *browserLog) {
	t.Helper()
	path := cmpOr(os.Getenv("ATRIUM_CHROMIUM"), "/usr/bin/chromium")
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, "%s: %v: the browser test needs Chromium (scripts/chromium.sh installs it)", path, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "en-GB"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, stopAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, stopTab := chromedp.NewContext(actx)
	t.Cleanup(func() { stopTab(); stopAlloc() })

	log := &browserLog{}
	// Starts the browser; its lifetime is ctx's, so no timeout here.
	if err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			log.request(e.Request.URL)
		case *network.EventWebSocketCreated:
			log.request(e.URL)
		}
	}); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			log.mu.Lock()
			log.console = append(log.console, m)
			log.mu.Unlock()
		}
	}()
	return ctx, log
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// page drives the tab with deadlines and saves screenshots.
type page struct {
	t         *testing.T
	ctx       context.Context
	artifacts string
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\npage text:\n%s", what, err, p.text())
	}
}

// eval runs a JavaScript expression and decodes its value into T.
func eval[T any](p *page, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

func (p *page) text() string {
	s, err := eval[string](p, `document.body.innerText`)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return s
}

// until polls a JavaScript condition in the page.
func (p *page) until(d time.Duration, what, expr string) {
	p.t.Helper()
	testwait.WithinState(p.t, d, what, func() (bool, string) {
		ok, err := eval[bool](p, expr)
		if err != nil {
			return false, err.Error()
		}
		return ok, p.text()
	})
}

// shot saves a PNG of the whole page and logs its path.
func (p *page) shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	// Let layout and the last render settle: two animation frames.
	_, _ = chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))`, chromedp.EvalAwaitPromise))
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	file := filepath.Join(p.artifacts, name)
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot: %s", file)
}

func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ATRIUM_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "dashboard")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loopback reports whether a URL the page used stays on this machine.
func loopback(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "data", "blob", "about":
		return true
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TestDashboardInABrowser runs the building (cloud, agent, simulator), opens the
// dashboard in headless Chromium as a person would, and checks what the page shows:
// the key prompt, a live tile per simulated room, a room's history chart, an alert
// arriving on the live feed without a reload, and its acknowledgement.
func TestDashboardInABrowser(t *testing.T) {
	ctx, blog := startBrowser(t)
	b := startBuilding(t)
	p := &page{t: t, ctx: ctx, artifacts: artifactsDir(t)}

	// The simulated rooms appear with their headline metrics.
	testwait.WithinState(t, 30*time.Second, "every simulated room to have metrics", func() (bool, string) {
		code, body := b.call(t, "GET", "/rooms", nil, b.tester)
		var page struct {
			Rooms []struct {
				ID      string             `json:"id"`
				Metrics map[string]float64 `json:"metrics"`
			} `json:"rooms"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
			return false, body
		}
		ready := 0
		for _, r := range page.Rooms {
			if len(r.Metrics) == 4 {
				ready++
			}
		}
		return ready >= len(b.rooms), body
	})
	// Describe the rooms as a facility manager would.
	for i, id := range b.rooms {
		desc := map[string]any{"name": []string{"Orchid meeting room", "Open office east", "Focus booth"}[i], "floor": 1 + i/2, "capacity": sim.Capacities[i]}
		if code, body := b.call(t, "PATCH", "/rooms/"+id, desc, b.tester); code != 200 {
			t.Fatalf("PATCH /rooms/%s: %d %s", id, code, body)
		}
	}
	// Two hours of temperature history of the first room's climate sensor, as if the
	// building had been running: older than its live readings, so the live values stay.
	histEnd := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	var hist []map[string]any
	for i := range 110 {
		at := histEnd.Add(-time.Duration(110-i) * time.Minute)
		v := 21.2 + 1.4*math.Sin(float64(i)/17) + 0.25*math.Sin(float64(i)*1.7)
		hist = append(hist, map[string]any{"sensor_id": sim.SensorID(b.rooms[0], 0), "room_id": b.rooms[0], "type": "temperature",
			"value": math.Round(v*100) / 100, "timestamp": at.UTC().Format(time.RFC3339)})
	}
	if code, body := b.call(t, "POST", "/sensors/data", map[string]any{"batch_id": "history-1", "readings": hist}, b.tester); code != 200 || !strings.Contains(body, `"accepted":110`) {
		t.Fatalf("history: %d %s", code, body)
	}

	t.Run("asks for a key, refuses a wrong one", func(t *testing.T) {
		p.t = t
		p.do("open the dashboard", chromedp.Navigate(b.url+"/?poll=1000"), chromedp.WaitVisible("#key-input"))
		p.shot("01-key.png")
		p.do("type a wrong key", chromedp.SendKeys("#key-input", "not-a-key"), chromedp.Click(`#key-form button[type=submit]`))
		p.until(10*time.Second, "the refusal", `document.getElementById('key-error').textContent.includes('refused')`)
		// The refused key is selected, so typing the right one replaces it.
		p.do("type the key and press Enter", chromedp.SendKeys("#key-input", b.browser+"\r"))
		p.until(10*time.Second, "the overview", `!document.getElementById('overview-view').hidden`)
		if stored, err := eval[string](p, `localStorage.getItem('atrium.apiKey')`); err != nil || stored != b.browser {
			t.Errorf("localStorage holds %q (%v), want the key", stored, err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("a live tile per room", func(t *testing.T) {
		p.t = t
		p.until(20*time.Second, "a tile with values for every room", fmt.Sprintf(`(() => {
			const ids = %s;
			return ids.every(id => {
				const el = document.querySelector('article[data-room-id="' + id + '"]');
				return el && /\d/.test(el.querySelector('[data-metric=temperature]').textContent)
					&& /ppm/.test(el.querySelector('[data-metric=co2]').textContent)
					&& / \/ \d/.test(el.querySelector('[data-metric=occupancy]').textContent);
			});
		})()`, jsonOf(t, b.rooms)))
		type tile struct{ ID, Name, Temp, Hum, CO2, Occ, Comfort, Class string }
		read := func() []tile {
			ts, err := eval[[]tile](p, `[...document.querySelectorAll('#rooms article')].map(a => ({
				ID: a.dataset.roomId, Name: a.querySelector('h3').textContent, Class: a.className,
				Temp: a.querySelector('[data-metric=temperature]').textContent,
				Hum: a.querySelector('[data-metric=humidity]').textContent,
				CO2: a.querySelector('[data-metric=co2]').textContent,
				Occ: a.querySelector('[data-metric=occupancy]').textContent,
				Comfort: a.querySelector('[data-metric=comfort]').textContent}))`)
			if err != nil {
				t.Fatal(err)
			}
			return ts
		}
		first := read()
		if len(first) != len(b.rooms) {
			t.Fatalf("tiles %+v, want %d", first, len(b.rooms))
		}
		for i, tl := range first {
			if tl.ID != b.rooms[i] || !strings.Contains(tl.Name, " ") || !strings.HasSuffix(tl.Temp, "°C") ||
				!strings.Contains(tl.Hum, "%") || !strings.Contains(tl.CO2, "ppm") || !strings.Contains(tl.Class, "air-") ||
				!strings.HasSuffix(strings.TrimSpace(tl.Occ), fmt.Sprintf("/ %d", sim.Capacities[i])) || tl.Comfort == "" {
				t.Errorf("tile %d: %+v", i, tl)
			}
		}
		// Live: the values move while the page stays.
		p.until(20*time.Second, "a tile's values to change", fmt.Sprintf(`(() => {
			const before = %q;
			const now = [...document.querySelectorAll('#rooms article')].map(a => a.querySelector('[data-metric=temperature]').textContent + a.querySelector('[data-metric=co2]').textContent).join('|');
			return now !== before;
		})()`, func() string {
			var parts []string
			for _, tl := range first {
				parts = append(parts, tl.Temp+tl.CO2)
			}
			return strings.Join(parts, "|")
		}()))
		p.until(20*time.Second, "the building summary", `!!document.getElementById('summary').dataset.summary`)
		if s, _ := eval[string](p, `document.getElementById('summary').dataset.summary`); s != "ok" {
			t.Logf("the analytics summary is %q: the page says so instead of failing", s)
		}
		p.shot("02-overview.png")
	})

	t.Run("a room page with its history chart", func(t *testing.T) {
		p.t = t
		p.do("open the first room", chromedp.Click(fmt.Sprintf(`article[data-room-id=%q] h3 a`, b.rooms[0])))
		p.until(15*time.Second, "the room's chart", `!document.getElementById('room-view').hidden && !!document.querySelector('#chart svg path.mean')`)
		if title, _ := eval[string](p, `document.getElementById('room-title').textContent`); title != "Orchid meeting room" {
			t.Errorf("room title %q", title)
		}
		// Choose a finer bucket: the chart redraws from GET /rooms/{id}/history.
		p.do("choose 1-minute buckets", chromedp.SetValue("#chart-bucket", "1m"))
		if _, err := eval[chromedp.Void](p, `document.getElementById('chart-form').dispatchEvent(new Event('change', {bubbles: true}))`); err != nil {
			t.Fatal(err)
		}
		p.until(15*time.Second, "the 1-minute chart", `(document.querySelector('#chart svg')?.getAttribute('aria-label') || '').includes('buckets of 1m')`)
		n, err := eval[int](p, `document.querySelectorAll('#chart-table tbody tr').length`)
		if err != nil || n < 100 {
			t.Errorf("the chart's table has %d rows (%v), want the 110 minutes of history and more", n, err)
		}
		p.shot("03-room.png")
		p.do("back to the overview", chromedp.Click(`.crumbs a`))
		p.until(10*time.Second, "the overview", `!document.getElementById('overview-view').hidden`)
	})

	t.Run("an alert arrives live and is acknowledged", func(t *testing.T) {
		p.t = t
		p.until(10*time.Second, "the live feed", `document.getElementById('feed-state').textContent.startsWith('Connected')`)
		if _, err := eval[chromedp.Void](p, `window.sameDocument = true`); err != nil {
			t.Fatal(err)
		}
		// CO2 at 1650 ppm every 30 s for 8 minutes, ending a minute ago: the
		// notification service's default rules fire.
		start := time.Now().Add(-9 * time.Minute).Truncate(time.Second)
		var rs []map[string]any
		for i := range 17 {
			rs = append(rs, map[string]any{"sensor_id": "co2-probe-9", "room_id": b.rooms[1], "type": "co2", "value": 1650,
				"timestamp": start.Add(time.Duration(i) * 30 * time.Second).UTC().Format(time.RFC3339)})
		}
		if code, body := b.call(t, "POST", "/sensors/data", map[string]any{"batch_id": "co2-spike", "readings": rs}, b.tester); code != 200 {
			t.Fatalf("ingest: %d %s", code, body)
		}
		p.until(20*time.Second, "the alert in the live feed", `!!document.querySelector('#feed li[data-kind="alert.raised"] .chip.critical')`)
		p.until(10*time.Second, "the alert in the open alerts and on its room's tile", fmt.Sprintf(`!!document.querySelector('#alerts li.critical[data-state=active] button')
			&& document.querySelector('article[data-room-id=%q] .tile-alerts.critical')?.dataset.alerts === '2'`, b.rooms[1]))
		if same, err := eval[bool](p, `window.sameDocument === true`); err != nil || !same {
			t.Fatalf("the page reloaded (%v)", err)
		}
		id, err := eval[string](p, `document.querySelector('#alerts li.critical[data-state=active]').dataset.alertId`)
		if err != nil || id == "" {
			t.Fatalf("alert id %q: %v", id, err)
		}
		p.shot("04-alert.png")

		p.do("acknowledge it", chromedp.Click(fmt.Sprintf(`#alerts li[data-alert-id=%q] button`, id)))
		p.until(15*time.Second, "the acknowledgement", fmt.Sprintf(`!!document.querySelector('#alerts li[data-alert-id=%q][data-state=acknowledged]')
			&& !!document.querySelector('#feed li[data-kind="alert.acknowledged"][data-alert-id=%q]')`, id, id))
		code, body := b.call(t, "GET", "/alerts/"+id, nil, b.tester)
		if code != 200 || !strings.Contains(body, `"state":"acknowledged"`) {
			t.Fatalf("GET /alerts/%s: %d %s", id, code, body)
		}
		p.shot("05-acknowledged.png")
	})

	t.Run("a phone's width", func(t *testing.T) {
		p.t = t
		p.do("a 375 px viewport", chromedp.EmulateViewport(375, 812))
		p.until(10*time.Second, "the layout at 375 px", `window.innerWidth === 375`)
		w, err := eval[int](p, `document.documentElement.scrollWidth`)
		if err != nil || w > 375 {
			t.Errorf("the page is %d px wide at 375 (%v): it scrolls sideways", w, err)
		}
		p.shot("06-phone.png")
		// Keyboard only: from the header's button, Tab reaches the first room's
		// tile and Enter opens it, with the focus on the room's heading.
		p.do("focus the header button", chromedp.Focus("#change-key"), chromedp.KeyEvent("\t"))
		if f, _ := eval[string](p, `document.activeElement.closest('article')?.dataset.roomId || document.activeElement.outerHTML`); f != b.rooms[0] {
			t.Errorf("Tab from the header lands on %q, want the tile of %s", f, b.rooms[0])
		}
		p.do("press Enter", chromedp.KeyEvent("\r"))
		p.until(15*time.Second, "the room page, focused, with its chart", `document.activeElement.id === 'room-title' && !!document.querySelector('#chart svg path.mean')`)
		if w, err := eval[int](p, `document.documentElement.scrollWidth`); err != nil || w > 375 {
			t.Errorf("the room page is %d px wide at 375 (%v)", w, err)
		}
		p.shot("07-phone-room.png")
	})

	requests, console := blog.snapshot()
	if len(requests) < 10 {
		t.Errorf("only %d requests seen: %v", len(requests), requests)
	}
	sawWS := false
	for _, u := range requests {
		if !loopback(u) {
			t.Errorf("the page reached beyond this machine: %s", u)
		}
		sawWS = sawWS || strings.HasPrefix(u, "ws://") && strings.Contains(u, "/ws/notifications")
	}
	if !sawWS {
		t.Errorf("no WebSocket to /ws/notifications among %d requests", len(requests))
	}
	for _, m := range console {
		// The wrong key of the first step is refused with 401, as it should be.
		if m.Type == "error" && m.Source == "network" && strings.Contains(m.Text, "401") {
			continue
		}
		if m.IsException() || m.Type == "error" || m.Type == "warning" {
			t.Errorf("browser console: %s", m)
		}
	}
}
