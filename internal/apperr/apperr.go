// Package apperr holds the kinds of failure every layer of Atrium shares: a
// store, a domain package or a handler wraps one of them with detail
// (fmt.Errorf("%w: room %q", apperr.ErrNotFound, id)) and callers match it with
// errors.Is. It imports nothing of HTTP: internal/httpx maps the kinds to
// statuses, in one place (httpx.Error).
package apperr

import "errors"

var (
	// ErrNotFound: what was asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the input is malformed or breaks a rule.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the input contradicts what is stored (an id taken, a key
	// reused for something else).
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: the input is over a limit.
	ErrTooLarge = errors.New("request body too large")
	// ErrUnavailable: a store or the bus cannot answer now; retrying later may
	// succeed.
	ErrUnavailable = errors.New("temporarily unavailable")
)
