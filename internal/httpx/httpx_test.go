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
	"strings"
	"testing"
	"time"

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
		{fmt.Errorf("list sensors: sqlitestore: sensors: %w: malformed cursor", httpx.ErrInvalid), 400, false, "invalid request: malformed cursor"},
		{fmt.Errorf("mongostore: %w: sensor %q", httpx.ErrNotFound, "s1"), 404, false, `not found: sensor "s1"`},
		{fmt.Errorf("create room r1: sqlitestore: create room r1: %w", httpx.ErrConflict), 409, false, "conflict"},
		{fmt.Errorf("%w: the body did not arrive within 30s", httpx.ErrReadTimeout), 408, false, "request body timed out: the body did not arrive within 30s"},
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

// A body that does not decode is told where and why in JSON's words: never a Go
// type, a Go package or encoding/json's own phrasing.
func TestUnmarshalWording(t *testing.T) {
	type inner struct {
		Value float64 `json:"value"`
	}
	type body struct {
		Name     string     `json:"name"`
		Count    int        `json:"count"`
		On       bool       `json:"on"`
		Items    []inner    `json:"items"`
		Inner    inner      `json:"inner"`
		When     *time.Time `json:"when"`
		Tags     map[string]float64
		Duration time.Duration `json:"duration"`
	}
	tests := []struct {
		body string
		want string // in the detail
	}{
		{`{"name":1}`, "name: expected a string, got a JSON number (at byte"},
		{`{"count":"x"}`, "count: expected an integer, got a JSON string"},
		{`{"count":1.5}`, "count: expected an integer, got a JSON number"},
		{`{"on":"yes"}`, "on: expected true or false, got a JSON string"},
		{`{"items":{}}`, "items: expected an array, got a JSON object"},
		{`{"items":[{"value":"21.5"}]}`, "items.value: expected a number, got a JSON string"},
		{`{"inner":[]}`, "inner: expected an object, got a JSON array"},
		{`[1]`, "body: expected an object, got a JSON array"},
		{`{"when":"noon"}`, `expected an RFC 3339 time such as 2026-01-02T15:04:05Z, got "noon"`},
		{`{"when":12}`, "expected an RFC 3339 time"},
		{`{"Tags":{"a":"b"}}`, "Tags: expected a number, got a JSON string"},
		{`{"name":"x"`, "malformed JSON at byte"},
		{`{"name":"x"}}`, "malformed JSON at byte 13: invalid character '}' after top-level value"},
		{``, "malformed JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.body, func(t *testing.T) {
			var v body
			err := httpx.Unmarshal([]byte(tc.body), &v)
			var p *httpx.Problem
			if !errors.As(err, &p) || p.Status != 400 {
				t.Fatalf("got %v, want a 400 problem", err)
			}
			if !strings.Contains(p.Detail, tc.want) {
				t.Errorf("detail %q, want it to contain %q", p.Detail, tc.want)
			}
			for _, leak := range []string{"Go ", "go value", "float64", "int64", "struct", "httpx_test", "time.Time", "json:", "[]", "2006-01-02"} {
				if strings.Contains(p.Detail, leak) {
					t.Errorf("detail %q shows %q", p.Detail, leak)
				}
			}
		})
	}
}

func TestList(t *testing.T) {
	type item struct {
		ID string `json:"id"`
	}
	tests := []struct {
		name  string
		items []item
		next  string
		want  string
	}{
		{"none", nil, "", `{"rooms":[]}`},
		{"last page", []item{{"a"}}, "", `{"rooms":[{"id":"a"}]}`},
		{"more", []item{{"a"}, {"b"}}, "Yg", `{"rooms":[{"id":"a"},{"id":"b"}],"next_cursor":"Yg"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpx.List(rec, "rooms", tc.items, tc.next)
			if got := strings.TrimSpace(rec.Body.String()); rec.Code != 200 || got != tc.want {
				t.Errorf("%d %s, want 200 %s", rec.Code, got, tc.want)
			}
		})
	}
}

func TestQueryID(t *testing.T) {
	req := httptest.NewRequest("GET", "/x?room_id=room-101&site=a%20b", nil)
	q := httpx.NewQuery(req)
	if got := q.ID("room_id"); got != "room-101" {
		t.Errorf("room_id = %q", got)
	}
	if got := q.ID("sensor_id"); got != "" {
		t.Errorf("absent sensor_id = %q", got)
	}
	q.ID("site")
	if len(q.Problems) != 1 || q.Problems[0].Field != "site" {
		t.Errorf("problems %+v, want one about site", q.Problems)
	}
}

func TestQueryType(t *testing.T) {
	for _, tc := range []struct {
		query, want string
		required    bool
		problem     bool
	}{
		{"?type=co2", "co2", true, false},
		{"", "", false, false},
		{"", "", true, true},
		{"?type=CO2", "CO2", false, true},
	} {
		q := httpx.NewQuery(httptest.NewRequest("GET", "/x"+tc.query, nil))
		if got := q.Type("type", tc.required); got != tc.want || (len(q.Problems) == 1 && q.Problems[0].Field == "type") != tc.problem {
			t.Errorf("%q (required %v): %q, problems %+v", tc.query, tc.required, got, q.Problems)
		}
	}
}

func TestQueryBucket(t *testing.T) {
	for query, want := range map[string]time.Duration{"?bucket=15m": 15 * time.Minute, "?bucket=1d": 24 * time.Hour, "": time.Hour} {
		q := httpx.NewQuery(httptest.NewRequest("GET", "/x"+query, nil))
		if name, width := q.Bucket(); width != want || httpx.Buckets[name] != want || len(q.Problems) != 0 {
			t.Errorf("%q: %s %s, problems %+v", query, name, width, q.Problems)
		}
	}
	q := httpx.NewQuery(httptest.NewRequest("GET", "/x?bucket=7m", nil))
	if name, _ := q.Bucket(); name != "1h" || len(q.Problems) != 1 || q.Problems[0].Field != "bucket" {
		t.Errorf("bucket=7m: %s, problems %+v", name, q.Problems)
	}
}
