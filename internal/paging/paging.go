// Package paging is how every list of Atrium is cut into pages: the page size a
// store returns for a requested limit, and the opaque cursor that resumes a
// list where a page ended. HTTP handlers and stores share it; it knows nothing
// of either.
package paging

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/atrium-iot/atrium/internal/apperr"
)

// Page limits of every list.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Size is the page a store returns for a requested limit: DefaultLimit for 0
// or less, at most MaxLimit.
func Size(limit int) int {
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

// DecodeCursor reads a cursor made by EncodeCursor into v. Anything else,
// including unknown fields, is an error wrapping apperr.ErrInvalid.
func DecodeCursor(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
	}
	if err != nil {
		return fmt.Errorf("%w: malformed cursor", apperr.ErrInvalid)
	}
	return nil
}
