package httpx_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/logging"
)

// serve runs h behind httpx.Listen on a loopback port and returns its address.
func serve(t *testing.T, h http.Handler, opts ...httpx.ServerOption) string {
	t.Helper()
	srv, err := httpx.Listen("test", "127.0.0.1:0", h, logging.Discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = srv.Serve(); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	})
	return srv.Addr()
}

// readBody answers 200 with the size of the body it read, or the problem.
func readBody(w http.ResponseWriter, r *http.Request) {
	b, err := httpx.ReadBody(w, r, 0)
	if err != nil {
		httpx.Error(w, r, logging.Discard(), err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]int{"read": len(b)})
}

func TestSlowBodyIsAnswered408(t *testing.T) {
	const timeout = 400 * time.Millisecond
	addr := serve(t, http.HandlerFunc(readBody), httpx.WithReadTimeout(timeout))
	for _, tc := range []struct{ name, head string }{
		{"plain", "POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"},
		{"gzip", "POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte every 50 ms: 1000 bytes would take 50 s.
			resp, body, took := httpxtest.Trickle(t, addr, tc.head, 1000, 50*time.Millisecond)
			var p httpx.Problem
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get("Content-Type") != "application/problem+json" ||
				json.Unmarshal(body, &p) != nil || p.Status != 408 || !strings.Contains(p.Detail, "400ms") {
				t.Fatalf("got %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			if took < timeout || took > timeout+5*time.Second {
				t.Fatalf("answered after %s, read timeout %s", took, timeout)
			}
		})
	}
	t.Run("a body in time is read", func(t *testing.T) {
		resp, body, _ := httpxtest.Trickle(t, addr, "POST /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n", 12, 10*time.Millisecond)
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"read":12`) {
			t.Fatalf("got %d %s", resp.StatusCode, body)
		}
	})
}

// The deadline bounds the body only: a handler working longer than it after the
// body is read, a request without a body, and a hijacked connection (a WebSocket)
// are not cut by it.
func TestReadTimeoutBoundsOnlyTheBody(t *testing.T) {
	const timeout = 200 * time.Millisecond
	mux := http.NewServeMux()
	slow := func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			httpx.Error(w, r, nil, err)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
		case <-time.After(3 * timeout):
			_, _ = io.WriteString(w, "done")
		}
	}
	mux.HandleFunc("POST /slow", slow)
	mux.HandleFunc("GET /slow", slow)
	mux.HandleFunc("GET /hijack", func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("echo " + line))
	})
	addr := serve(t, mux, httpx.WithReadTimeout(timeout))
	for _, m := range []string{"GET", "POST"} {
		t.Run(m+" handler slower than the timeout", func(t *testing.T) {
			a := httpxtest.Do(t, nil, m, "http://"+addr+"/slow", []byte(map[string]string{"GET": "", "POST": "{}"}[m]))
			if a.Code != 200 || a.String() != "done" {
				t.Fatalf("got %d %s", a.Code, a.Raw)
			}
		})
	}
	t.Run("hijacked connection", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /hijack HTTP/1.1\r\nHost: t\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		// Quiet for longer than the read timeout, as a WebSocket between messages.
		time.Sleep(3 * timeout)
		fmt.Fprintf(c, "hello\n")
		if line, err := br.ReadString('\n'); err != nil || line != "echo hello\n" {
			t.Fatalf("after a quiet spell: %q %v", line, err)
		}
	})
}

func TestRequireContentType(t *testing.T) {
	r := httpx.NewRouter(logging.Discard(), prometheus.NewRegistry(), nil)
	r.Post("/things", readBody)
	r.Patch("/things/{id}", readBody)
	r.Post("/things/{id}/ack", readBody)
	addr := serve(t, r)
	for _, tc := range []struct {
		name, method, path, ctype, body string
		code                            int
	}{
		{"json", "POST", "/things", "application/json", `{}`, 200},
		{"json with charset", "POST", "/things", "application/json; charset=utf-8", `{}`, 200},
		{"json in capitals", "POST", "/things", "Application/JSON", `{}`, 200},
		{"no content type", "POST", "/things", "", `{}`, 415},
		{"form, as curl -d sends", "POST", "/things", "application/x-www-form-urlencoded", `{}`, 415},
		{"text/plain", "POST", "/things", "text/plain", `{}`, 415},
		{"senml", "POST", "/things", "application/senml+json", `[]`, 415},
		{"malformed", "POST", "/things", "application/", `{}`, 415},
		{"PATCH form", "PATCH", "/things/1", "application/x-www-form-urlencoded", `{}`, 415},
		{"PATCH json", "PATCH", "/things/1", "application/json", `{}`, 200},
		{"no body needs no type", "POST", "/things/1/ack", "", ``, 200},
		{"no body, any type", "POST", "/things/1/ack", "application/x-www-form-urlencoded", ``, 200},
		{"unknown route: 404 first", "POST", "/nothing", "text/plain", `{}`, 404},
		{"wrong method: 405 first", "PUT", "/things", "text/plain", `{}`, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.ctype != "" {
				headers = []string{"Content-Type", tc.ctype}
			}
			a := httpxtest.Do(t, nil, tc.method, "http://"+addr+tc.path, []byte(tc.body), headers...)
			if a.Code != tc.code {
				t.Fatalf("got %d %s, want %d", a.Code, a.Raw, tc.code)
			}
			if tc.code == 415 && (a.CType != "application/problem+json" || !strings.Contains(a.String(), "application/json")) {
				t.Fatalf("415 answer: %q %s", a.CType, a.Raw)
			}
		})
	}
}

func TestHeadAnswersWhereGetDoes(t *testing.T) {
	r := httpx.NewRouter(logging.Discard(), prometheus.NewRegistry(), map[string]httpx.Check{"x": func(context.Context) error { return nil }})
	r.Get("/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "pad": strings.Repeat("x", 5000)})
	})
	r.Post("/things", readBody)
	addr := serve(t, r)
	for _, path := range []string{"/things/t1", "/healthz", "/readyz"} {
		t.Run(path, func(t *testing.T) {
			get := httpxtest.Get(t, "http://"+addr+path)
			head := httpxtest.Do(t, nil, http.MethodHead, "http://"+addr+path, nil)
			if head.Code != 200 || get.Code != 200 || len(head.Raw) != 0 {
				t.Fatalf("HEAD %d with %d bytes of body; GET %d", head.Code, len(head.Raw), get.Code)
			}
			for _, h := range []string{"Content-Type", "Content-Length"} {
				if head.Head.Get(h) != get.Head.Get(h) || head.Head.Get(h) == "" {
					t.Errorf("%s: HEAD %q, GET %q", h, head.Head.Get(h), get.Head.Get(h))
				}
			}
			if get.Head.Get("Content-Length") != fmt.Sprint(len(get.Raw)) {
				t.Errorf("GET Content-Length %s for %d bytes", get.Head.Get("Content-Length"), len(get.Raw))
			}
		})
	}
	t.Run("HEAD where only POST is", func(t *testing.T) {
		if head := httpxtest.Do(t, nil, http.MethodHead, "http://"+addr+"/things", nil); head.Code != 405 {
			t.Fatalf("HEAD /things: %d", head.Code)
		}
	})
}
