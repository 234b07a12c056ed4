package gateway

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"

	"github.com/atrium-iot/atrium/internal/httpx"
)

// Agents may authenticate with a client certificate instead of an API key: the
// server verifies it against -client-ca during the handshake (a certificate that
// does not verify, expired or from another CA, fails the handshake), and the
// gateway maps its subject to a principal of the keys file, an entry with
// "subject" instead of "sha256":
//
//	{"name": "agent-hq", "subject": "spiffe://atrium/agent/hq", "scopes": ["ingest"]}
//	{"name": "agent-b2", "subject": "dns:agent-b2.atrium.example", "scopes": ["ingest"]}
//	{"name": "agent-b3", "subject": "cn:agent-b3", "scopes": ["ingest"]}
//
// A certificate's subjects are tried in this order: its URI SANs, its DNS SANs,
// its common name; the first one with an entry names the principal. A verified
// certificate without an entry is refused with 403. An API key, when one is sent,
// decides over the certificate.

// NormalizeSubject checks a keys file's subject and writes it in the form the
// gateway compares: "uri:<URI>" (or a bare URI with "://"), "dns:<name>" (compared
// without case), "cn:<common name>".
func NormalizeSubject(s string) (string, error) {
	kind, v, ok := strings.Cut(strings.TrimSpace(s), ":")
	switch {
	case ok && kind == "cn" && v != "":
		return "cn:" + v, nil
	case ok && kind == "dns" && v != "":
		return "dns:" + strings.ToLower(v), nil
	case ok && kind == "uri" && strings.Contains(v, "://"):
		return "uri:" + v, nil
	case strings.Contains(s, "://"):
		return "uri:" + strings.TrimSpace(s), nil
	}
	return "", fmt.Errorf("subject %q: want uri:<URI> (or a bare URI such as spiffe://…), dns:<name> or cn:<common name>", s)
}

// certSubjects are a certificate's subjects in the order they are tried.
func certSubjects(c *x509.Certificate) []string {
	var out []string
	for _, u := range c.URIs {
		out = append(out, "uri:"+u.String())
	}
	for _, d := range c.DNSNames {
		out = append(out, "dns:"+strings.ToLower(d))
	}
	if c.Subject.CommonName != "" {
		out = append(out, "cn:"+c.Subject.CommonName)
	}
	return out
}

// clientCert is the verified client certificate of r's connection, or nil.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

// lookupCert finds the principal of a verified certificate.
func (kr *keyring) lookupCert(c *x509.Certificate) (identity, bool) {
	for _, s := range certSubjects(c) {
		if id, ok := kr.subjects[s]; ok {
			return id, true
		}
	}
	return identity{}, false
}

// unmappedCert answers a verified certificate that names no principal.
func (g *Gateway) unmappedCert(w http.ResponseWriter, r *http.Request, c *x509.Certificate) {
	g.metrics.denied.WithLabelValues("unmapped_cert").Inc()
	subjects := strings.Join(certSubjects(c), ", ")
	g.log.Warn("client certificate not mapped to a principal", "subjects", subjects, "serial", c.SerialNumber.String(), "remote", r.RemoteAddr)
	httpx.WriteProblem(w, r, httpx.NewProblem(http.StatusForbidden,
		fmt.Sprintf("the client certificate (%s) is not mapped to a principal in the gateway's keys file", subjects)))
}
