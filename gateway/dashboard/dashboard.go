// Package dashboard is Atrium's building dashboard: a small hand-written web page
// (HTML, CSS and JavaScript modules, no build step) embedded in the binary and
// served by the gateway at "/". The page is public; it asks for an API key, keeps it
// in the browser's localStorage and calls the same public API as any client, with
// "Authorization: Bearer <key>" (and ?access_token= on the alert WebSocket).
//
// Every file is served from memory with a strong ETag, so a browser revalidates
// cheaply; a Content-Security-Policy keeps the page to its own origin: no script,
// style, font or request may reach another host.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx"
)

//go:embed static
var static embed.FS

// AssetPrefix is the path under which the page's scripts, styles and icons are
// served; "/" serves the page itself and "/favicon.ico" the icon.
const AssetPrefix = "/ui/"

// Paths are the routes the dashboard answers, as chi patterns: all GET, all open
// (no API key), none of them part of the API.
var Paths = []string{"/", AssetPrefix + "*", "/favicon.ico"}

// policy is the Content-Security-Policy of every answer: the page's own origin
// only ('self' covers the same-origin WebSocket too), no inline script, no frames.
const policy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

type file struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the dashboard's files.
type Handler struct {
	files map[string]file // by URL path
}

var _ http.Handler = (*Handler)(nil)

// New loads the embedded files. It fails only if the binary was built without them.
func New() (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	root, err := fs.Sub(static, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ctype := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not every system's MIME table knows these
		case ".js":
			ctype = "text/javascript; charset=utf-8"
		case ".svg":
			ctype = "image/svg+xml"
		case ".webmanifest":
			ctype = "application/manifest+json"
		}
		if ctype == "" {
			ctype = http.DetectContentType(b)
		}
		h.files[AssetPrefix+p] = file{body: b, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: load assets: %w", err)
	}
	index, ok := h.files[AssetPrefix+"index.html"]
	if !ok {
		return nil, fmt.Errorf("dashboard: index.html is missing")
	}
	h.files["/"] = index
	if icon, ok := h.files[AssetPrefix+"favicon.svg"]; ok {
		h.files["/favicon.ico"] = icon
	}
	return h, nil
}

// Files lists the URL paths the handler serves, for tests and docs.
func (h *Handler) Files() []string {
	out := make([]string, 0, len(h.files))
	for p := range h.files {
		out = append(out, p)
	}
	return out
}

// ServeHTTP answers GET and HEAD for the page and its assets, 404 for anything
// else under the asset prefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+r.URL.Path))
		return
	}
	f, ok := h.files[r.URL.Path]
	if !ok || strings.HasSuffix(r.URL.Path, "/index.html") {
		httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusNotFound, "no such file: "+r.URL.Path))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.ctype)
	hd.Set("ETag", f.etag)
	// Revalidate every time: the ETag makes that a 304 while the binary is the same,
	// and a new binary's files are picked up at once.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Content-Security-Policy", policy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
