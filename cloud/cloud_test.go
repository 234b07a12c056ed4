package cloud_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/cloud/cloudtest"
)

// system is a running `atrium -target=sensor` on a loopback port.
type system struct {
	app  *cloud.App
	stop func()
	url  string
}

func start(t *testing.T, dataDir string, extra ...string) *system {
	t.Helper()
	args := append([]string{"-target=sensor", "-sensor-addr=127.0.0.1:0", "-data-dir=" + dataDir}, extra...)
	r := cloudtest.Run(t, nil, args...)
	return &system{app: r.App, stop: r.Stop, url: "http://" + r.Addr("sensor")}
}

type answer struct {
	Code  int
	CType string
	Body  map[string]any
	Raw   []byte
	Head  http.Header
}

func do(t *testing.T, method, url string, body []byte, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{Code: resp.StatusCode, CType: resp.Header.Get("Content-Type"), Raw: raw, Head: resp.Header}
	_ = json.Unmarshal(raw, &a.Body)
	return a
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}
