package httpxtest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Metrics is one scrape of a Prometheus text page (GET /metrics).
type Metrics struct {
	written map[string]float64  // "name{labels}" as written → value
	byName  map[string][]series // name → its series
}

type series struct {
	labels map[string]string
	value  float64
}

// Scrape reads GET base/metrics with client (http.DefaultClient when nil); any
// answer but 200 fails the test.
func Scrape(t testing.TB, client *http.Client, base string) Metrics {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", base, resp.Status)
	}
	m := Metrics{written: map[string]float64{}, byName: map[string][]series{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		m.written[line[:sp]] = v
		name, rest, _ := strings.Cut(line[:sp], "{")
		s := series{labels: map[string]string{}, value: v}
		for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
			if k, val, ok := strings.Cut(kv, "="); ok {
				s.labels[k] = strings.Trim(val, `"`)
			}
		}
		m.byName[name] = append(m.byName[name], s)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("scrape %s: %v", base, err)
	}
	return m
}

// Get is the value of one series as the page writes it, `name{label="value",…}`;
// a series never written counts as 0.
func (m Metrics) Get(series string) float64 { return m.written[series] }

// Sum adds the series of name whose labels include every pair of kv (k1, v1, k2,
// v2, …).
func (m Metrics) Sum(name string, kv ...string) float64 {
	var total float64
next:
	for _, s := range m.byName[name] {
		for i := 0; i+1 < len(kv); i += 2 {
			if s.labels[kv[i]] != kv[i+1] {
				continue next
			}
		}
		total += s.value
	}
	return total
}
