package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// retainWarnEvery bounds how often a publisher over its retained allowance is logged.
const retainWarnEvery = time.Minute

// retainHook keeps the retained messages of each publisher within an allowance
// (Config.MaxRetained topics and Config.MaxRetainedBytes bytes), so that one device
// cannot fill the gateway's memory with retained messages on its own subtopics.
//
// Its books mirror mochi's retained store: every client's retained message held,
// with its owner and size, kept up to date by mochi's OnRetainMessage (added,
// replaced, deleted) and OnRetainedExpired (message expiry) hooks. The decision is
// taken once per message, just before mochi would retain it, against the books:
//   - a PUBLISH on mochi's own path: in OnPublish, which runs after every other hook
//     (Start adds this one last), so that a message another hook took off mochi's
//     path (Defer) is not decided here;
//   - a PUBLISH a hook deferred: in Broker.Publish, when it hands the message back;
//   - a will: in OnWill, when mochi is about to send it.
//
// A retained message over the allowance is delivered as usual but not retained: its
// retain flag is cleared, and a retained message it would have replaced stays. An
// empty retained payload (a deletion) always passes. Decision and retention are not
// one atomic step, so clients of one identity publishing at the same moment may
// together go over by one message each.
type retainHook struct {
	mqtt.HookBase
	log       *slog.Logger
	auth      *authHook
	maxTopics int   // 0: no limit
	maxBytes  int64 // 0: no limit
	refused   atomic.Int64

	// origins maps an inline client standing in for a publisher (Broker.Publish) to
	// that publisher's owner, while mochi retains the message it hands back.
	origins sync.Map // *mqtt.Client → retainOwner

	mu      sync.Mutex
	held    map[string]heldRetained // topic → the client's retained message mochi holds
	owners  map[retainOwner]*retainUsage
	sweepAt int // len(owners) at which owners without messages are forgotten
}

// retainOwner is whom a retained message counts against: a device (its id), or an
// anonymous client (its client id: anonymous access is for development, where many
// simulated devices share the anonymous identity; there the allowance bounds a
// misbehaving client, not a hostile one, which could take new client ids). The
// broker's own messages count against the zero owner, which is never refused.
type retainOwner struct {
	anonymous bool
	id        string
}

type heldRetained struct {
	owner retainOwner
	size  int64
}

type retainUsage struct {
	topics int
	bytes  int64
	warned time.Time // last warning logged for it
}

var _ mqtt.Hook = (*retainHook)(nil)

func newRetainHook(log *slog.Logger, auth *authHook, cfg Config) *retainHook {
	return &retainHook{
		log: log, auth: auth,
		maxTopics: allowance(cfg.MaxRetained, DefaultMaxRetained),
		maxBytes:  int64(allowance(cfg.MaxRetainedBytes, DefaultMaxRetainedBytes)),
		held:      map[string]heldRetained{}, owners: map[retainOwner]*retainUsage{}, sweepAt: 1024,
	}
}

// allowance is a limit of Config: 0 is def, a negative one none (0 here).
func allowance(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

func (h *retainHook) ID() string { return "atrium-retain" }

// limited reports whether there is an allowance to keep: without one the hook
// provides nothing and keeps no books.
func (h *retainHook) limited() bool { return h.maxTopics > 0 || h.maxBytes > 0 }

func (h *retainHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnWill, mqtt.OnRetainMessage, mqtt.OnRetainedExpired:
		return h.limited()
	}
	return false
}

// ownerOf is whom cl's retained messages count against.
func (h *retainHook) ownerOf(cl *mqtt.Client) retainOwner {
	if cl.Net.Inline {
		o, _ := h.origins.Load(cl)
		owner, _ := o.(retainOwner)
		return owner
	}
	if h.auth.anonymous(cl) {
		return retainOwner{anonymous: true, id: cl.ID}
	}
	return retainOwner{id: string(cl.Properties.Username)}
}

// retainedSize is what a retained message counts for: its topic, payload and the
// variable-length properties mochi keeps with it.
func retainedSize(topic string, payload []byte, p *packets.Properties) int64 {
	n := len(topic) + len(payload)
	if p != nil {
		n += len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData)
		for _, u := range p.User {
			n += len(u.Key) + len(u.Val)
		}
	}
	return int64(n)
}

// OnPublish clears the retain flag of a client's retained PUBLISH that its owner's
// allowance has no room for.
func (h *retainHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || pk.Ignore || !pk.FixedHeader.Retain {
		return pk, nil // Broker.Publish decided for the inline client's
	}
	pk.FixedHeader.Retain = h.admit(cl, pk.TopicName, pk.Payload, &pk.Properties)
	return pk, nil
}

// OnWill clears the retain flag of a will its owner's allowance has no room for.
func (h *retainHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.Retain {
		will.Retain = h.admit(cl, will.TopicName, will.Payload, &packets.Properties{User: will.User})
	}
	return will, nil
}

// admit reports whether cl's retained message on topic may be retained: a deletion
// always; otherwise if its owner stays within the allowance, counting a message that
// replaces one of its own by the difference. A refusal is counted and logged (at most
// once a minute per owner), never with the payload.
func (h *retainHook) admit(cl *mqtt.Client, topic string, payload []byte, props *packets.Properties) bool {
	if len(payload) == 0 || !h.limited() {
		return true
	}
	o := h.ownerOf(cl)
	size := retainedSize(topic, payload, props)
	h.mu.Lock()
	u := h.owners[o]
	var topics int
	var bytes int64
	if u != nil {
		topics, bytes = u.topics, u.bytes
	}
	if old, ok := h.held[topic]; ok && old.owner == o {
		bytes -= old.size
	} else {
		topics++
	}
	bytes += size
	if (h.maxTopics == 0 || topics <= h.maxTopics) && (h.maxBytes == 0 || bytes <= h.maxBytes) {
		h.mu.Unlock()
		return true
	}
	h.refused.Add(1)
	if u == nil {
		u = h.usage(o)
	}
	now := time.Now()
	warn := now.Sub(u.warned) >= retainWarnEvery
	if warn {
		u.warned = now
	}
	h.mu.Unlock()
	if warn {
		h.log.Warn("retained message not retained: the publisher's retained allowance is full (delivered, not kept)",
			"client", cl.ID, "device", h.auth.identity(cl), "topic", topic, "bytes", len(payload),
			"max_retained", h.maxTopics, "max_retained_bytes", h.maxBytes)
	}
	return false
}

// OnRetainMessage books what mochi did to the retained message of pk's topic:
// replaced or deleted the one held, and kept pk unless its payload is empty.
func (h *retainHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, _ int64) {
	o := h.ownerOf(cl)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop(pk.TopicName)
	if len(pk.Payload) == 0 {
		return
	}
	size := retainedSize(pk.TopicName, pk.Payload, &pk.Properties)
	h.held[pk.TopicName] = heldRetained{owner: o, size: size}
	u := h.usage(o)
	u.topics++
	u.bytes += size
}

// OnRetainedExpired books a retained message mochi removed on its expiry.
func (h *retainHook) OnRetainedExpired(topic string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.drop(topic)
}

// drop takes topic's retained message off the books. h.mu is held.
func (h *retainHook) drop(topic string) {
	old, ok := h.held[topic]
	if !ok {
		return
	}
	delete(h.held, topic)
	u := h.owners[old.owner]
	if u == nil {
		return
	}
	u.topics--
	u.bytes -= old.size
	if u.topics <= 0 && time.Since(u.warned) >= retainWarnEvery {
		delete(h.owners, old.owner)
	}
}

// usage is o's entry, made if need be; owners holding nothing and not warned
// lately are forgotten as the map grows. h.mu is held.
func (h *retainHook) usage(o retainOwner) *retainUsage {
	if u := h.owners[o]; u != nil {
		return u
	}
	if len(h.owners) >= h.sweepAt {
		for k, u := range h.owners {
			if u.topics <= 0 && time.Since(u.warned) >= retainWarnEvery {
				delete(h.owners, k)
			}
		}
		h.sweepAt = max(2*len(h.owners), 1024)
	}
	u := &retainUsage{}
	h.owners[o] = u
	return u
}

// usageOf reports the retained messages and bytes booked against o.
func (h *retainHook) usageOf(o retainOwner) (topics int, bytes int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if u := h.owners[o]; u != nil {
		return u.topics, u.bytes
	}
	return 0, 0
}
