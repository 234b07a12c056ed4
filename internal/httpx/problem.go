// Package httpx is the HTTP plumbing every Atrium service shares: bounded JSON and
// gzip bodies, RFC 9457 problem details, access logs, request ids, Prometheus
// metrics per route, health endpoints and a server that shuts down in order.
package httpx

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// The kinds of failure of package apperr, which Error maps to HTTP statuses,
// under the names handlers use. Wrap them with detail:
// fmt.Errorf("%w: room %q", httpx.ErrNotFound, id). Code below the HTTP layer
// (stores, domain packages) uses apperr itself.
var (
	ErrNotFound    = apperr.ErrNotFound
	ErrInvalid     = apperr.ErrInvalid
	ErrConflict    = apperr.ErrConflict
	ErrTooLarge    = apperr.ErrTooLarge
	ErrUnavailable = apperr.ErrUnavailable
)

// FieldProblem is one per-field problem in a problem+json body.
type FieldProblem struct {
	Field  string `json:"field,omitempty"`
	Index  *int   `json:"index,omitempty"`
	Reason string `json:"reason"`
}

// Problem is an RFC 9457 problem details object. It is also an error, so handlers
// can return one with its exact status and fields.
type Problem struct {
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Status     int            `json:"status"`
	Detail     string         `json:"detail,omitempty"`
	Instance   string         `json:"instance,omitempty"`
	Errors     []FieldProblem `json:"errors,omitempty"`
	RetryAfter time.Duration  `json:"-"`
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

// NewProblem makes a problem of the given status with a detail message.
func NewProblem(status int, detail string) *Problem {
	return &Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// WriteProblem writes p as application/problem+json.
func WriteProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((p.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, "application/problem+json", p.Status, p)
}

// Error answers err as problem+json: the one place that maps errors to statuses.
// 5xx bodies stay generic; the detail goes to the log. An error wrapping one of the
// sentinels tells the client the sentinel and what was said after it
// (fmt.Errorf("%w: room %q", ErrNotFound, id)); what the layers above it added —
// the operation, the store's package — stays out of the answer.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *Problem
	switch {
	case errors.As(err, &p):
	case errors.Is(err, ErrNotFound):
		p = NewProblem(http.StatusNotFound, publicDetail(err, ErrNotFound))
	case errors.Is(err, ErrInvalid):
		p = NewProblem(http.StatusBadRequest, publicDetail(err, ErrInvalid))
	case errors.Is(err, ErrConflict):
		p = NewProblem(http.StatusConflict, publicDetail(err, ErrConflict))
	case errors.Is(err, ErrTooLarge):
		p = NewProblem(http.StatusRequestEntityTooLarge, publicDetail(err, ErrTooLarge))
	case errors.Is(err, ErrReadTimeout):
		p = NewProblem(http.StatusRequestTimeout, publicDetail(err, ErrReadTimeout))
		w.Header().Set("Connection", "close")
	case errors.Is(err, ErrUnavailable):
		p = NewProblem(http.StatusServiceUnavailable, "the service is temporarily unavailable; retry later")
		p.RetryAfter = 2 * time.Second
	default:
		p = NewProblem(http.StatusInternalServerError, "internal error")
	}
	if p.Status >= 500 && log != nil {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err, "request_id", RequestID(r.Context()))
	}
	WriteProblem(w, r, p)
}

// publicDetail is the part of err's text from sentinel's own on: "list sensors:
// sqlitestore: sensors: invalid request: malformed cursor" tells the client
// "invalid request: malformed cursor".
func publicDetail(err, sentinel error) string {
	msg, s := err.Error(), sentinel.Error()
	for i := 0; ; {
		j := strings.Index(msg[i:], s)
		if j < 0 {
			return s
		}
		if i += j; i == 0 || strings.HasSuffix(msg[:i], ": ") {
			return msg[i:]
		}
		i += len(s)
	}
}
