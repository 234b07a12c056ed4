package httpx

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// JSONType is the media type of every Atrium request body.
const JSONType = "application/json"

// RequireContentType answers 415 problem+json to a POST, PUT or PATCH with a body
// whose Content-Type is not one of types (matched case-insensitively; parameters
// such as charset=utf-8 are allowed and not checked). A body that is declared as something else — a form, text/plain, or
// nothing at all, as `curl -d` and a browser's plain form send — is not read as
// JSON. A request without a body (Content-Length: 0, such as
// POST /alerts/{id}/ack) needs no Content-Type. On a chi router it lets requests
// that match no route through, so they get their 404 or 405.
func RequireContentType(types ...string) func(http.Handler) http.Handler {
	accept := strings.Join(types, ", ")
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodPost, http.MethodPut, http.MethodPatch:
			default:
				next.ServeHTTP(w, r)
				return
			}
			if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
				next.ServeHTTP(w, r)
				return
			}
			ct := r.Header.Get("Content-Type")
			mt, _, _ := strings.Cut(ct, ";")
			mt = strings.TrimSpace(mt)
			for _, t := range types {
				if strings.EqualFold(mt, t) {
					next.ServeHTTP(w, r)
					return
				}
			}
			if rc := chi.RouteContext(r.Context()); rc != nil && rc.Routes != nil && !rc.Routes.Match(chi.NewRouteContext(), r.Method, routePath(r, rc)) {
				next.ServeHTTP(w, r)
				return
			}
			detail := fmt.Sprintf("a request body must be sent as %s; it came without a Content-Type", accept)
			if ct != "" {
				detail = fmt.Sprintf("a request body must be sent as %s, not %q", accept, truncate(ct, 64))
			}
			switch r.Method {
			case http.MethodPost:
				w.Header().Set("Accept-Post", accept)
			case http.MethodPatch:
				w.Header().Set("Accept-Patch", accept)
			}
			WriteProblem(w, r, NewProblem(http.StatusUnsupportedMediaType, detail))
		})
	}
}

// routePath is the path chi routes r by.
func routePath(r *http.Request, rc *chi.Context) string {
	switch {
	case rc.RoutePath != "":
		return rc.RoutePath
	case r.URL.RawPath != "":
		return r.URL.RawPath
	}
	return r.URL.Path
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
