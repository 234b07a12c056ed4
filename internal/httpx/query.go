package httpx

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// Page limits of every list.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
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

// PageSize is the page a store returns for a requested limit: DefaultLimit for 0
// or less, at most MaxLimit.
func PageSize(limit int) int {
	switch {
	case limit <= 0:
		return DefaultLimit
	case limit > MaxLimit:
		return MaxLimit
	}
	return limit
}

// EncodeCursor makes an opaque page cursor of v (a small struct of strings and
// numbers): base64url of its JSON.
func EncodeCursor(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reads a cursor made by EncodeCursor into v. Anything else, including
// unknown fields, is an error wrapping ErrInvalid.
func DecodeCursor(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		return fmt.Errorf("%w: malformed cursor", ErrInvalid)
	}
	return nil
}
