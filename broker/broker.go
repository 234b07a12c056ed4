// Package broker is the edge agent's embedded MQTT broker, built on mochi-mqtt v2: TCP,
// TLS and WebSocket listeners speaking MQTT 3.1.1 and 5, per-device authentication from
// a credentials file (package [credentials]), and a topic ACL.
//
// # Identity and ACL
//
// A device connects with its sensor id as MQTT username and the password that
// `atrium-agent devices add` printed for it. It may publish to, and subscribe to,
// only its own topics:
//
//	atrium/<room_id>/<sensor_id>          and anything below it,
//	atrium/<room_id>/<sensor_id>/<more>   any room (one level, "+" allowed in a filter).
//
// Everything else ($SYS, other devices' topics, "#", shared subscriptions) is refused,
// and a device is refused everything once it is no longer in the credentials file.
// Changes to the credentials file are picked up while the broker runs, within about a
// second, at the next connection attempt.
//
// # Sessions
//
// A session (its subscriptions, its queued and unacknowledged messages) belongs to the
// identity that made it: the device id, or "anonymous", shared by every client served
// without identity under AllowAnonymous (no username, or no credentials file at all),
// so anonymous clients may take each other's sessions but no device's, and no device
// an anonymous one's. A client of another identity asking for the same
// client id is refused with CONNACK 0x85 "client identifier not valid" (MQTT 5) or
// return code 2 "identifier rejected" (3.1.1), receives nothing of the session, and the
// session's client, if connected, stays connected. The owner reconnecting resumes it
// as usual (and, as MQTT says, replaces its own older connection). A device may also not
// use another device's id as client id, even before that device has a session, and no
// client may use the broker's own client id "inline". Ownership is read from the session
// itself (the username mochi keeps with it), so it lasts exactly as long as the session.
// Sessions live in memory only (no storage hook): a restart ends every session, and
// ownership with it; with a storage hook, which stores the username too, both would
// survive together.
//
// When a session is resumed, its subscriptions and its queued and unacknowledged
// messages are checked against the ACL again before anything is sent, and what is no
// longer allowed is dropped; every other delivery (new, retained, wills) is checked
// by mochi as it is sent. A will outside the device's own topics is dropped at CONNECT
// (mochi would publish it unchecked); the connection is kept.
//
// # Login
//
// A right password already verified in this process is accepted at once (a keyed hash
// comparison). Any other attempt costs one bcrypt comparison, an unknown username too,
// and goes through loginGuard: per remote address, failures space the next checks
// (50 ms doubling per recent failure, at most 2 s, failures halving every 30 s; an
// attempt that would wait over 5 s is refused as busy: 0x89, 3.1.1 return code 3); per
// username, a refusal is answered only after that username's delay, while a right
// password is not delayed; at most half of GOMAXPROCS checks run at once, plus one slot
// kept for addresses without recent failures, which also go first. A device keeps
// connecting promptly while another address floods the broker with guesses; a device
// behind the same address as the flood connects promptly only with a password already
// verified (after a restart it waits its turn with the guesses).
//
// What a refused client sees (this is mochi's behaviour, checked against its source):
//   - bad or missing credentials: CONNACK 0x86 "bad user name or password" (MQTT 5) or
//     return code 5 "not authorized" (3.1.1), then the connection is closed;
//   - a client id held by another identity's session: 0x85 (5) or 2 (3.1.1);
//   - throttled (see Login) or more than MaxConnections clients: CONNACK 0x89 "server
//     busy" (5) or 3 "server unavailable" (3.1.1);
//   - publishing outside its topics: QoS 0 is dropped silently (both versions); QoS 1/2
//     gets a PUBACK/PUBREC with 0x87 "not authorized" (5); a 3.1.1 client is
//     disconnected, since 3.1.1 has no way to refuse a single message. The refusal is
//     logged with client, device, topic and size, never the payload (mochi's own log
//     records are stripped of payloads too);
//   - publishing to a topic starting with "$" (e.g. $SYS): mochi ignores the message
//     without any acknowledgement, whatever the client's rights;
//   - subscribing outside its topics: SUBACK 0x87 (5) or 0x80 failure (3.1.1) for that filter;
//   - a packet larger than MaxPacketSize: the connection is closed. MQTT 5 clients are
//     told the limit in the CONNACK (Maximum Packet Size).
//
// With AllowAnonymous (development only; a warning is logged at start), clients that
// present no username may connect and use every topic. Clients that do present a username
// are still checked against the credentials file when one is configured.
//
// # Retained messages
//
// Each publisher may hold Config.MaxRetained retained topics and Config.MaxRetainedBytes
// of them (a device counts by its id, an anonymous client by its client id). A retained
// message past that is delivered but not retained and counted (Stats.RetainedRefused);
// an empty one, which deletes, always passes. See retainHook.
//
// # Hooks
//
// The agent adds its own hooks with [Broker.AddHook] before [Broker.Start]. mochi calls a
// hook's OnPublish after the ACL check and before it writes the QoS 1 PUBACK (or QoS 2
// PUBREC) to the publisher, in the client's read goroutine, so a hook that blocks until a
// reading is durable makes the PUBACK mean "on disk". See [RefusePublish] for how such a
// hook says it could not store a message. A hook that takes a message off mochi's path
// returns [Defer], answers it later with [Broker.Acks] and hands it to subscribers with
// [Broker.Publish], which keeps its properties and its sender.
//
// # Conformance
//
// Acknowledgements carry only valid reason codes and no properties of the packet they
// answer (mochi would send a PUBACK with 0x01 and the PUBLISH's user properties); with
// Config.MaxKeepAlive, MQTT 5 clients are told a Server Keep Alive. See conformHook.
package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/broker/credentials"
	"github.com/atrium-iot/atrium/internal/tlsx"
)

// ClientReadBuffer is the size of each connection's read buffer (mochi's default: 2 KiB).
const ClientReadBuffer = 512

// Defaults applied by New to zero fields of Config.
const (
	DefaultAddr             = ":1883"
	DefaultMaxPacketSize    = 256 << 10
	DefaultMaxConnections   = 10_000
	DefaultMaxPendingWrites = 32 << 10
	DefaultConnectTimeout   = 10 * time.Second
	DefaultSessionExpiry    = 24 * time.Hour
	DefaultMaxRetained      = 32
	DefaultMaxRetainedBytes = 64 << 10
)

// Config configures a Broker. Only one of CredentialsFile and AllowAnonymous is required.
type Config struct {
	// Addr is the host:port of the plain TCP listener (":0" picks a free port).
	// Empty means DefaultAddr.
	Addr string
	// TLSAddr, if set, adds a TLS listener; TLSCert and TLSKey are PEM files.
	TLSAddr string
	TLSCert string
	TLSKey  string
	// TLSClientCA, if set, is a PEM bundle of the CAs whose device certificates the
	// TLS listener accepts: the device id is the certificate's (see certDevice).
	// TLSClientAuth is ClientAuthRequire (the default: every TLS client shows a
	// certificate) or ClientAuthOptional (devices with a password too).
	TLSClientCA   string
	TLSClientAuth string
	// WSAddr, if set, adds a WebSocket listener (subprotocol "mqtt", any path, e.g. /mqtt).
	WSAddr string

	// CredentialsFile is the devices' credentials (see package credentials).
	CredentialsFile string
	// AllowAnonymous lets clients without a username connect and use any topic.
	// For development only.
	AllowAnonymous bool

	// MaxPacketSize is the largest MQTT packet accepted, in bytes. Default 256 KiB.
	MaxPacketSize int
	// MaxConnections is the most MQTT clients connected at once; a client over it is
	// refused with a CONNACK. Raw connections are capped at about 1.1× this number.
	// Default 10,000.
	MaxConnections int
	// MaxPendingWrites is how many outgoing messages may wait for one slow client before
	// further QoS 0 messages to it are dropped (counted in Stats.MessagesDropped). mochi's
	// own default is 8,192; ours is 32,768. Each connection reserves 8 bytes of address
	// space per slot (256 KiB at the default), committed only as it fills: on 32-bit
	// gateways with thousands of devices, lower it.
	MaxPendingWrites int
	// ConnectTimeout is how long a new connection may take to send CONNECT. Default 10 s.
	ConnectTimeout time.Duration
	// SessionExpiry caps how long the session of a disconnected persistent client is kept.
	// Default 24 h.
	SessionExpiry time.Duration
	// MaxKeepAlive, if set, caps the keep alive of MQTT 5 clients (whole seconds, at
	// most 65535 s): one asking for more, or for none, is told this value in its CONNACK
	// (Server Keep Alive) and dropped after 1.5 times it without a packet. MQTT 3.1.1
	// has no way to tell a client, so 3.1.1 clients keep their own. 0: no cap.
	MaxKeepAlive time.Duration
	// MaxRetained and MaxRetainedBytes are each publisher's retained allowance: the
	// retained topics it may hold, and their bytes (topic, payload and properties). A
	// retained message that would take its publisher past either is delivered but not
	// retained (counted in Stats.RetainedRefused); an empty one, which deletes, always
	// passes. A device's messages count against its id, an anonymous client's against
	// its client id. Defaults 32 and 64 KiB; negative: no limit.
	MaxRetained      int
	MaxRetainedBytes int
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxPendingWrites == 0 {
		c.MaxPendingWrites = DefaultMaxPendingWrites
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = DefaultSessionExpiry
	}
}

func (c *Config) validate() error {
	switch {
	case c.CredentialsFile == "" && !c.AllowAnonymous && c.TLSClientCA == "":
		return errors.New("no credentials file and anonymous access not allowed: no device could connect (create one with `atrium-agent devices add`, or allow anonymous access for development)")
	case c.TLSAddr != "" && (c.TLSCert == "" || c.TLSKey == ""):
		return errors.New("a TLS listener needs both a certificate and a key file")
	case c.TLSAddr == "" && (c.TLSCert != "" || c.TLSKey != ""):
		return errors.New("a TLS certificate or key given without a TLS listen address")
	case c.MaxPacketSize < 64 || c.MaxPacketSize > 256<<20:
		return fmt.Errorf("max packet size %d: want 64 B to 256 MiB", c.MaxPacketSize)
	case c.MaxConnections < 1:
		return fmt.Errorf("max connections %d: want at least 1", c.MaxConnections)
	case c.MaxPendingWrites < 1 || c.MaxPendingWrites > 1<<24:
		return fmt.Errorf("max pending writes %d: want 1 to %d", c.MaxPendingWrites, 1<<24)
	case c.ConnectTimeout < 0 || c.SessionExpiry < 0:
		return errors.New("negative timeout")
	case c.MaxKeepAlive != 0 && (c.MaxKeepAlive < time.Second || c.MaxKeepAlive > 65535*time.Second):
		return fmt.Errorf("max keep alive %v: want 1 s to 65535 s, or 0 for no cap", c.MaxKeepAlive)
	}
	return nil
}

// Broker is the embedded MQTT broker. Create it with New, add hooks, Start, Close.
type Broker struct {
	cfg  Config
	log  *slog.Logger
	srv  *mqtt.Server
	auth *authHook
	keep *retainHook // added last, at Start (see retainHook)
	tls  *tls.Config
	cert *tlsx.Reloader // the TLS listener's certificate, reloaded when its files change

	rejected atomic.Int64 // connections refused for capacity
	counters
	origins origins

	mu        sync.Mutex
	started   bool
	keepAdded bool
	closed    bool
	addr      string
	tlsAddr   string
	wsAddr    string
	listeners []net.Listener
	own       []ownListener // the same listeners as mochi holds them
}

// New checks cfg, loads the credentials file and prepares a broker. It binds nothing:
// Start does. A nil log discards.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("broker: config: %w", err)
	}
	b := &Broker{cfg: cfg, log: log}

	var creds *credentials.Store
	if cfg.CredentialsFile != "" {
		var err error
		if creds, err = credentials.Load(cfg.CredentialsFile); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	if cfg.TLSAddr != "" {
		var err error
		if b.tls, b.cert, err = serverTLS(cfg, log); err != nil {
			return nil, fmt.Errorf("broker: tls: %w", err)
		}
	}

	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(cfg.MaxConnections)
	caps.MaximumPacketSize = uint32(cfg.MaxPacketSize)
	caps.MaximumClientWritesPending = int32(cfg.MaxPendingWrites)
	caps.MaximumSessionExpiryInterval = uint32(cfg.SessionExpiry / time.Second)
	// mochi would copy a PUBLISH's properties (user properties among them) into its
	// acknowledgement; conformHook corrects the rest of what it acknowledges.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi logs whole packets on some errors: the redactor keeps payloads and
		// passwords out of the log.
		Logger: slog.New(redactPackets(log.Handler())).With("component", "mqtt"),
		// The inline client lets a hook that took a message off the read path
		// (DeferPublish) hand it to subscribers once it has dealt with it.
		InlineClient: true,
		// Each connection's read buffer lives as long as the connection: 1,000
		// devices hold 2 MiB of them at mochi's default (2 KiB), twice that in
		// RSS with the GC's headroom. Readings are small packets; a packet larger
		// than the buffer is read straight into its own slice, so a smaller buffer
		// costs only more read calls when a device sends many packets at once.
		ClientNetReadBufferSize: ClientReadBuffer,
	})

	b.origins.srv = b.srv

	b.auth = newAuthHook(log, creds, cfg)
	b.auth.srv = b.srv
	if err := b.srv.AddHook(b.auth, nil); err != nil {
		return nil, fmt.Errorf("broker: auth hook: %w", err)
	}
	b.keep = newRetainHook(log, b.auth, cfg)
	if err := b.srv.AddHook(&conformHook{maxKeepAlive: uint16(cfg.MaxKeepAlive / time.Second)}, nil); err != nil {
		return nil, fmt.Errorf("broker: conformance hook: %w", err)
	}
	return b, nil
}

// AddHook adds a mochi hook (for example the agent's ingest hook, providing OnPublish).
// It must be called before Start. A hook may not provide OnConnectAuthenticate or
// OnACLCheck: mochi lets any hook that says yes win, which would bypass the device ACL.
func (b *Broker) AddHook(h mqtt.Hook, config any) error {
	if h.Provides(mqtt.OnConnectAuthenticate) || h.Provides(mqtt.OnACLCheck) {
		return fmt.Errorf("broker: add hook %s: it provides authentication or ACL checks, which would bypass the device ACL", h.ID())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return fmt.Errorf("broker: add hook %s: broker already started", h.ID())
	}
	if err := b.srv.AddHook(h, config); err != nil {
		return fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
	}
	return nil
}

// Start binds every configured listener and starts serving. When it returns nil, the
// listeners accept connections and Addr, TLSAddr and WSAddr report their bound addresses.
// ctx bounds the binding only; the broker runs until Close.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return errors.New("broker: start: already started")
	}
	if err := b.bindAll(ctx); err != nil {
		for _, ln := range b.listeners {
			_ = ln.Close()
		}
		b.listeners = nil
		return fmt.Errorf("broker: start: %w", err)
	}
	if !b.keepAdded {
		// Last, so that its OnPublish sees what the other hooks left on mochi's path.
		if err := b.srv.AddHook(b.keep, nil); err != nil {
			return fmt.Errorf("broker: start: retain hook: %w", err)
		}
		b.keepAdded = true
	}
	if b.cert != nil {
		go func() { _ = b.cert.Run(ctx, 0, nil) }()
	}
	if err := b.srv.Serve(); err != nil {
		for _, ln := range b.listeners {
			_ = ln.Close()
		}
		return fmt.Errorf("broker: start: %w", err)
	}
	b.started = true
	if b.auth.allowAnonymous {
		b.log.Warn("ANONYMOUS MQTT ACCESS ALLOWED: clients without credentials may publish and subscribe to every topic; use only for development")
	}
	devices := 0
	if b.auth.creds != nil {
		devices = b.auth.creds.Len()
	}
	b.log.Info("mqtt broker started", "addr", b.addr, "tls_addr", b.tlsAddr, "ws_addr", b.wsAddr,
		"devices", devices, "anonymous", b.auth.allowAnonymous)
	return nil
}

func (b *Broker) bindAll(ctx context.Context) error {
	// Raw connections are capped a little above the client limit, so that clients over
	// it still get a clean CONNACK refusal while a flood of idle sockets cannot grow unbounded.
	limit := b.cfg.MaxConnections + b.cfg.MaxConnections/10 + 16
	track := func() *connTracker { return newConnTracker(limit, b.cfg.ConnectTimeout, &b.rejected) }
	var err error
	b.addr, err = b.bind(ctx, "tcp", b.cfg.Addr, func(ln net.Listener) mqttListener {
		return &streamListener{id: "tcp", proto: "tcp", ln: ln, track: track()}
	})
	if err != nil {
		return err
	}
	if b.cfg.TLSAddr != "" {
		b.tlsAddr, err = b.bind(ctx, "tls", b.cfg.TLSAddr, func(ln net.Listener) mqttListener {
			return &streamListener{id: "tls", proto: "tls", ln: tls.NewListener(ln, b.tls), track: track()}
		})
		if err != nil {
			return err
		}
	}
	if b.cfg.WSAddr != "" {
		b.wsAddr, err = b.bind(ctx, "ws", b.cfg.WSAddr, func(ln net.Listener) mqttListener {
			return &wsListener{id: "ws", ln: ln, readLimit: int64(b.cfg.MaxPacketSize) + 1024, track: track()}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// mqttListener is a listener as mochi and Broker.Close both hold it.
type mqttListener interface {
	listeners.Listener
	ownListener
}

// bind listens on addr, keeps the socket for closing, and hands the listener id that
// listener makes of it to mochi (and keeps it for Close); it returns the bound address.
func (b *Broker) bind(ctx context.Context, id, addr string, listener func(net.Listener) mqttListener) (string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s %s: %w", id, addr, err)
	}
	b.listeners = append(b.listeners, ln)
	l := listener(ln)
	if err := b.srv.AddListener(l); err != nil {
		return ln.Addr().String(), fmt.Errorf("listener %s: %w", id, err)
	}
	b.own = append(b.own, l)
	return ln.Addr().String(), nil
}

// Addr is the bound address of the TCP listener ("" before Start).
func (b *Broker) Addr() string { return b.bound(&b.addr) }

// TLSAddr is the bound address of the TLS listener ("" when none or before Start).
func (b *Broker) TLSAddr() string { return b.bound(&b.tlsAddr) }

// WSAddr is the bound address of the WebSocket listener ("" when none or before Start).
func (b *Broker) WSAddr() string { return b.bound(&b.wsAddr) }

// bound reads one of the bound addresses, which Start sets under b.mu.
func (b *Broker) bound(addr *string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return *addr
}

// Close stops accepting connections, disconnects every client (MQTT 5 clients receive a
// DISCONNECT "server shutting down") and waits for their connections to end, including
// any OnPublish hook still running. It is safe to call more than once.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	b.mu.Unlock()

	if !started {
		return nil
	}
	// mochi v2.7.9's Server.Close can deadlock: Clients.GetByListener takes the
	// clients' read lock and, through Len, takes it again; a client being removed
	// in between queues for the write lock, and both wait for good. So the broker
	// empties itself first: stop accepting, disconnect every client (MQTT 5 ones
	// get a DISCONNECT saying the server is shutting down), and wait until their
	// connections have ended and mochi has removed them. Then Close finds nothing
	// to remove; it is still not waited on past closeWait.
	b.mu.Lock()
	own := b.own
	b.mu.Unlock()
	for _, l := range own {
		l.stopAccepting()
	}
	b.auth.guard.shutdown() // logins waiting their turn give up
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Conn != nil && !cl.Closed() {
			_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
	deadline := time.Now().Add(closeWait)
	for _, l := range own {
		if !l.tracker().waitEmpty(deadline) {
			l.tracker().closeAll() // Close below ends them too; this only goes first
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- b.srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			return fmt.Errorf("broker: close: %w", err)
		}
	case <-time.After(closeWait):
		b.log.Error("mqtt broker did not stop in time; going on without it", "waited", closeWait)
		return fmt.Errorf("broker: close: not done after %v", closeWait)
	}
	b.log.Info("mqtt broker stopped")
	return nil
}

// closeWait bounds each step of Close: clients leaving, then mochi's own Close.
const closeWait = 5 * time.Second

// Stats are the broker's counters (totals since New) and gauges.
//
// The gauges are read from the broker's state when asked, not taken from mochi's
// counters, which drift: mochi v2.7.9 decrements its inflight count for
// acknowledgements it never counted (it went below zero after the Paho suites), and
// leaves its retained count unchanged when retained messages expire; it also counts
// the ~20 retained messages of its own $SYS topics, which Retained leaves out. The received
// counts leave out the messages Publish handed to mochi again.
type Stats struct {
	ClientsConnected    int64 // gauge: clients connected now
	ClientsMaximum      int64 // most clients connected at once (mochi's count)
	Subscriptions       int64 // gauge: subscriptions held by every session, connected or not
	Retained            int64 // gauge: retained messages held (clients' only: not mochi's $SYS ones)
	Inflight            int64 // gauge: QoS 1/2 messages of every session awaiting acknowledgement, either way
	MessagesReceived    int64 // PUBLISH packets received
	MessagesExpired     int64 // messages taken by a hook that expired before they could be delivered
	MessagesSent        int64 // PUBLISH packets sent
	MessagesDropped     int64 // messages to slow subscribers dropped (pending writes full)
	InflightDropped     int64 // QoS 1/2 messages dropped: client inflight quota full or expired
	BytesReceived       int64
	BytesSent           int64
	PacketsReceived     int64
	PacketsSent         int64
	AuthFailures        int64 // connections refused for bad or missing credentials
	LoginsThrottled     int64 // connections refused as busy by the failed-login throttle
	ClientIDRefused     int64 // connections refused: the client id is another identity's session
	ACLDenied           int64 // publishes, subscriptions, wills and deliveries refused by the topic ACL
	RetainedRefused     int64 // retained messages delivered but not retained: their publisher's allowance was full
	SessionsFiltered    int64 // resumed sessions that lost subscriptions or messages to the ACL
	ConnectionsRejected int64 // connections refused for capacity (MaxConnections and the raw cap)
}

// Stats returns the current counters.
func (b *Broker) Stats() Stats {
	i := b.srv.Info.Clone()
	connected, subs, inflight := b.gauges()
	injected := b.injected.Load()
	return Stats{
		ClientsConnected:    connected,
		ClientsMaximum:      i.ClientsMaximum,
		Subscriptions:       subs,
		Retained:            b.retained(),
		Inflight:            inflight,
		MessagesReceived:    i.MessagesReceived - injected,
		MessagesExpired:     b.expired.Load(),
		MessagesSent:        i.MessagesSent,
		MessagesDropped:     i.MessagesDropped,
		InflightDropped:     i.InflightDropped,
		BytesReceived:       i.BytesReceived,
		BytesSent:           i.BytesSent,
		PacketsReceived:     i.PacketsReceived - injected,
		PacketsSent:         i.PacketsSent,
		AuthFailures:        b.auth.authFailures.Load(),
		LoginsThrottled:     b.auth.loginsThrottled.Load(),
		ClientIDRefused:     b.auth.clientIDRefused.Load(),
		ACLDenied:           b.auth.aclDenied.Load(),
		RetainedRefused:     b.keep.refused.Load(),
		SessionsFiltered:    b.auth.sessionsFiltered.Load(),
		ConnectionsRejected: b.rejected.Load(),
	}
}

// Defer is what an OnPublish hook returns for a QoS 0 or 1 publish that it takes off
// mochi's path, to answer it later with [Broker.Acks] and hand it to subscribers with
// [Broker.Publish]: mochi then sends no PUBACK, delivers the message to nobody and
// retains nothing. It is pk marked for mochi as a QoS 0 message to ignore
// (packets.Packet.Ignore), with no error; hooks after this one, and OnPublished, see it
// so. Returning packets.ErrRejectPacket would have the same effect, but mochi answers
// that error by logging the packet at debug level, and building that log call copies
// the packet (over 1 KiB) to the heap on every publish, whether or not debug is on.
// Not for QoS 2, whose PUBREC mochi would then never send.
func Defer(pk packets.Packet) (packets.Packet, error) {
	pk.FixedHeader.Qos = 0
	pk.Ignore = true
	return pk, nil
}

// Ack sends the PUBACK of a QoS 1 publish (qos and packetID from its packet)
// that a hook deferred (see [Defer]); it does nothing for other QoS levels. code is
// packets.CodeSuccess, or for MQTT 5 clients an error code such as
// packets.ErrUnspecifiedError; a 3.1.1 client, which has no negative PUBACK, is
// disconnected instead so that it sends the message again.
func Ack(cl *mqtt.Client, qos byte, packetID uint16, code packets.Code) error {
	if qos != 1 {
		return nil
	}
	if code.Code >= packets.ErrUnspecifiedError.Code && cl.Properties.ProtocolVersion < 5 {
		if cl.Net.Conn != nil {
			_ = cl.Net.Conn.Close()
		}
		return nil
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    packetID,
		ReasonCode:  code.Code,
		Created:     time.Now().Unix(),
	}
	if code.Code >= packets.ErrUnspecifiedError.Code {
		ack.Properties.ReasonString = code.Reason
	}
	return cl.WritePacket(ack)
}

// Puback is the answer to one QoS 1 publish a hook deferred: its packet id, and
// packets.CodeSuccess or an error code (see [Ack]).
type Puback struct {
	PacketID uint16
	Code     packets.Code
}

// Acks sends the PUBACKs of QoS 1 publishes of one client that a hook deferred, in
// the order given, with one write to the connection, where [Ack] (mochi's
// WritePacket) encodes each packet in a buffer of its own and makes a system call
// for each. A success PUBACK is the same four bytes in MQTT 3.1.1 and 5 (no reason
// code, no properties: MQTT 5 §3.4.2.1); an MQTT 5 refusal is encoded by mochi's
// codec with the client's limits, as Ack would; an MQTT 3.1.1 client, which has no
// negative PUBACK, gets the acknowledgements before its refusal and then its
// connection is closed. The write holds the client's lock, as mochi's does, and is
// counted in the broker's packet and byte counters. Every acknowledgement of a
// deferred publish should go through Acks: one sent with Ack may wait in mochi's
// write buffer while the client has deliveries queued, and be overtaken.
func (b *Broker) Acks(cl *mqtt.Client, acks []Puback) error {
	if len(acks) == 0 {
		return nil
	}
	if cl.Closed() {
		return mqtt.ErrConnectionClosed
	}
	if cl.Net.Conn == nil {
		return nil
	}
	buf := make([]byte, 0, 4*len(acks))
	var packetsN int64
	refused := false
	for _, a := range acks {
		if a.Code.Code < packets.ErrUnspecifiedError.Code {
			buf = append(buf, packets.Puback<<4, 2, byte(a.PacketID>>8), byte(a.PacketID))
			packetsN++
			continue
		}
		if cl.Properties.ProtocolVersion < 5 {
			refused = true
			break
		}
		var err error
		if buf, err = appendRefusal(buf, cl, a); err != nil {
			return fmt.Errorf("broker: puback %d: %w", a.PacketID, err)
		}
		packetsN++
	}
	var err error
	if len(buf) > 0 {
		cl.Lock()
		var n int
		n, err = cl.Net.Conn.Write(buf)
		cl.Unlock()
		atomic.AddInt64(&b.srv.Info.BytesSent, int64(n))
		if n == len(buf) {
			atomic.AddInt64(&b.srv.Info.PacketsSent, packetsN)
		}
	}
	if refused {
		_ = cl.Net.Conn.Close()
	}
	if err != nil {
		return fmt.Errorf("broker: puback: %w", err)
	}
	return nil
}

// appendRefusal appends an MQTT 5 PUBACK with an error code, encoded by mochi as
// WritePacket would encode it for cl: its reason string only when the client allows
// problem information and the packet stays within the client's maximum size.
func appendRefusal(buf []byte, cl *mqtt.Client, a Puback) ([]byte, error) {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Puback},
		PacketID:        a.PacketID,
		ReasonCode:      a.Code.Code,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties:      packets.Properties{ReasonString: a.Code.Reason},
	}
	pk.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
	if cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0 {
		pk.Mods.DisallowProblemInfo = true // [MQTT-3.1.2-29]
	}
	var out bytes.Buffer
	if err := pk.PubackEncode(&out); err != nil {
		return buf, err
	}
	if pk.Mods.MaxSize > 0 && uint32(out.Len()) > pk.Mods.MaxSize {
		return buf, packets.ErrPacketTooLarge
	}
	return append(buf, out.Bytes()...), nil
}

// DeviceID is the authenticated device id of cl (its MQTT username); "" for an
// anonymous client.
func DeviceID(cl *mqtt.Client) string { return string(cl.Properties.Username) }

// RefusePublish is what an OnPublish hook returns when it could not take a message (for
// example, the spool is full or failing), so that the publisher does not get a success:
//   - MQTT 5, QoS 1/2: the PUBACK/PUBREC carries 0x80 "unspecified error"; the client
//     knows the message was not accepted;
//   - MQTT 3.1.1, QoS 1/2: no PUBACK is sent and the connection is closed, so the client
//     sends the message again after reconnecting (3.1.1 has no negative PUBACK);
//   - QoS 0: the message is dropped; nobody can be told.
//
// In every case the message is not delivered to subscribers. (mochi treats any other
// error from OnPublish as a success for 3.1.1 clients and for QoS 0.)
func RefusePublish(cl *mqtt.Client, pk packets.Packet) error {
	if pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	if cl.Properties.ProtocolVersion >= 5 {
		return packets.ErrUnspecifiedError
	}
	if cl.Net.Conn != nil {
		// Closing the connection (rather than stopping the client) makes mochi treat it as
		// an abnormal end: the client's will message, if any, is published.
		_ = cl.Net.Conn.Close()
	}
	return packets.ErrRejectPacket
}
