package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Server is an HTTP server bound to its listener before it serves, so a caller asking
// for port 0 can read the real address.
type Server struct {
	Name string
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
}

// Listen binds addr (":0" picks a free port) for handler h.
func Listen(name, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	return &Server{
		Name: name, ln: ln, log: log,
		srv: &http.Server{
			Handler: h,
			// No ReadTimeout: it would also cut hijacked WebSocket connections. Bodies
			// are bounded in size by every handler (ReadBody, MaxBytesReader).
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler is the handler the server serves.
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	s.log.Info("listening", "server", s.Name, "addr", s.Addr())
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
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
