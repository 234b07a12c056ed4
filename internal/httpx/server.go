package httpx

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultReadTimeout bounds how long a request body may take to arrive.
const DefaultReadTimeout = 30 * time.Second

// maxHeaderTimeout bounds how long a request's line and headers may take to arrive.
const maxHeaderTimeout = 10 * time.Second

// Server is an HTTP server bound to its listener before it serves, so a caller asking
// for port 0 can read the real address.
type Server struct {
	Name string
	srv  *http.Server
	h    http.Handler
	ln   net.Listener
	log  *slog.Logger
	tls  bool
}

// ServerOption changes how Listen serves.
type ServerOption func(*serverConfig)

type serverConfig struct {
	readTimeout time.Duration
	tls         *tls.Config
}

// WithTLS serves HTTPS with c (HTTP/2 offered when c.NextProtos has "h2").
func WithTLS(c *tls.Config) ServerOption {
	return func(sc *serverConfig) { sc.tls = c }
}

// WithReadTimeout bounds how long a request body may take to arrive, from the
// moment the request's headers are in (default DefaultReadTimeout; ≤0: no bound).
// Past it the request is answered 408 (see BodyDeadline). The request line and
// headers have their own, shorter bound: at most 10 s, and never more than d.
func WithReadTimeout(d time.Duration) ServerOption {
	return func(c *serverConfig) { c.readTimeout = d }
}

// Listen binds addr (":0" picks a free port) for handler h.
func Listen(name, addr string, h http.Handler, log *slog.Logger, opts ...ServerOption) (*Server, error) {
	cfg := serverConfig{readTimeout: DefaultReadTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	headerTimeout := maxHeaderTimeout
	if cfg.readTimeout > 0 && cfg.readTimeout < headerTimeout {
		headerTimeout = cfg.readTimeout
	}
	s := &Server{
		Name: name, ln: ln, log: log, h: h, tls: cfg.tls != nil,
		srv: &http.Server{
			Handler: BodyDeadline(cfg.readTimeout)(h),
			// No ReadTimeout: it runs from the first byte of a request to the end
			// of its body, so it would also cut a hijacked WebSocket, and once the
			// body is read the server's background read, hitting it, cancels the
			// context of a request still being served. BodyDeadline bounds the
			// body instead, and answers 408.
			ReadHeaderTimeout: headerTimeout,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			TLSConfig:         cfg.tls,
		},
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the handler the server serves, without the server's own body
// deadline (a gateway serving it in-process applies its own).
func (s *Server) Handler() http.Handler { return s.h }

// URL is the server's base URL.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	s.log.Info("listening", "server", s.Name, "addr", s.Addr(), "tls", s.tls)
	serve := func() error { return s.srv.Serve(s.ln) }
	if s.tls {
		// The certificate comes from the TLSConfig (GetCertificate).
		serve = func() error { return s.srv.ServeTLS(s.ln, "", "") }
	}
	if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s: serve: %w", s.Name, err)
	}
	return nil
}

// Shutdown stops accepting and waits for in-flight requests until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("%s: shutdown: %w", s.Name, err)
	}
	return nil
}
