package broker

import (
	"bytes"
	"log/slog"
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

// authHook authenticates devices against the credentials store and enforces the topic ACL.
// With anonymous access allowed, clients without a username may do anything.
type authHook struct {
	mqtt.HookBase
	log            *slog.Logger
	creds          *credentials.Store // nil when no credentials file is configured
	allowAnonymous bool
	maxPacketSize  uint32

	reloadMu   sync.Mutex
	lastReload time.Time

	authFailures atomic.Int64
	aclDenied    atomic.Int64
}

var _ mqtt.Hook = (*authHook)(nil)

func (h *authHook) ID() string { return "atrium-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketEncode}, []byte{b})
}

// anonymous reports whether cl is served without identity: no username, or no credentials
// file at all, with anonymous access allowed.
func (h *authHook) anonymous(cl *mqtt.Client) bool {
	return h.allowAnonymous && (h.creds == nil || len(cl.Properties.Username) == 0)
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.anonymous(cl) {
		return true
	}
	id := string(pk.Connect.Username)
	if h.creds == nil || id == "" || !pk.Connect.PasswordFlag {
		h.refuse(cl, id, "no credentials")
		return false
	}
	h.maybeReload()
	if !h.creds.Verify(id, string(pk.Connect.Password)) {
		h.refuse(cl, id, "bad username or password")
		return false
	}
	// A device may not take over the session of another device by using its id as client id.
	if cl.ID != id && h.creds.Has(cl.ID) {
		h.refuse(cl, id, "client id is another device's id")
		return false
	}
	return true
}

func (h *authHook) refuse(cl *mqtt.Client, id, reason string) {
	h.authFailures.Add(1)
	h.log.Warn("device authentication failed", "device", id, "client", cl.ID, "remote", cl.Net.Remote, "reason", reason)
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

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if h.anonymous(cl) {
		return true
	}
	if allowed(string(cl.Properties.Username), topic) {
		return true
	}
	h.aclDenied.Add(1)
	h.log.Warn("topic access denied", "device", string(cl.Properties.Username), "topic", topic, "publish", write)
	return false
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
func allowed(id, topic string) bool {
	if id == "" {
		return false
	}
	levels := strings.SplitN(topic, "/", 4)
	if len(levels) < 3 || levels[0] != TopicRoot || levels[2] != id {
		return false
	}
	return levels[1] != "#" // "+" as room is fine: it still names only this device's topics
}
