// Package tlsx is Atrium's TLS plumbing over crypto/tls and crypto/x509: a
// certificate that follows its files (Reloader), CA bundles, the server and client
// configurations the programs use, and certificate errors told in words (Explain).
package tlsx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultReloadInterval is how often a Reloader looks at its files.
const DefaultReloadInterval = 2 * time.Second

// Reloader holds a certificate and its key, loaded from PEM files (the certificate
// file may hold the chain after the leaf), and loads them again when their content
// changes. A new pair that does not load — unreadable, not matching, expired or not
// yet valid — leaves the previous one in use and is logged once.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	cur atomic.Pointer[tls.Certificate]

	mu      sync.Mutex
	sum     [sha256.Size]byte // of the files' content last tried, good or bad
	lastErr string            // the last refusal logged, so that it is logged once
}

// NewReloader loads the pair; a pair that does not load is an error.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	if _, err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Certificate is the pair in use.
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load() }

// GetCertificate is for tls.Config.GetCertificate (a server's certificate).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate (a client's certificate).
func (r *Reloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// Reload loads the files when their content changed since the last try. It
// reports whether a new pair is in use; on an error the previous pair stays.
func (r *Reloader) Reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, r.refuse(fmt.Errorf("tls: read certificate: %w", err))
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return false, r.refuse(fmt.Errorf("tls: read key: %w", err))
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if sum == r.sum && r.cur.Load() != nil {
		return false, nil
	}
	r.sum = sum
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, r.refuse(fmt.Errorf("tls: %s and %s: %w", r.certFile, r.keyFile, err))
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false, r.refuse(fmt.Errorf("tls: %s: %w", r.certFile, err))
		}
		cert.Leaf = leaf
	}
	now := r.now()
	switch {
	case now.After(leaf.NotAfter):
		return false, r.refuse(fmt.Errorf("tls: %s: the certificate of %s expired at %s", r.certFile, Name(leaf), leaf.NotAfter.UTC().Format(time.RFC3339)))
	case now.Before(leaf.NotBefore):
		return false, r.refuse(fmt.Errorf("tls: %s: the certificate of %s is not valid before %s", r.certFile, Name(leaf), leaf.NotBefore.UTC().Format(time.RFC3339)))
	}
	first := r.cur.Load() == nil
	r.cur.Store(&cert)
	r.lastErr = ""
	if !first {
		r.log.Info("certificate reloaded", "cert_file", r.certFile, "subject", Name(leaf), "serial", leaf.SerialNumber.String(),
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return true, nil
}

// refuse logs a pair that did not load, once for the same reason, unless none is
// in use yet, where the error is the caller's.
func (r *Reloader) refuse(err error) error {
	if r.cur.Load() != nil && err.Error() != r.lastErr {
		r.lastErr = err.Error()
		r.log.Error("certificate not reloaded, keeping the previous one", "cert_file", r.certFile, "key_file", r.keyFile, "err", err)
	}
	return err
}

// Run reloads the pair every interval (≤0: DefaultReloadInterval) and whenever
// trigger receives (e.g. on SIGHUP), until ctx ends.
func (r *Reloader) Run(ctx context.Context, interval time.Duration, trigger <-chan os.Signal) error {
	if interval <= 0 {
		interval = DefaultReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-trigger:
			r.log.Info("reloading certificate on signal", "cert_file", r.certFile)
		}
		_, _ = r.Reload() // a failure is logged by Reload
	}
}

// LoadCAs reads a PEM bundle of CA certificates; a file without any is an error.
func LoadCAs(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls: CA bundle %s: certificate %d: %w", file, n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tls: CA bundle %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// caNames lists the subjects of a PEM bundle, for messages.
func caNames(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	var names []string
	for rest := bytes.TrimSpace(b); ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			names = append(names, c.Subject.String())
		}
	}
	return strings.Join(names, "; ")
}

// ServerConfig serves r's certificate: TLS 1.2 at least, HTTP/2 offered.
// clientCAs, when not nil, verifies client certificates that are given (a client
// may also come without one); a certificate that does not verify fails the
// handshake.
func ServerConfig(r *Reloader, clientCAs *x509.CertPool) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if clientCAs != nil {
		c.ClientCAs = clientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return c
}

// Client is the TLS side of an HTTPS client: whom it trusts and which
// certificate it shows.
type Client struct {
	Config *tls.Config
	// Cert is the client certificate, reloaded by its Run; nil without one.
	Cert *Reloader
	// Trust says whom Config trusts, for messages: "the CAs of -cloud-ca FILE
	// (CN=…)" or "the system's CAs".
	Trust string
}

// NewClient makes the TLS configuration of a client: caFile, when set, is the CA
// bundle trusted instead of the system's; certFile and keyFile, when set, the
// client certificate, reloaded when they change. flag names the CA option in
// messages (e.g. "-cloud-ca").
func NewClient(flag, caFile, certFile, keyFile string, log *slog.Logger) (*Client, error) {
	c := &Client{Config: &tls.Config{MinVersion: tls.VersionTLS12}, Trust: "the system's CAs"}
	if caFile != "" {
		pool, err := LoadCAs(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flag, err)
		}
		c.Config.RootCAs = pool
		c.Trust = fmt.Sprintf("the CAs of %s %s (%s)", flag, caFile, caNames(caFile))
	}
	switch {
	case certFile != "" && keyFile != "":
		r, err := NewReloader(certFile, keyFile, log)
		if err != nil {
			return nil, err
		}
		c.Cert = r
		c.Config.GetClientCertificate = r.GetClientCertificate
	case certFile != "" || keyFile != "":
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	return c, nil
}

// Name is how a certificate is named in messages: its CN, else its first SAN, else
// its whole subject.
func Name(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return fmt.Sprintf("%q", c.Subject.CommonName)
	case len(c.URIs) > 0:
		return fmt.Sprintf("%q", c.URIs[0].String())
	case len(c.DNSNames) > 0:
		return fmt.Sprintf("%q", c.DNSNames[0])
	}
	return fmt.Sprintf("%q", c.Subject.String())
}

// Explain tells a TLS failure of a client in words: which certificate, which CA,
// which name, expired when. trust says whom the client trusts (Client.Trust). An
// error that is no TLS failure comes back as its own text.
func Explain(err error, trust string) string {
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) && len(verr.UnverifiedCertificates) > 0 {
		leaf := verr.UnverifiedCertificates[0]
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		var host x509.HostnameError
		switch {
		case errors.As(verr.Err, &unknown):
			return fmt.Sprintf("the server's certificate %s, issued by %q, is not signed by %s", Name(leaf), leaf.Issuer.String(), trust)
		case errors.As(verr.Err, &invalid) && invalid.Reason == x509.Expired:
			c := leaf
			if invalid.Cert != nil {
				c = invalid.Cert
			}
			if time.Now().Before(c.NotBefore) {
				return fmt.Sprintf("the server's certificate %s is not valid before %s", Name(c), c.NotBefore.UTC().Format(time.RFC3339))
			}
			return fmt.Sprintf("the server's certificate %s expired at %s", Name(c), c.NotAfter.UTC().Format(time.RFC3339))
		case errors.As(verr.Err, &host):
			names := append([]string{}, leaf.DNSNames...)
			for _, ip := range leaf.IPAddresses {
				names = append(names, ip.String())
			}
			return fmt.Sprintf("the server's certificate %s is for %s, not for %q", Name(leaf), strings.Join(names, ", "), host.Host)
		}
		return fmt.Sprintf("the server's certificate %s does not verify: %v", Name(leaf), verr.Err)
	}
	msg := err.Error()
	if i := strings.Index(msg, "remote error: tls: "); i >= 0 {
		alert := msg[i+len("remote error: tls: "):]
		return "the server refused the TLS connection (" + alert + "): check the client certificate and that the server trusts its CA"
	}
	return msg
}

// Error is a TLS failure told in words (see Explain); it wraps the original.
type Error struct {
	Msg string
	Err error
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// Explaining wraps rt (the transport that uses c.Config) so that a TLS failure's
// error says what failed, in words (Explain).
func (c *Client) Explaining(rt http.RoundTripper) http.RoundTripper {
	return explaining{rt: rt, trust: c.Trust, cert: c.Cert}
}

type explaining struct {
	rt    http.RoundTripper
	trust string
	cert  *Reloader
}

func (e explaining) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := e.rt.RoundTrip(req)
	if err != nil && isTLSFailure(err) {
		msg := Explain(err, e.trust)
		if e.cert != nil {
			if leaf := e.cert.Certificate().Leaf; leaf != nil && time.Now().After(leaf.NotAfter) {
				msg += fmt.Sprintf("; the client certificate %s expired at %s", Name(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		err = &Error{Msg: msg, Err: err}
	}
	return resp, err
}

// CloseIdleConnections reaches the wrapped transport (http.Client.CloseIdleConnections).
func (e explaining) CloseIdleConnections() {
	if c, ok := e.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func isTLSFailure(err error) bool {
	var verr *tls.CertificateVerificationError
	return errors.As(err, &verr) || strings.Contains(err.Error(), "remote error: tls: ")
}
