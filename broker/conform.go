package broker

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// conformHook corrects what mochi v2.7.9 sends against the MQTT 5 specification, and
// applies the server keep-alive cap:
//   - mochi answers a QoS 1 PUBLISH with a PUBACK of reason code 0x01 (it takes the
//     "granted QoS 1" code of a SUBACK), which is not a PUBACK reason code; clients
//     such as Paho's drop the connection on it. A success is 0x00.
//   - mochi copies the PUBLISH's properties (user properties, content type...) into
//     its PUBACK/PUBREC/PUBREL/PUBCOMP unless NoInheritedPropertiesOnAck is set (New
//     sets it), and the SUBSCRIBE's user properties into the SUBACK and UNSUBACK
//     always. An acknowledgement carries only what the server itself says: here, at
//     most a reason string.
//   - a reason code that is not valid for the packet type is replaced by the
//     nearest valid one: 0x00 for a success, 0x80 "unspecified error" for a failure.
type conformHook struct {
	mqtt.HookBase
	maxKeepAlive uint16 // seconds; 0: no cap
}

var _ mqtt.Hook = (*conformHook)(nil)

func (h *conformHook) ID() string { return "atrium-conform" }

func (h *conformHook) Provides(b byte) bool {
	return b == mqtt.OnPacketEncode || (b == mqtt.OnConnect && h.maxKeepAlive > 0)
}

// OnConnect caps an MQTT 5 client's keep alive at maxKeepAlive (a client asking for
// none, 0, gets the cap too): the CONNACK's Server Keep Alive tells the client, which
// must use it, and the broker drops a client silent for 1.5 times it. An MQTT 3.1.1
// client cannot be told, so it keeps the keep alive it asked for.
func (h *conformHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if pk.ProtocolVersion < 5 {
		return nil
	}
	if ka := pk.Connect.Keepalive; ka == 0 || ka > h.maxKeepAlive {
		cl.State.Keepalive = h.maxKeepAlive
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnPacketEncode makes acknowledgements follow the specification (see conformHook).
func (h *conformHook) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	valid, ok := ackCodes[pk.FixedHeader.Type]
	if !ok {
		return pk
	}
	pk.Properties = packets.Properties{ReasonString: pk.Properties.ReasonString}
	switch pk.FixedHeader.Type {
	case packets.Suback, packets.Unsuback:
		for i, c := range pk.ReasonCodes {
			if !valid[c] {
				pk.ReasonCodes[i] = fixCode(c)
			}
		}
	default:
		if !valid[pk.ReasonCode] {
			pk.ReasonCode = fixCode(pk.ReasonCode)
		}
	}
	return pk
}

func fixCode(c byte) byte {
	if c < packets.ErrUnspecifiedError.Code {
		return packets.CodeSuccess.Code
	}
	return packets.ErrUnspecifiedError.Code
}

func codeSet(codes ...byte) map[byte]bool {
	m := make(map[byte]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// ackCodes are the reason codes each acknowledgement may carry (MQTT 5.0 §3.4.2.1,
// §3.5.2.1, §3.6.2.1, §3.7.2.1, §3.9.3, §3.11.3).
var ackCodes = map[byte]map[byte]bool{
	packets.Puback:   codeSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
	packets.Pubrec:   codeSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
	packets.Pubrel:   codeSet(0x00, 0x92),
	packets.Pubcomp:  codeSet(0x00, 0x92),
	packets.Suback:   codeSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2),
	packets.Unsuback: codeSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91),
}

// origins lends inline clients that stand for a publisher when a message it sent is
// handed to mochi again (see Broker.Publish): mochi's own inline client would be the
// sender, and noLocal subscriptions would then receive their own messages.
type origins struct {
	srv  *mqtt.Server
	pool sync.Pool
}

func (o *origins) get(from *mqtt.Client) *mqtt.Client {
	cl, _ := o.pool.Get().(*mqtt.Client)
	if cl == nil {
		cl = o.srv.NewClient(nil, "local", "", true)
	}
	cl.ID = from.ID
	cl.Properties.ProtocolVersion = from.Properties.ProtocolVersion
	cl.Properties.Username = from.Properties.Username
	return cl
}

func (o *origins) put(cl *mqtt.Client) {
	cl.ID, cl.Properties.Username = "", nil
	o.pool.Put(cl)
}

// Publish hands pk, a PUBLISH that cl sent and that a hook took off mochi's path
// (OnPublish returned [Defer]), to the broker's subscribers and keeps
// it when retained, as mochi would have done: every MQTT 5 property kept (user
// properties, response topic, correlation data, content type, payload format), the
// message expiry counted from received (when mochi read the PUBLISH; a message that
// has expired meanwhile is delivered to nobody), and cl as the sender, so that
// noLocal subscriptions of cl do not receive it. The ACL was checked when cl
// published; cl's retained allowance is checked here (see Config.MaxRetained: a
// message over it is delivered but not retained). Hooks see the message with an
// inline client (cl.Net.Inline) whose ID is cl's, and must let it pass. It
// acknowledges nothing: see Ack.
func (b *Broker) Publish(cl *mqtt.Client, pk packets.Packet, received time.Time) error {
	if pk.FixedHeader.Retain && b.keep.limited() {
		pk.FixedHeader.Retain = b.keep.admit(cl, pk.TopicName, pk.Payload, &pk.Properties)
	}
	if !pk.FixedHeader.Retain {
		subs := b.srv.Topics.Subscribers(pk.TopicName)
		if len(subs.Subscriptions) == 0 && len(subs.Shared) == 0 && len(subs.InlineSubscriptions) == 0 {
			return nil // nobody to deliver to: skip the broker's publish path
		}
	}
	if e := pk.Properties.MessageExpiryInterval; e > 0 {
		// mochi counts expiry in whole seconds from the second it read the message.
		left := received.Unix() + int64(e) - time.Now().Unix()
		if left <= 0 {
			b.expired.Add(1)
			return nil
		}
		pk.Properties.MessageExpiryInterval = uint32(left)
	}
	// The topic alias was the publisher's, already resolved into TopicName.
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	pk.Origin, pk.Created, pk.Expiry = "", 0, 0
	from := b.origins.get(cl)
	defer b.origins.put(from)
	if pk.FixedHeader.Retain && b.keep.limited() {
		// mochi retains it with from as the client: book it against cl's owner.
		b.keep.origins.Store(from, b.keep.ownerOf(cl))
		defer b.keep.origins.Delete(from)
	}
	b.injected.Add(1)
	if err := b.srv.InjectPacket(from, pk); err != nil {
		return fmt.Errorf("broker: publish %s: %w", pk.TopicName, err)
	}
	return nil
}

// gauges are the broker's gauges, read from its sessions and retained messages at
// the time asked (mochi's own gauges drift: see Stats).
func (b *Broker) gauges() (connected, subscriptions, inflight int64) {
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		if cl.Net.Conn != nil && !cl.Closed() {
			connected++
		}
		subscriptions += int64(cl.State.Subscriptions.Len())
		inflight += int64(cl.State.Inflight.Len())
	}
	return connected, subscriptions, inflight
}

// retained counts the retained messages of clients. mochi keeps its own $SYS
// figures as retained messages too (about 20, always the same topics, which clients
// cannot publish to): they are left out. (mochi's Topics.Messages, which would find
// them, reads its index without its lock.)
func (b *Broker) retained() int64 {
	n := int64(b.srv.Topics.Retained.Len())
	sys := b.sysRetained.Load()
	if sys == 0 && n > 0 {
		for topic := range b.srv.Topics.Retained.GetAll() {
			if strings.HasPrefix(topic, "$SYS/") {
				sys++
			}
		}
		b.sysRetained.Store(sys)
	}
	return max(n-sys, 0)
}

// counters Atrium keeps where mochi's are off.
type counters struct {
	injected atomic.Int64 // messages handed to mochi again by Publish: mochi counts them as received twice
	expired  atomic.Int64 // messages Publish found expired before delivery

	sysRetained atomic.Int64 // mochi's own $SYS retained messages, once seen
}
