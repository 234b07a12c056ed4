package cloud

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/atrium-iot/atrium/internal/tlsx"
)

// setupTLS loads -tls-cert (reloaded by a loop of the App: every
// -tls-reload-interval and on SIGHUP), -client-ca and -upstream-ca.
func (a *App) setupTLS(targets []part) error {
	for _, p := range targets {
		if p.name == "gateway" {
			a.gateway = true
		}
	}
	if a.cfg.UpstreamCA != "" {
		c, err := tlsx.NewClient("-upstream-ca", a.cfg.UpstreamCA, "", "", a.log)
		if err != nil {
			return err
		}
		a.upstreamTLS = c.Config
	}
	if a.cfg.TLSCert == "" {
		return nil
	}
	r, err := tlsx.NewReloader(a.cfg.TLSCert, a.cfg.TLSKey, a.log.With("part", "tls"))
	if err != nil {
		return fmt.Errorf("-tls-cert: %w", err)
	}
	a.cert = r
	if a.cfg.ClientCA != "" {
		if a.clientCAs, err = tlsx.LoadCAs(a.cfg.ClientCA); err != nil {
			return fmt.Errorf("-client-ca: %w", err)
		}
	}
	a.loops = append(a.loops, func(ctx context.Context) error {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		return r.Run(ctx, a.cfg.TLSReload, hup)
	})
	return nil
}

// serverTLS is the TLS configuration of a part's port, nil for plain HTTP: the
// gateway serves HTTPS with -tls-cert (and takes client certificates of
// -client-ca); the services do only in a process without the gateway, as the
// gateway in the same process reaches them over loopback.
func (a *App) serverTLS(part string) *tls.Config {
	switch {
	case a.cert == nil:
		return nil
	case part == "gateway":
		return tlsx.ServerConfig(a.cert, a.clientCAs)
	case !a.gateway:
		return tlsx.ServerConfig(a.cert, nil)
	}
	return nil
}

// upstreamClient is the HTTP client a service uses to call another part.
func (a *App) upstreamClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if a.upstreamTLS != nil {
		tr.TLSClientConfig = a.upstreamTLS
	}
	return &http.Client{Timeout: timeout, Transport: tr}
}
