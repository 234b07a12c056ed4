package httpx

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Page limits of every list (package paging's).
const (
	DefaultLimit = paging.DefaultLimit
	MaxLimit     = paging.MaxLimit
)

// Query reads a request's query parameters and collects every problem, so a request
// with three bad parameters hears about all three.
type Query struct {
	v        url.Values
	Problems []FieldProblem
}

// NewQuery wraps r's query parameters.
func NewQuery(r *http.Request) *Query { return &Query{v: r.URL.Query()} }

// String returns a parameter as given.
func (q *Query) String(name string) string { return q.v.Get(name) }

// Limit reads limit: default DefaultLimit, at least 1, values above MaxLimit are
// capped at MaxLimit.
func (q *Query) Limit() int {
	s := q.v.Get("limit")
	if s == "" {
		return DefaultLimit
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		q.add("limit", fmt.Sprintf("must be an integer from 1 to %d", MaxLimit))
		return DefaultLimit
	}
	return min(n, MaxLimit)
}

// ID reads an optional identifier such as a room_id: 1-128 characters of
// [A-Za-z0-9._:-]; empty when absent.
func (q *Query) ID(name string) string {
	s := q.v.Get(name)
	if s != "" && !reading.ValidID(s) {
		q.add(name, "1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	return s
}

// Type reads a reading type such as co2: lowercase a-z 0-9 _; empty when absent,
// which is a problem when required.
func (q *Query) Type(name string, required bool) string {
	s := q.v.Get(name)
	switch {
	case s == "" && required:
		q.add(name, "is required")
	case s != "" && !reading.ValidType(s):
		q.add(name, "lowercase a-z 0-9 _")
	}
	return s
}

// Buckets are the widths of the buckets a series may be cut into, by name.
var Buckets = map[string]time.Duration{
	"1m": time.Minute, "5m": 5 * time.Minute, "15m": 15 * time.Minute, "1h": time.Hour, "1d": 24 * time.Hour,
}

// Bucket reads bucket, a name of Buckets (default 1h), and returns the name and
// the width.
func (q *Query) Bucket() (string, time.Duration) {
	name := q.Enum("bucket", "1h", "1m", "5m", "15m", "1h", "1d")
	return name, Buckets[name]
}

// Time reads an RFC 3339 or Unix-milliseconds time; zero when absent.
func (q *Query) Time(name string) time.Time {
	s := q.v.Get(name)
	if s == "" {
		return time.Time{}
	}
	t, err := reading.ParseTime(s)
	if err != nil {
		q.add(name, "must be RFC 3339 or Unix milliseconds")
	}
	return t
}

// Enum reads a parameter that must be one of allowed; def when absent.
func (q *Query) Enum(name, def string, allowed ...string) string {
	s := q.v.Get(name)
	if s == "" {
		return def
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	q.add(name, fmt.Sprintf("must be one of %v", allowed))
	return def
}

// Duration reads a Go duration ("5m", "1h"); def when absent.
func (q *Query) Duration(name string, def time.Duration) time.Duration {
	s := q.v.Get(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		q.add(name, "must be a positive duration such as 5m or 1h")
		return def
	}
	return d
}

// Check adds a problem for name when bad is true.
func (q *Query) Check(bad bool, name, reason string) {
	if bad {
		q.add(name, reason)
	}
}

func (q *Query) add(field, reason string) {
	q.Problems = append(q.Problems, FieldProblem{Field: field, Reason: reason})
}

// Err is a 400 problem listing every bad parameter, or nil.
func (q *Query) Err() error {
	if len(q.Problems) == 0 {
		return nil
	}
	p := NewProblem(http.StatusBadRequest, "invalid query parameters")
	p.Errors = q.Problems
	return p
}
