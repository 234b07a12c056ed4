package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// ErrReadTimeout is a request body that did not arrive in time: Error answers it 408.
var ErrReadTimeout = errors.New("request body timed out")

type bodyKey struct{}

// BodyDeadline bounds how long the body of a request may take to arrive: d from
// the moment the handler is called, after which reading the body fails with an
// error wrapping ErrReadTimeout (ReadBody passes it on, Error answers 408) and the
// connection is closed after the answer. A client sending one byte a second holds
// a connection for d, not forever.
//
// Only requests with a body get a deadline, and it is lifted once the body is read
// to its end: a request without a body (a GET, a WebSocket upgrade) and the time
// a handler takes after reading are not bounded by it. A writer that cannot set a
// read deadline (a test recorder) leaves the request unbounded. d ≤ 0 disables it.
func BodyDeadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if d <= 0 {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
				next.ServeHTTP(w, r)
				return
			}
			if _, ok := r.Context().Value(bodyKey{}).(*deadlineBody); ok {
				next.ServeHTTP(w, r) // bounded already, by a server in front
				return
			}
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
				next.ServeHTTP(w, r)
				return
			}
			b := &deadlineBody{ReadCloser: r.Body, rc: rc, d: d}
			r2 := r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
			r2.Body = b
			next.ServeHTTP(w, r2)
		})
	}
}

// BodyTimedOut is the error wrapping ErrReadTimeout when reading r's body hit the
// deadline BodyDeadline set, else nil: for a handler that hands the body on (a
// reverse proxy) and sees some other error.
func BodyTimedOut(r *http.Request) error {
	if b, ok := r.Context().Value(bodyKey{}).(*deadlineBody); ok && b.timedOut.Load() {
		return b.err()
	}
	return nil
}

// deadlineBody is a request body under a read deadline.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	d        time.Duration
	done     atomic.Bool // read to its end: the deadline is lifted
	timedOut atomic.Bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		// The server now reads ahead for the next request, or for the client
		// going away: with the deadline left, it would take its passing for the
		// client gone and cancel the request still being served.
		if b.done.CompareAndSwap(false, true) {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	case isTimeout(err):
		b.timedOut.Store(true)
		err = b.err()
	}
	return n, err
}

func (b *deadlineBody) err() error {
	return fmt.Errorf("%w: the body did not arrive within %s", ErrReadTimeout, b.d)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
