package httpx_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/logging"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func TestReadBody(t *testing.T) {
	const max = 1024
	tests := []struct {
		name     string
		body     []byte
		encoding string
		status   int // 0: accepted
	}{
		{"plain", []byte(`{"a":1}`), "", 0},
		{"at the limit", bytes.Repeat([]byte("x"), max), "", 0},
		{"over the limit", bytes.Repeat([]byte("x"), max+1), "", 413},
		{"gzip", gz([]byte(`{"a":1}`)), "gzip", 0},
		{"gzip inflating past the limit", gz(bytes.Repeat([]byte(" "), 100*max)), "gzip", 413},
		{"not gzip", []byte("plain"), "gzip", 400},
		{"unknown encoding", []byte("x"), "br", 415},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := httpx.ReadBody(w, r, max)
				if err != nil {
					httpx.Error(w, r, logging.Discard(), err)
					return
				}
				_, _ = w.Write(b)
			})
			req := httptest.NewRequest("POST", "/x", bytes.NewReader(tc.body))
			if tc.encoding != "" {
				req.Header.Set("Content-Encoding", tc.encoding)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if tc.status == 0 {
				if rec.Code != 200 {
					t.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
				return
			}
			var p httpx.Problem
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != "application/problem+json" || json.Unmarshal(rec.Body.Bytes(), &p) != nil || p.Status != tc.status {
				t.Fatalf("got %d %q %s, want a %d problem", rec.Code, rec.Header().Get("Content-Type"), rec.Body, tc.status)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		retryAfter bool
		detail     string
	}{
		{fmt.Errorf("%w: room r1", httpx.ErrNotFound), 404, false, "not found: room r1"},
		{fmt.Errorf("%w: bad", httpx.ErrInvalid), 400, false, "invalid request: bad"},
		{httpx.ErrConflict, 409, false, "conflict"},
		{fmt.Errorf("db: %w", httpx.ErrUnavailable), 503, true, "the service is temporarily unavailable; retry later"},
		{errors.New("disk on fire"), 500, false, "internal error"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpx.Error(rec, httptest.NewRequest("GET", "/x", nil), logging.Discard(), tc.err)
			var p httpx.Problem
			_ = json.NewDecoder(io.LimitReader(rec.Body, 1<<16)).Decode(&p)
			if rec.Code != tc.status || p.Detail != tc.detail || (rec.Header().Get("Retry-After") != "") != tc.retryAfter {
				t.Fatalf("got %d %q Retry-After %q", rec.Code, p.Detail, rec.Header().Get("Retry-After"))
			}
		})
	}
}
