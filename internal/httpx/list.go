package httpx

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
)

// HandleList is the handler of a list endpoint that a store pages: query reads
// the request's parameters into a Q (any bad one answers 400 with all of them),
// list reads one page for it, and the page answers as List names it, with
// next_cursor when there is more.
func HandleList[Q, T any](log *slog.Logger, name string, query func(*Query) Q, list func(context.Context, Q) ([]T, string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := NewQuery(r)
		lq := query(q)
		if err := q.Err(); err != nil {
			Error(w, r, log, err)
			return
		}
		items, next, err := list(r.Context(), lq)
		if err != nil {
			Error(w, r, log, fmt.Errorf("list %s: %w", name, err))
			return
		}
		List(w, name, items, next)
	}
}

// HandleGet is the handler of GET of one thing named by the path's {id}: get
// reads it, and an error answers as Error maps it (get words a missing thing as
// the client should read it).
func HandleGet[T any](log *slog.Logger, get func(ctx context.Context, id string) (T, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := get(r.Context(), chi.URLParam(r, "id"))
		if err != nil {
			Error(w, r, log, err)
			return
		}
		JSON(w, http.StatusOK, v)
	}
}
