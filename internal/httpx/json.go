package httpx

import (
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxBody is the default limit on a request body, after decompression.
const DefaultMaxBody = 8 << 20

// JSON writes v as application/json with the given status.
func JSON(w http.ResponseWriter, status int, v any) {
	writeJSON(w, "application/json", status, v)
}

// List writes one page of a list as 200 application/json: an object naming its
// items, {"<name>": [...], "next_cursor": "..."}. The items are never null, and
// next_cursor is there only when there is more.
func List[T any](w http.ResponseWriter, name string, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	JSON(w, http.StatusOK, page{name: name, items: items, next: next})
}

// page is what List writes, in that order.
type page struct {
	name  string
	items any
	next  string
}

func (p page) MarshalJSON() ([]byte, error) {
	name, err := json.Marshal(p.name)
	if err != nil {
		return nil, err
	}
	items, err := json.Marshal(p.items)
	if err != nil {
		return nil, err
	}
	b := append([]byte{'{'}, name...)
	b = append(append(b, ':'), items...)
	if p.next != "" {
		next, _ := json.Marshal(p.next)
		b = append(append(b, `,"next_cursor":`...), next...)
	}
	return append(b, '}'), nil
}

func writeJSON(w http.ResponseWriter, ctype string, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		ctype = "application/problem+json"
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", ctype)
	// Declared, so a HEAD answer carries the length its GET would.
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
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
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: at most %d bytes accepted", ErrTooLarge, max)
	case errors.Is(err, ErrReadTimeout):
		return err
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("%w: the body is not valid gzip", ErrInvalid)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: the body ended early", ErrInvalid)
	}
	var corrupt flate.CorruptInputError
	if errors.As(err, &corrupt) {
		return fmt.Errorf("%w: the body is not valid gzip (corrupt at byte %d)", ErrInvalid, int64(corrupt))
	}
	return fmt.Errorf("%w: the body could not be read", ErrInvalid)
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
// says where the body went wrong, in the words of JSON: the field, what it should
// be, what it was, the byte offset — never a Go type.
func Unmarshal(b []byte, v any) error {
	err := json.Unmarshal(b, v)
	if err == nil {
		return nil
	}
	return NewProblem(http.StatusBadRequest, jsonDetail(err))
}

// jsonDetail words a decoding error for the client.
func jsonDetail(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var pe *time.ParseError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		got := te.Value
		if i := strings.IndexByte(got, ' '); i > 0 {
			got = got[:i] // "number -1": the kind is enough
		}
		return fmt.Sprintf("%s: expected %s, got a JSON %s (at byte %d)", field, jsonType(te.Type), got, te.Offset)
	case errors.As(err, &pe):
		return fmt.Sprintf("expected an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", pe.Value)
	case strings.HasPrefix(err.Error(), "Time.UnmarshalJSON"):
		return "expected an RFC 3339 time such as 2026-01-02T15:04:05Z, as a string"
	case strings.HasPrefix(err.Error(), "json: "):
		// encoding/json's other errors name Go types: say no more than this.
		return "malformed JSON"
	default:
		// A field's own decoder (reading.Time, a rule's duration), in its words.
		return "invalid JSON value: " + err.Error()
	}
}

// jsonType names what a Go type takes in JSON.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Time]() {
		return "an RFC 3339 time"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return "a value"
	}
}
