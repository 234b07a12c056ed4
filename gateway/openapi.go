package gateway

import (
	_ "embed"
	"net/http"
	"strconv"
)

// OpenAPI is the OpenAPI 3 document of Atrium's whole public API, as served at
// GET /openapi.json. A test holds it to the routes the services register.
//
//go:embed openapi.json
var OpenAPI []byte

func handleOpenAPI() http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Content-Length", strconv.Itoa(len(OpenAPI)))
		_, _ = w.Write(OpenAPI)
	}
}
