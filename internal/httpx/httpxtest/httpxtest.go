// Package httpxtest holds what the tests of HTTP servers share: a client that
// sends its body slower than any read timeout, and a scrape of /metrics.
package httpxtest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Trickle sends a request to addr whose body of size bytes ("{" and spaces) comes
// one byte every gap, until the server answers or closes. head is the request line
// and headers, each ending in CRLF, without Content-Length. It returns the answer,
// its body and how long the answer took, and fails the test when no answer comes
// within 30 s, or when the connection stays open after a 408: the rest of the body
// is not waited for.
func Trickle(t testing.TB, addr, head string, size int, gap time.Duration) (*http.Response, []byte, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\n{", head, size); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(gap)
		defer tick.Stop()
		for range size - 1 {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer after %s: %v", time.Since(start), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	// After a 408 the connection is closed (an EOF, or a reset as the client's
	// bytes keep coming).
	if _, err := br.ReadByte(); resp.StatusCode == http.StatusRequestTimeout && (err == nil || isTimeout(err)) {
		t.Errorf("connection still open after the answer: %v", err)
	}
	return resp, body, took
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
