package agent

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/atrium-iot/atrium/internal/tlsx"
)

// newCloudClient is the forwarder's HTTP client: it trusts -cloud-ca (instead of
// the system's CAs) and shows -cloud-cert, reloaded when its files change, until
// ctx ends. Its TLS failures say what failed (which certificate, which CA, which
// name, expired when): they reach the log, /status and /readyz as the forwarder's
// errors, while the spool keeps every reading.
func newCloudClient(ctx context.Context, cfg Config, log *slog.Logger) (*http.Client, error) {
	c, err := tlsx.NewClient("-cloud-ca", cfg.CloudCA, cfg.CloudCert, cfg.CloudKey, log)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.Config
	if c.Cert != nil {
		go func() { _ = c.Cert.Run(ctx, 0, nil) }()
	}
	return &http.Client{Transport: c.Explaining(tr)}, nil
}

// tlsClientAuth is -tls-client-auth for the broker: none without -tls-client-ca.
func tlsClientAuth(cfg Config) string {
	if cfg.TLSClientCA == "" {
		return ""
	}
	return cfg.TLSClientAuth
}

// TLSAddr is the address the broker's TLS listener is bound to ("" without one).
func (a *Agent) TLSAddr() string { return a.broker.TLSAddr() }
