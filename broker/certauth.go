package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/tlsx"
)

// The values of Config.TLSClientAuth.
const (
	ClientAuthRequire  = "require"
	ClientAuthOptional = "optional"
)

// serverTLS is the TLS listener's configuration: its certificate, reloaded when
// its files change, TLS 1.2 at least, and with TLSClientCA the device
// certificates it verifies — a certificate that does not verify (another CA,
// expired) fails the handshake.
func serverTLS(cfg Config, log *slog.Logger) (*tls.Config, *tlsx.Reloader, error) {
	r, err := tlsx.NewReloader(cfg.TLSCert, cfg.TLSKey, log.With("listener", "tls"))
	if err != nil {
		return nil, nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	switch {
	case cfg.TLSClientCA == "" && cfg.TLSClientAuth != "":
		return nil, nil, fmt.Errorf("client auth %q without a client CA", cfg.TLSClientAuth)
	case cfg.TLSClientCA == "":
		return c, r, nil
	}
	if c.ClientCAs, err = tlsx.LoadCAs(cfg.TLSClientCA); err != nil {
		return nil, nil, err
	}
	switch cfg.TLSClientAuth {
	case ClientAuthRequire, "":
		c.ClientAuth = tls.RequireAndVerifyClientCert
	case ClientAuthOptional:
		c.ClientAuth = tls.VerifyClientCertIfGiven
	default:
		return nil, nil, fmt.Errorf("client auth %q: want %s or %s", cfg.TLSClientAuth, ClientAuthRequire, ClientAuthOptional)
	}
	return c, r, nil
}

// certDevice is the device id of cl's verified client certificate: its common
// name when that is a valid sensor id, else its first DNS name that is one. A
// client without a verified certificate, or whose certificate names no valid
// id, has none.
func certDevice(cl *mqtt.Client) (string, bool) {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return "", false
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	return deviceID(st.VerifiedChains[0][0])
}

func deviceID(c *x509.Certificate) (string, bool) {
	if reading.ValidID(c.Subject.CommonName) {
		return c.Subject.CommonName, true
	}
	for _, d := range c.DNSNames {
		if reading.ValidID(d) {
			return d, true
		}
	}
	return "", false
}

// certIs reports whether cl authenticated with a certificate of device id.
func certIs(cl *mqtt.Client, id string) bool {
	d, ok := certDevice(cl)
	return ok && d == id
}

// certLogin lets in a device by its certificate: its username becomes the
// certificate's device id, so the session's owner and the topic ACL are the
// certificate's. A CONNECT naming another username is refused; a password, if
// sent, is not looked at.
func (h *authHook) certLogin(cl *mqtt.Client, pk packets.Packet, id string) loginVerdict {
	if u := string(pk.Connect.Username); u != "" && u != id {
		h.refuse(cl, u, "username is not the certificate's device id "+id)
		return loginRefused
	}
	cl.Properties.Username = []byte(id)
	h.log.Debug("device authenticated by certificate", "device", id, "client", cl.ID, "remote", cl.Net.Remote)
	return loginAccepted
}
