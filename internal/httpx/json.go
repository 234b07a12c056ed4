package httpx

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// DefaultMaxBody is the default limit on a request body, after decompression.
const DefaultMaxBody = 8 << 20

// JSON writes v as application/json with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	writeJSON(w, "application/json", status, v)
}

func writeJSON(w http.ResponseWriter, ctype string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		ctype = "application/problem+json"
	}
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// ReadBody reads the whole request body, inflating it when Content-Encoding is gzip.
// Both the body on the wire and the inflated body are bounded by max: past it the
// answer is ErrTooLarge, whatever the compression ratio.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxBody
	}
	if r.ContentLength > max {
		return nil, fmt.Errorf("%w: %d bytes, at most %d accepted", ErrTooLarge, r.ContentLength, max)
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, max)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, wrapBodyErr(err, max)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, &Problem{Type: "about:blank", Title: http.StatusText(http.StatusUnsupportedMediaType),
			Status: http.StatusUnsupportedMediaType, Detail: fmt.Sprintf("Content-Encoding %q is not supported; use gzip or none", enc)}
	}
	b, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return nil, wrapBodyErr(err, max)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: inflated body exceeds %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

func wrapBodyErr(err error, max int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: at most %d bytes accepted", ErrTooLarge, max)
	}
	return fmt.Errorf("%w: reading body: %v", ErrInvalid, err)
}

// Decode reads a bounded JSON body into a T. Unknown fields are allowed, trailing
// data is not.
func Decode[T any](w http.ResponseWriter, r *http.Request, max int64) (T, error) {
	var v T
	b, err := ReadBody(w, r, max)
	if err != nil {
		return v, err
	}
	if err := Unmarshal(b, &v); err != nil {
		return v, err
	}
	return v, nil
}

// Validator is a value that can check itself after decoding.
type Validator interface {
	Valid() []FieldProblem
}

// DecodeValid is Decode followed by the value's own checks, answered as a 400
// problem with one entry per field.
func DecodeValid[T Validator](w http.ResponseWriter, r *http.Request, max int64) (T, error) {
	v, err := Decode[T](w, r, max)
	if err != nil {
		return v, err
	}
	if probs := v.Valid(); len(probs) > 0 {
		p := NewProblem(http.StatusBadRequest, "the request has invalid fields")
		p.Errors = probs
		return v, p
	}
	return v, nil
}

// Unmarshal decodes JSON and turns syntax and type errors into a 400 problem that
// says where the body went wrong.
func Unmarshal(b []byte, v any) error {
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return NewProblem(http.StatusBadRequest, fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return NewProblem(http.StatusBadRequest, fmt.Sprintf("%s: expected %s, got JSON %s", field, te.Type, te.Value))
	default:
		return NewProblem(http.StatusBadRequest, "malformed JSON: "+err.Error())
	}
}
