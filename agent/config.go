package agent

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/agent/forward"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/broker"
	"github.com/atrium-iot/atrium/internal/flagenv"
	"github.com/atrium-iot/atrium/internal/reading"
)

// DefaultHTTPAddr is where the status server listens unless -http-addr says
// otherwise: loopback, since it has no authentication.
const DefaultHTTPAddr = "127.0.0.1:9100"

// Config is the parsed command line of `atrium-agent`.
type Config struct {
	MQTTAddr         string
	TLSAddr          string
	TLSCert          string
	TLSKey           string
	TLSClientCA      string
	TLSClientAuth    string
	WSAddr           string
	HTTPAddr         string
	CloudURL         string
	CloudCA          string
	CloudCert        string
	CloudKey         string
	Token            string
	Spool            string
	SpoolMaxBytes    int64
	SpoolFull        string
	Site             string
	Credentials      string
	AllowAnonymous   bool
	MaxPacketSize    int
	MaxConnections   int
	MaxPendingWrites int
	MaxKeepAlive     time.Duration
	MaxRetained      int
	MaxRetainedBytes int
	BatchMax         int
	BatchBytes       int
	Linger           time.Duration
	MaxInFlight      int
	MismatchRetries  int
	AppendTimeout    time.Duration
	ShutdownTimeout  time.Duration
	flagenv.Program

	// Now is the agent's clock, which stamps and validates readings; nil is
	// time.Now. Not a flag: tests set it to play a gateway whose clock drifted.
	Now func() time.Time
}

// ParseFlags reads the command line; every flag -x-y also reads ATRIUM_X_Y.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("atrium-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.MQTTAddr, "mqtt-addr", ":1883", "listen address of the MQTT broker (TCP, MQTT 3.1.1 and 5)")
	fs.StringVar(&c.TLSAddr, "tls-addr", "", "listen address of an MQTT-over-TLS listener, e.g. :8883 (needs -tls-cert and -tls-key)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate of the TLS listener")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of the TLS listener")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM bundle of the CAs whose device certificates the TLS listener accepts; the device id is the certificate's CN\n(or its first DNS name that is a valid id), with the same topic ACL as a password; no credentials file needed")
	fs.StringVar(&c.TLSClientAuth, "tls-client-auth", "require", "with -tls-client-ca: require (every TLS device shows a certificate) or optional (devices with a password on the same listener)")
	fs.StringVar(&c.WSAddr, "ws-addr", "", "listen address of an MQTT-over-WebSocket listener, e.g. :8083")
	fs.StringVar(&c.HTTPAddr, "http-addr", DefaultHTTPAddr, "listen address of the status server (/healthz, /readyz, /metrics, /status, /devices);\nit has no authentication: loopback only unless set, e.g. :9100 to let a Prometheus on another host scrape it")
	fs.StringVar(&c.CloudURL, "cloud-url", "http://127.0.0.1:8001", "base URL of the sensor service or of the API gateway; readings go to URL/sensors/data")
	fs.StringVar(&c.CloudCA, "cloud-ca", "", "PEM bundle of the CAs trusted for an https:// -cloud-url, instead of the system's (to trust both, put the system bundle in the file too)")
	fs.StringVar(&c.CloudCert, "cloud-cert", "", "PEM client certificate (chain allowed) shown to an https:// -cloud-url, e.g. to authenticate at the gateway; reloaded when the file changes")
	fs.StringVar(&c.CloudKey, "cloud-key", "", "PEM private key of -cloud-cert")
	fs.StringVar(&c.Token, "token", "", "API key with the ingest scope, sent as Authorization: Bearer (needed through the gateway)")
	fs.StringVar(&c.Spool, "spool", "./data/agent/spool.db", "the spool's bbolt file")
	fs.Int64Var(&c.SpoolMaxBytes, "spool-max-bytes", 1<<30, "bound on the spool's readings in bytes")
	fs.StringVar(&c.SpoolFull, "spool-full", spool.PolicyDropOldest, "when the spool is full: drop-oldest (keep the newest data) or reject-new (refuse publishes)")
	fs.StringVar(&c.Site, "site", "", "site (building) id stamped on every reading (default: the host name)")
	fs.StringVar(&c.Credentials, "credentials", "", "devices' credentials file (add a device to it with: atrium-agent devices add -id ID)")
	fs.BoolVar(&c.AllowAnonymous, "allow-anonymous", false, "let devices connect without credentials and publish anywhere (development only)")
	fs.IntVar(&c.MaxPacketSize, "max-packet-size", 256<<10, "largest MQTT packet accepted, in bytes")
	fs.IntVar(&c.MaxConnections, "max-connections", 10000, "most MQTT clients connected at once")
	fs.IntVar(&c.MaxPendingWrites, "max-pending-writes", 256, "messages that may queue for one slow subscriber before further ones to it are dropped (counted);\neach connection reserves 8 bytes per slot up front (2 KiB at 256): raise it for local subscribers with bursty fan-out")
	fs.DurationVar(&c.MaxKeepAlive, "max-keepalive", 0, "cap on the keep alive of MQTT 5 clients, 1s to 65535s: one asking for more (or none) is told this one in its CONNACK;\nMQTT 3.1.1 clients keep theirs. 0: no cap")
	fs.IntVar(&c.MaxRetained, "max-retained", broker.DefaultMaxRetained, "retained topics each device may hold in the broker; a retained message past it is delivered but not retained (counted). 0: no limit")
	fs.IntVar(&c.MaxRetainedBytes, "max-retained-bytes", broker.DefaultMaxRetainedBytes, "bytes (topic, payload, properties) of the retained messages each device may hold; past it as -max-retained. 0: no limit")
	fs.IntVar(&c.BatchMax, "batch-max", 500, "most readings per batch sent to the cloud")
	fs.IntVar(&c.BatchBytes, "batch-bytes", 1<<20, "most bytes of readings per batch")
	fs.DurationVar(&c.Linger, "linger", time.Second, "longest a reading waits for its batch to fill")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 4, "batches sent at once; batches in flight never share a sensor, so each sensor's readings arrive in order (1: one at a time)")
	fs.IntVar(&c.MismatchRetries, "mismatch-retries", forward.DefaultMismatchRetries, "times a batch is sent again after an answer that does not match it (another batch id, counts that do not\nadd up, 422) before its readings are dead-lettered with the reason; 0: dead-letter at the first")
	fs.DurationVar(&c.AppendTimeout, "append-timeout", 10*time.Second, "longest a publish waits for the spool before it is refused")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown may spend flushing the spool to the cloud")
	c.Program.Add(fs)
	if err := flagenv.Parse(fs, args, getenv); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (subcommands: devices, spool)", fs.Args())
	}
	if c.Site == "" {
		c.Site = defaultSite()
	}
	if !reading.ValidID(c.Site) {
		return c, fmt.Errorf("-site %q: 1-128 characters of A-Z a-z 0-9 . _ : -", c.Site)
	}
	if c.SpoolFull != spool.PolicyDropOldest && c.SpoolFull != spool.PolicyRejectNew {
		return c, fmt.Errorf("-spool-full %q: want %s or %s", c.SpoolFull, spool.PolicyDropOldest, spool.PolicyRejectNew)
	}
	if c.TLSClientAuth != "require" && c.TLSClientAuth != "optional" {
		return c, fmt.Errorf("-tls-client-auth %q: want require or optional", c.TLSClientAuth)
	}
	if c.TLSClientCA != "" && c.TLSAddr == "" {
		return c, errors.New("-tls-client-ca needs a TLS listener (-tls-addr, -tls-cert, -tls-key)")
	}
	if (c.CloudCert == "") != (c.CloudKey == "") {
		return c, errors.New("-cloud-cert and -cloud-key go together")
	}
	if (c.CloudCA != "" || c.CloudCert != "") && !strings.HasPrefix(c.CloudURL, "https://") {
		return c, fmt.Errorf("-cloud-ca and -cloud-cert need an https:// -cloud-url, not %q", c.CloudURL)
	}
	if c.MaxRetained < 0 || c.MaxRetainedBytes < 0 {
		return c, errors.New("-max-retained and -max-retained-bytes must be ≥0 (0: no limit)")
	}
	if c.BatchMax < 1 || c.BatchBytes < 1024 || c.Linger < 0 || c.MaxInFlight < 1 || c.MismatchRetries < 0 {
		return c, errors.New("-batch-max must be ≥1, -batch-bytes ≥1024, -linger ≥0, -max-in-flight ≥1 and -mismatch-retries ≥0")
	}
	if c.MaxKeepAlive != 0 && (c.MaxKeepAlive < time.Second || c.MaxKeepAlive > 65535*time.Second || c.MaxKeepAlive%time.Second != 0) {
		return c, fmt.Errorf("-max-keepalive %v: want whole seconds from 1s to 65535s, or 0 for no cap", c.MaxKeepAlive)
	}
	return c, nil
}

// defaultSite is the host name made into a valid id.
func defaultSite() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "site"
	}
	h = strings.Map(func(r rune) rune {
		if r < 0x80 && reading.ValidIDByte(byte(r)) {
			return r
		}
		return '-'
	}, h)
	if len(h) > reading.MaxIDLen {
		h = h[:reading.MaxIDLen]
	}
	return h
}
