package cloud_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/internal/logging"
)

// system is a running `atrium` on loopback ports, built by the real flag parsing.
type system struct {
	app    *cloud.App
	cancel context.CancelFunc
	done   chan error
	url    string
}

func start(t *testing.T, dataDir string, extra ...string) *system {
	t.Helper()
	args := append([]string{"-target=sensor", "-sensor-addr=127.0.0.1:0", "-data-dir=" + dataDir}, extra...)
	cfg, err := cloud.ParseFlags(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := cloud.New(ctx, cfg, logging.Discard())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &system{app: app, cancel: cancel, done: make(chan error, 1), url: "http://" + app.Addr("sensor")}
	go func() { s.done <- app.Run(ctx) }()
	t.Cleanup(s.stop)
	return s
}

func (s *system) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	<-s.done
	s.cancel = nil
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
