package broker

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/broker/credentials"
)

// TopicRoot is the first level of every device topic: atrium/<room_id>/<sensor_id>[/...].
const TopicRoot = "atrium"

// reloadEvery bounds how often a connecting client makes the broker stat the credentials file.
const reloadEvery = time.Second

// Why a connection was refused before its session, besides bad credentials (which
// mochi answers itself).
var (
	errClientIDTaken = errors.New("client id belongs to another identity's session")
	errThrottled     = errors.New("login throttled")
)

// aclRule decides whether device id may use topic (a topic name, or a subscription
// filter when subscribing). write is true for publishing.
type aclRule func(id, topic string, write bool) bool

// authHook authenticates devices against the credentials store, throttles failed
// logins, keeps every session to the identity that made it, and enforces the topic ACL.
// With anonymous access allowed, clients without a username may do anything.
type authHook struct {
	mqtt.HookBase
	log            *slog.Logger
	srv            *mqtt.Server
	creds          *credentials.Store // nil when no credentials file is configured
	allowAnonymous bool
	maxPacketSize  uint32
	connectTimeout time.Duration
	guard          *loginGuard
	rule           atomic.Pointer[aclRule] // allowed; a variable so tests can change the rules under held sessions

	reloadMu   sync.Mutex
	lastReload time.Time

	passed sync.Map // *mqtt.Client → struct{}: OnConnect let it in; OnConnectAuthenticate takes it

	claimMu sync.Mutex
	claims  map[string]*claim // client id → connections between OnConnect and their session

	authFailures     atomic.Int64
	aclDenied        atomic.Int64
	clientIDRefused  atomic.Int64
	loginsThrottled  atomic.Int64
	sessionsFiltered atomic.Int64
}

// claim holds a client id for the connections of one identity that passed OnConnect
// but are not yet in mochi's client list, so that two identities connecting at once
// with the same client id cannot both get through.
type claim struct {
	owner string
	conns []*mqtt.Client
}

var _ mqtt.Hook = (*authHook)(nil)

func newAuthHook(log *slog.Logger, creds *credentials.Store, cfg Config) *authHook {
	h := &authHook{
		log:            log,
		creds:          creds,
		allowAnonymous: cfg.AllowAnonymous,
		maxPacketSize:  uint32(cfg.MaxPacketSize),
		connectTimeout: cfg.ConnectTimeout,
		guard:          newLoginGuard(),
		claims:         map[string]*claim{},
	}
	h.setRule(func(id, topic string, _ bool) bool { return allowed(id, topic) })
	return h
}

func (h *authHook) setRule(r aclRule) { h.rule.Store(&r) }

func (h *authHook) ID() string { return "atrium-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketEncode,
		mqtt.OnPacketRead, mqtt.OnSubscribe, mqtt.OnSessionEstablish, mqtt.OnSessionEstablished:
		return true
	}
	return false
}

// anonymous reports whether cl is served without identity: no username, or no credentials
// file at all, with anonymous access allowed.
func (h *authHook) anonymous(cl *mqtt.Client) bool {
	if _, ok := certDevice(cl); ok {
		return false
	}
	return h.allowAnonymous && (h.creds == nil || len(cl.Properties.Username) == 0)
}

// identity is who owns cl's session: its device id, or "" for an anonymous client.
func (h *authHook) identity(cl *mqtt.Client) string {
	if h.anonymous(cl) {
		return ""
	}
	return string(cl.Properties.Username)
}

// permit is the topic ACL: an anonymous client may use every topic; a device, its own
// topics, while it is in the credentials file.
func (h *authHook) permit(cl *mqtt.Client, topic string, write bool) bool {
	if h.anonymous(cl) {
		return true
	}
	id := string(cl.Properties.Username)
	return (*h.rule.Load())(id, topic, write) && (h.creds != nil && h.creds.Has(id) || certIs(cl, id))
}

// OnConnect checks the client's credentials (throttled, see loginGuard), its will
// topic (a will outside its topics is dropped) and its right to the client id. Bad credentials are left to
// OnConnectAuthenticate, which makes mochi answer 0x86 (3.1.1: 5); the other refusals
// are answered here.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if !h.anonymous(cl) {
		switch h.login(cl, pk) {
		case loginRefused:
			return nil // not in passed: OnConnectAuthenticate refuses it
		case loginThrottled:
			return h.refuseConnect(cl, packets.ErrServerBusy, packets.ErrServerUnavailable, errThrottled)
		}
	}
	if cl.Properties.Will.Flag == 1 && !h.permit(cl, cl.Properties.Will.TopicName, true) {
		// mochi publishes a will without any ACL check. The connection is kept (the
		// agent's devices have long been let in with such wills) but the will is dropped.
		h.aclDenied.Add(1)
		h.log.Warn("will outside the client's topics dropped", "client", cl.ID, "device", h.identity(cl),
			"remote", cl.Net.Remote, "topic", cl.Properties.Will.TopicName, "bytes", len(cl.Properties.Will.Payload))
		cl.Properties.Will = mqtt.Will{}
	}
	if owner, ok := h.claim(cl); !ok {
		h.clientIDRefused.Add(1)
		h.log.Warn("connection refused: client id belongs to another device's session", "client", cl.ID,
			"device", h.identity(cl), "owner", owner, "remote", cl.Net.Remote)
		return h.refuseConnect(cl, packets.ErrClientIdentifierNotValid, packets.ErrClientIdentifierNotValid, errClientIDTaken)
	}
	h.passed.Store(cl, struct{}{})
	return nil
}

// refuseConnect answers CONNECT with code (MQTT 5) or v3code (3.1.1, which mochi maps
// to a 3.1.1 return code) and returns err, which ends the connection.
func (h *authHook) refuseConnect(cl *mqtt.Client, code, v3code packets.Code, err error) error {
	if cl.Properties.ProtocolVersion < 5 {
		code = v3code
	}
	if werr := h.srv.SendConnack(cl, code, false, nil); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	_, ok := h.passed.LoadAndDelete(cl)
	return ok
}

type loginVerdict int

const (
	loginRefused loginVerdict = iota
	loginAccepted
	loginThrottled
)

// login verifies the username and password of cl's CONNECT. A password already
// verified for that device is accepted at once; any other attempt waits its turn
// (loginGuard) and costs one bcrypt comparison, for an unknown username too. A failure
// is answered after the username's delay.
func (h *authHook) login(cl *mqtt.Client, pk packets.Packet) loginVerdict {
	if id, ok := certDevice(cl); ok {
		return h.certLogin(cl, pk, id)
	}
	start := time.Now()
	id := string(pk.Connect.Username)
	addr := addrKey(cl.Net.Remote)
	if h.creds == nil || id == "" || !pk.Connect.PasswordFlag {
		h.guard.sleep(h.guard.failed(addr, id))
		h.refuse(cl, id, "no credentials")
		return loginRefused
	}
	h.maybeReload()
	password := string(pk.Connect.Password)
	if h.creds.Cached(id, password) {
		return loginAccepted
	}
	wait, ok := h.guard.admit(addr)
	if !ok {
		h.throttled(cl, id, "address over its failed-login allowance")
		return loginThrottled
	}
	h.guard.sleep(wait)
	spare, ok := h.guard.acquire(addr)
	if !ok {
		return loginThrottled // shutting down
	}
	if time.Since(start) > h.connectTimeout {
		// The client has given up by now (or its connection deadline has passed):
		// a bcrypt run would be wasted.
		h.guard.release(spare)
		h.throttled(cl, id, "waited longer than the connect timeout")
		return loginThrottled
	}
	ok = h.creds.Verify(id, password)
	h.guard.release(spare)
	if !ok {
		h.guard.sleep(h.guard.failed(addr, id))
		h.refuse(cl, id, "bad username or password")
		return loginRefused
	}
	return loginAccepted
}

func (h *authHook) refuse(cl *mqtt.Client, id, reason string) {
	h.authFailures.Add(1)
	h.log.Warn("device authentication failed", "device", id, "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
}

// throttled counts an attempt refused as busy. It is logged at debug level only: such
// refusals cost nothing and can come by the thousand; the counter tells.
func (h *authHook) throttled(cl *mqtt.Client, id, reason string) {
	h.loginsThrottled.Add(1)
	h.log.Debug("login throttled", "device", id, "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
}

// maybeReload picks up devices added or removed while the broker runs.
func (h *authHook) maybeReload() {
	h.reloadMu.Lock()
	if time.Since(h.lastReload) < reloadEvery {
		h.reloadMu.Unlock()
		return
	}
	h.lastReload = time.Now()
	h.reloadMu.Unlock()
	changed, err := h.creds.ReloadIfChanged()
	if err != nil {
		h.log.Error("credentials reload failed, keeping the previous devices", "error", err)
		return
	}
	if changed {
		h.log.Info("credentials reloaded", "devices", h.creds.Len())
	}
}

// OnACLCheck is mochi's check of a publish (write), a subscription filter, and every
// delivery of a message to a client, queued ones included. Refused publishes and
// subscriptions are logged by OnPacketRead and OnSubscribe, which see the whole packet.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.permit(cl, topic, write) {
		return true
	}
	h.aclDenied.Add(1)
	if !write {
		h.log.Debug("topic access denied", "client", cl.ID, "device", h.identity(cl), "topic", topic)
	}
	return false
}

// OnPacketRead logs a publish that the ACL will refuse: client, device, topic and size,
// never the payload.
func (h *authHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && !h.permit(cl, pk.TopicName, true) {
		h.log.Warn("publish refused by topic ACL", "client", cl.ID, "device", h.identity(cl),
			"topic", pk.TopicName, "bytes", len(pk.Payload), "qos", pk.FixedHeader.Qos)
	}
	return pk, nil
}

// OnSubscribe logs the filters of a SUBSCRIBE that the ACL will refuse.
func (h *authHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	for _, sub := range pk.Filters {
		if !h.permit(cl, sub.Filter, false) {
			h.log.Warn("subscription refused by topic ACL", "client", cl.ID, "device", h.identity(cl), "filter", sub.Filter)
		}
	}
	return pk
}

// OnPacketEncode advertises the broker's maximum packet size in the MQTT 5 CONNACK, so
// well-behaved clients do not send what would be refused.
func (h *authHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && h.maxPacketSize > 0 {
		pk.Properties.MaximumPacketSize = h.maxPacketSize
	}
	return pk
}

// allowed reports whether device id may use topic, a topic name or a subscription filter:
// atrium/<room>/<id> or anything below it, one room level (any room, "+" in a filter).
// Publishing and subscribing follow the same rule, so a device reads only its own topics.
// It runs twice for every publish of a device, so it cuts the topic in place.
func allowed(id, topic string) bool {
	if id == "" {
		return false
	}
	rest, ok := strings.CutPrefix(topic, TopicRoot+"/")
	if !ok {
		return false
	}
	room, rest, ok := strings.Cut(rest, "/")
	if !ok || room == "#" { // "+" as room is fine: it still names only this device's topics
		return false
	}
	device, _, _ := strings.Cut(rest, "/")
	return device == id
}

// claim takes client id cl.ID for cl's identity, unless a session or a connection being
// set up already holds it for another identity (or for the broker's own inline client),
// which it then returns.
func (h *authHook) claim(cl *mqtt.Client) (owner string, ok bool) {
	me := h.identity(cl)
	// A device may not use another device's id as client id: that would squat the
	// session the other device will ask for.
	if h.creds != nil && cl.ID != me && h.creds.Has(cl.ID) {
		return cl.ID, false
	}
	h.claimMu.Lock()
	defer h.claimMu.Unlock()
	if existing, found := h.srv.Clients.Get(cl.ID); found {
		if existing.Net.Inline {
			return "(broker)", false
		}
		if owner := h.identity(existing); owner != me {
			return owner, false
		}
	}
	c := h.claims[cl.ID]
	if c == nil {
		if len(h.claims) >= 1024 {
			h.sweepClaims()
		}
		c = &claim{owner: me}
		h.claims[cl.ID] = c
	}
	c.conns = slices.DeleteFunc(c.conns, (*mqtt.Client).Closed)
	if len(c.conns) > 0 && c.owner != me {
		return c.owner, false
	}
	c.owner = me
	c.conns = append(c.conns, cl)
	return me, true
}

// sweepClaims forgets claims whose connections all ended before their session (a
// CONNACK that could not be written). h.claimMu is held.
func (h *authHook) sweepClaims() {
	for id, c := range h.claims {
		if !slices.ContainsFunc(c.conns, func(cl *mqtt.Client) bool { return !cl.Closed() }) {
			delete(h.claims, id)
		}
	}
}

// unclaim drops cl's claim once mochi lists its session.
func (h *authHook) unclaim(cl *mqtt.Client) {
	h.claimMu.Lock()
	defer h.claimMu.Unlock()
	c := h.claims[cl.ID]
	if c == nil {
		return
	}
	c.conns = slices.DeleteFunc(c.conns, func(x *mqtt.Client) bool { return x == cl || x.Closed() })
	if len(c.conns) == 0 {
		delete(h.claims, cl.ID)
	}
}

// OnSessionEstablish runs before mochi hands a persistent session over to cl (its
// subscriptions, and its queued and unacknowledged messages, which mochi sends at once):
// whatever of it the ACL no longer allows cl is dropped first. The session is cl's own
// identity's (OnConnect made sure), but its rules may have changed since it was made.
func (h *authHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return // mochi discards the old session
	}
	old, ok := h.srv.Clients.Get(cl.ID)
	if !ok || old == cl || old.Net.Inline {
		return
	}
	var subs, msgs int
	for _, sub := range old.State.Subscriptions.GetAll() {
		if h.permit(cl, sub.Filter, false) {
			continue
		}
		old.State.Subscriptions.Delete(sub.Filter)
		if h.srv.Topics.Unsubscribe(sub.Filter, old.ID) {
			atomic.AddInt64(&h.srv.Info.Subscriptions, -1)
		}
		subs++
	}
	for _, m := range old.State.Inflight.GetAll(false) {
		// An outgoing message sent with a topic alias has no topic name: drop it too.
		if m.FixedHeader.Type != packets.Publish || (m.TopicName != "" && h.permit(cl, m.TopicName, false)) {
			continue
		}
		if old.State.Inflight.Delete(m.PacketID) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
			msgs++
		}
	}
	if subs+msgs > 0 {
		h.sessionsFiltered.Add(1)
		h.aclDenied.Add(int64(subs + msgs))
		h.log.Warn("resumed session: dropped what the topic ACL no longer allows", "client", cl.ID,
			"device", h.identity(cl), "subscriptions", subs, "messages", msgs)
	}
}

func (h *authHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.unclaim(cl)
}
