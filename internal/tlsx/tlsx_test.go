package tlsx_test

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/atrium-iot/atrium/internal/tlsx"
	"github.com/atrium-iot/atrium/internal/tlsx/tlsxtest"
)

func write(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestReloaderFollowsItsFiles(t *testing.T) {
	ca := tlsxtest.NewCA(t, "Test CA")
	first := ca.Server(t, "first")
	logs := &logging.Buffer{}
	r, err := tlsx.NewReloader(first.CertFile, first.KeyFile, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string { return r.Certificate().Leaf.Subject.CommonName }
	if cn() != "first" {
		t.Fatalf("loaded %q", cn())
	}
	if changed, err := r.Reload(); changed || err != nil {
		t.Fatalf("unchanged files: changed %v, err %v", changed, err)
	}

	second := ca.Server(t, "second")
	third := ca.Server(t, "third")
	expired := ca.Issue(t, tlsxtest.Leaf{CN: "expired", NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	cases := []struct {
		name      string
		cert, key []byte
		want      string // CN in use afterwards
		err       string
	}{
		{"new pair", second.CertPEM, second.KeyPEM, "second", ""},
		{"certificate without its key yet", third.CertPEM, second.KeyPEM, "second", "private key does not match"},
		{"then its key", third.CertPEM, third.KeyPEM, "third", ""},
		{"garbage", []byte("not PEM"), third.KeyPEM, "third", "failed to find any PEM data"},
		{"expired", expired.CertPEM, expired.KeyPEM, "third", "expired at"},
		{"empty key", third.CertPEM, nil, "third", "failed to find any PEM data"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			write(t, first.CertFile, c.cert)
			write(t, first.KeyFile, c.key)
			changed, err := r.Reload()
			if c.err == "" && (err != nil || !changed) {
				t.Fatalf("changed %v, err %v", changed, err)
			}
			if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("err %v, want %q", err, c.err)
			}
			if cn() != c.want {
				t.Fatalf("in use: %q, want %q", cn(), c.want)
			}
		})
	}
	// A bad pair is logged once, not at every look; so is a missing file.
	refusals := func() int { return strings.Count(logs.String(), "certificate not reloaded") }
	if _, err := r.Reload(); err != nil {
		t.Fatalf("the same bad pair again: %v", err)
	}
	if n := refusals(); n != 4 {
		t.Fatalf("logged %d refusals, want 4:\n%s", n, logs)
	}
	if err := os.Remove(first.KeyFile); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := r.Reload(); err == nil {
			t.Fatal("a missing key loaded")
		}
	}
	if n := refusals(); n != 5 || cn() != "third" {
		t.Fatalf("missing key: %d refusals logged, %q in use:\n%s", n, cn(), logs)
	}
	if !strings.Contains(logs.String(), `"subject":"\"third\""`) {
		t.Fatalf("reload not logged with its subject:\n%s", logs)
	}
}

func TestNewReloaderRefusesABadPair(t *testing.T) {
	ca := tlsxtest.NewCA(t, "Test CA")
	a, b := ca.Server(t, "a"), ca.Server(t, "b")
	if _, err := tlsx.NewReloader(a.CertFile, b.KeyFile, nil); err == nil {
		t.Fatal("mismatched pair loaded")
	}
	if _, err := tlsx.NewReloader(a.CertFile, a.KeyFile+".missing", nil); err == nil {
		t.Fatal("missing key loaded")
	}
}

func TestLoadCAs(t *testing.T) {
	ca1, ca2 := tlsxtest.NewCA(t, "One"), tlsxtest.NewCA(t, "Two")
	bundle := t.TempDir() + "/bundle.pem"
	write(t, bundle, append(append([]byte("# two CAs\n"), ca1.PEM...), ca2.PEM...))
	if _, err := tlsx.LoadCAs(bundle); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir() + "/empty.pem"
	write(t, empty, []byte("nothing here\n"))
	if _, err := tlsx.LoadCAs(empty); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("empty bundle: %v", err)
	}
}

// TestClientErrorsSayWhatFailed drives real handshakes against servers whose
// certificates fail in each way, and reads the client's error.
func TestClientErrorsSayWhatFailed(t *testing.T) {
	ca, other := tlsxtest.NewCA(t, "Atrium CA"), tlsxtest.NewCA(t, "Other CA")
	serve := func(t *testing.T, p tlsxtest.Pair, clientCAs *tls.Config) string {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
		cert, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		if clientCAs != nil {
			srv.TLS.ClientCAs, srv.TLS.ClientAuth = clientCAs.ClientCAs, tls.RequireAndVerifyClientCert
		}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	pool, err := tlsx.LoadCAs(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		server tlsxtest.Pair
		mtls   bool
		want   []string
	}{
		{"foreign CA", other.Server(t, "gw.example"), false,
			[]string{`"gw.example"`, `issued by "CN=Other CA,O=Atrium tests"`, "-cloud-ca " + ca.File, "CN=Atrium CA"}},
		{"expired", ca.Issue(t, tlsxtest.Leaf{CN: "old", DNS: []string{"localhost"}, NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}), false,
			[]string{`"old" expired at`}},
		{"wrong name", ca.Issue(t, tlsxtest.Leaf{CN: "elsewhere", DNS: []string{"elsewhere.example"}}), false,
			[]string{`is for elsewhere.example, not for "127.0.0.1"`}},
		{"client certificate required", ca.Server(t, "gw"), true,
			[]string{"the server refused the TLS connection", "certificate required"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var mtls *tls.Config
			if c.mtls {
				mtls = &tls.Config{ClientCAs: pool}
			}
			u := serve(t, c.server, mtls)
			cl, err := tlsx.NewClient("-cloud-ca", ca.File, "", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{TLSClientConfig: cl.Config}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: cl.Explaining(tr), Timeout: 5 * time.Second}
			resp, err := client.Get(u)
			if err == nil {
				resp.Body.Close()
				t.Fatal("request succeeded")
			}
			var te *tlsx.Error
			if !errors.As(err, &te) {
				t.Fatalf("not explained: %v", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
