package httpx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/logging"
)

func TestHandleList(t *testing.T) {
	type query struct {
		Room  string
		Limit int
	}
	h := httpx.HandleList(logging.Discard(), "things", func(q *httpx.Query) query {
		return query{Room: q.ID("room_id"), Limit: q.Limit()}
	}, func(_ context.Context, q query) ([]string, string, error) {
		if q.Room == "down" {
			return nil, "", errors.New("store down")
		}
		if q.Room == "none" {
			return nil, "", nil
		}
		return []string{q.Room, fmt.Sprint(q.Limit)}, "c1", nil
	})
	tests := []struct {
		query string
		code  int
		want  string // the body, or a part of it for an error
	}{
		{"?room_id=r1&limit=2", 200, `{"things":["r1","2"],"next_cursor":"c1"}`},
		{"?room_id=none", 200, `{"things":[]}`},
		{"?room_id=a%20b&limit=x", 400, `"field":"room_id"`},
		{"?room_id=down", 500, `"status":500`},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/things"+tc.query, nil))
		body := strings.TrimSpace(rec.Body.String())
		if rec.Code != tc.code || (tc.code == 200 && body != tc.want) || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d %s", tc.query, rec.Code, body, tc.code, tc.want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/things?room_id=a%20b&limit=x", nil))
	if n := strings.Count(rec.Body.String(), `"field"`); n != 2 {
		t.Errorf("two bad parameters, %d named: %s", n, rec.Body)
	}
}

func TestHandleGet(t *testing.T) {
	r := chi.NewRouter()
	r.Get("/things/{id}", httpx.HandleGet(logging.Discard(), func(_ context.Context, id string) (map[string]string, error) {
		if id == "gone" {
			return nil, fmt.Errorf("%w: thing gone", httpx.ErrNotFound)
		}
		return map[string]string{"id": id}, nil
	}))
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/things/t1", 200, `{"id":"t1"}`},
		{"/things/gone", 404, `"status":404`},
	} {
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("GET %s: %d %s, want %d %s", tc.path, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
}
