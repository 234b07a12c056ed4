package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a real upstream on loopback that counts the connections it
// accepted.
type countingServer struct {
	*httptest.Server
	conns atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// countingRoundTripper counts the requests handed to the standard transport.
type countingRoundTripper struct {
	http.RoundTripper
	n atomic.Int64
}

func (c *countingRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func newDirect(t *testing.T, rawURL string, headerTimeout time.Duration) (*directTransport, *countingRoundTripper) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	fb := &countingRoundTripper{RoundTripper: &http.Transport{}}
	d := &net.Dialer{Timeout: time.Second}
	dt := &directTransport{host: u.Host, addr: u.Host, dial: d.DialContext, fallback: fb, headerTimeout: headerTimeout, maxIdle: 4}
	t.Cleanup(dt.close)
	t.Cleanup(fb.RoundTripper.(*http.Transport).CloseIdleConnections)
	return dt, fb
}

func newGet(t *testing.T, rawURL string) *http.Request {
	t.Helper()
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// get sends one request through rt and reads the whole answer.
func get(ctx context.Context, rt http.RoundTripper, method, rawURL string, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, body)
	if err != nil {
		return nil, nil, err
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestDirectTransportKeepsConnectionsAlive(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(big)
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "part one, ")
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "part two")
			w.Header().Set("X-Sum", "42")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		default:
			_, _ = io.WriteString(w, "hello "+r.Method)
		}
	})
	for _, tc := range []struct {
		name, method, path string
		want               []byte
		trailer            string
	}{
		{"small body", "GET", "/", []byte("hello GET"), ""},
		{"HEAD", "HEAD", "/", nil, ""},
		{"no content", "GET", "/empty", nil, ""},
		{"1 MiB body", "GET", "/big", big, ""},
		{"chunked with a trailer", "GET", "/chunked", []byte("part one, part two"), "42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dt, fb := newDirect(t, srv.URL, time.Second)
			before := srv.conns.Load()
			for i := range 10 {
				resp, b, err := get(context.Background(), dt, tc.method, srv.URL+tc.path, nil)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if resp.StatusCode/100 != 2 || !bytes.Equal(b, tc.want) {
					t.Fatalf("request %d: %d, %d bytes, want %d", i, resp.StatusCode, len(b), len(tc.want))
				}
				if got := resp.Trailer.Get("X-Sum"); got != tc.trailer {
					t.Fatalf("trailer %q, want %q", got, tc.trailer)
				}
			}
			if n := srv.conns.Load() - before; n != 1 {
				t.Errorf("10 requests in a row took %d connections, want 1", n)
			}
			if fb.n.Load() != 0 {
				t.Errorf("%d requests went to the standard transport", fb.n.Load())
			}
		})
	}
}

func TestDirectTransportHandsOverWhatItDoesNotCarry(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+string(b))
	})
	other := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "other") })
	for _, tc := range []struct {
		name, method, url string
		body              io.Reader
		header            string
		want              string
	}{
		{"POST with a body", "POST", srv.URL + "/x", strings.NewReader("payload"), "", "POST payload"},
		{"DELETE", "DELETE", srv.URL + "/x", nil, "", "DELETE "},
		{"GET with a body", "GET", srv.URL + "/x", strings.NewReader("q"), "", "GET q"},
		{"upgrade", "GET", srv.URL + "/x", nil, "websocket", "GET "},
		{"another host", "GET", other.URL + "/x", nil, "", "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dt, fb := newDirect(t, srv.URL, time.Second)
			req, err := http.NewRequest(tc.method, tc.url, tc.body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("Upgrade", tc.header)
			}
			resp, err := dt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != tc.want || fb.n.Load() != 1 {
				t.Fatalf("answer %q (want %q), standard transport used %d times, want 1", b, tc.want, fb.n.Load())
			}
		})
	}
}

// oneShotServer answers one request per connection with keep-alive headers, then
// closes the connection: every pooled connection is dead when it is used again. It
// returns its URL and how many connections it accepted and closed.
func oneShotServer(t *testing.T) (string, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted, closed atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer func() { c.Close(); closed.Add(1) }()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
			})
		}
	})
	return "http://" + ln.Addr().String(), &accepted, &closed
}

func TestDirectTransportRetriesADeadPooledConnection(t *testing.T) {
	base, accepted, closed := oneShotServer(t)
	dt, _ := newDirect(t, base, time.Second)
	// Fill the pool with four connections the server has closed.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, b, err := get(context.Background(), dt, "GET", base+"/", nil); err != nil || string(b) != "ok" {
				t.Errorf("%q %v", b, err)
			}
		})
	}
	wg.Wait()
	// Every pooled connection dead: the server has closed each one it accepted.
	for deadline := time.Now().Add(5 * time.Second); closed.Load() < accepted.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server closed %d of %d connections", closed.Load(), accepted.Load())
		}
	}
	for i := range 6 {
		resp, b, err := get(context.Background(), dt, "GET", base+"/", nil)
		if err != nil || resp.StatusCode != 200 || string(b) != "ok" {
			t.Fatalf("request %d after the server closed its connections: %v %q", i, err, b)
		}
	}
	if n := accepted.Load(); n < 7 {
		t.Fatalf("%d connections accepted: the dead ones were not replaced", n)
	}
}

func TestDirectTransportEndsWhatTheClientLeaves(t *testing.T) {
	upstreamSaw := make(chan error, 4)
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/midbody" {
			_, _ = io.WriteString(w, "first part")
			http.NewResponseController(w).Flush()
		}
		select {
		case <-r.Context().Done():
			upstreamSaw <- r.Context().Err()
		case <-time.After(10 * time.Second):
			upstreamSaw <- errors.New("the request was never cancelled")
		}
	})
	for _, tc := range []struct {
		name, path string
	}{
		{"waiting for the headers", "/hang"},
		{"reading the body", "/midbody"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dt, _ := newDirect(t, srv.URL, 30*time.Second)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+tc.path, nil)
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			resp, err := dt.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err == nil || time.Since(start) > 5*time.Second {
				t.Fatalf("err %v after %v: the request must end when its context does", err, time.Since(start))
			}
			select {
			case e := <-upstreamSaw:
				if e == nil || !errors.Is(e, context.Canceled) {
					t.Fatalf("upstream: %v", e)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream never saw the request end")
			}
			if n := len(dt.idle); n != 0 {
				t.Fatalf("%d connections pooled after an abandoned request", n)
			}
		})
	}
}

func TestDirectTransportErrors(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	slow := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	})
	closing := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	t.Run("headers late: a timeout", func(t *testing.T) {
		dt, _ := newDirect(t, slow.URL, 200*time.Millisecond)
		_, _, err := get(context.Background(), dt, "GET", slow.URL+"/", nil)
		if !isTimeout(err) || upstreamProblem("x", err).Status != http.StatusGatewayTimeout {
			t.Fatalf("%v, want a timeout answered 504", err)
		}
	})
	t.Run("a body slower than the header timeout is not cut", func(t *testing.T) {
		trickle := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "20")
			_, _ = io.WriteString(w, "first half")
			http.NewResponseController(w).Flush()
			time.Sleep(400 * time.Millisecond)
			_, _ = io.WriteString(w, "other half")
		})
		dt, _ := newDirect(t, trickle.URL, 200*time.Millisecond)
		for range 2 { // the second on the pooled connection
			if _, b, err := get(context.Background(), dt, "GET", trickle.URL+"/", nil); err != nil || string(b) != "first halfother half" {
				t.Fatalf("%q %v", b, err)
			}
		}
		if n := trickle.conns.Load(); n != 1 {
			t.Fatalf("%d connections, want 1", n)
		}
	})
	t.Run("a connection idle for longer than the header timeout is reused", func(t *testing.T) {
		quick := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
		dt, _ := newDirect(t, quick.URL, 100*time.Millisecond)
		for i := range 3 {
			if _, b, err := get(context.Background(), dt, "GET", quick.URL+"/", nil); err != nil || string(b) != "ok" {
				t.Fatalf("request %d: %q %v", i, b, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if n := quick.conns.Load(); n != 1 {
			t.Fatalf("%d connections, want 1", n)
		}
	})
	t.Run("service down: a dial error", func(t *testing.T) {
		dt, _ := newDirect(t, down, time.Second)
		_, _, err := get(context.Background(), dt, "GET", down+"/", nil)
		if err == nil || upstreamProblem("x", err).Status != http.StatusServiceUnavailable {
			t.Fatalf("%v, want an error answered 503", err)
		}
	})
	t.Run("Connection: close is obeyed", func(t *testing.T) {
		dt, _ := newDirect(t, closing.URL, time.Second)
		for range 3 {
			if _, b, err := get(context.Background(), dt, "GET", closing.URL+"/", nil); err != nil || string(b) != "bye" {
				t.Fatalf("%q %v", b, err)
			}
		}
		if n := closing.conns.Load(); n != 3 || len(dt.idle) != 0 {
			t.Fatalf("%d connections for 3 requests, %d pooled: want 3 and 0", n, len(dt.idle))
		}
	})
}

func TestDirectTransportForwardsInformationalResponses(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})
	dt, _ := newDirect(t, srv.URL, time.Second)
	var got []int
	var link string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, code)
		link = h.Get("Link")
		return nil
	}}
	resp, b, err := get(httptrace.WithClientTrace(context.Background(), trace), dt, "GET", srv.URL+"/", nil)
	if err != nil || resp.StatusCode != 200 || string(b) != "final" {
		t.Fatalf("%v %v %q", resp, err, b)
	}
	if len(got) != 1 || got[0] != http.StatusEarlyHints || link == "" {
		t.Fatalf("1xx seen: %v, Link %q", got, link)
	}
}

func TestDirectTransportClosesIdleConnections(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	dt, _ := newDirect(t, srv.URL, time.Second)
	// Two connections at once, both pooled afterwards.
	r1, err := dt.RoundTrip(newGet(t, srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := dt.RoundTrip(newGet(t, srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*http.Response{r1, r2} {
		_, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	if len(dt.idle) != 2 {
		t.Fatalf("%d pooled, want 2", len(dt.idle))
	}
	dt.idle[0].idleAt = time.Now().Add(-time.Hour)
	dt.closeIdle(time.Now().Add(-time.Minute))
	if len(dt.idle) != 1 {
		t.Fatalf("%d pooled after closing the old one, want 1", len(dt.idle))
	}
	dt.close()
	if len(dt.idle) != 0 {
		t.Fatalf("%d pooled after close", len(dt.idle))
	}
	// A response read after close does not put its connection back.
	r3, err := dt.RoundTrip(newGet(t, srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(r3.Body)
	r3.Body.Close()
	if len(dt.idle) != 0 {
		t.Fatalf("%d pooled after close", len(dt.idle))
	}
}
