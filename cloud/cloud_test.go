package cloud_test

import (
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"

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

type answer = httpxtest.Answer

// do sends a request with Content-Type application/json (unless headers name
// another) and the headers given as name, value pairs.
func do(t *testing.T, method, url string, body []byte, headers ...string) answer {
	t.Helper()
	return httpxtest.DoJSON(t, method, url, body, headers...)
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func num(v any) int {
	f, _ := v.(float64)
	return int(f)
}
