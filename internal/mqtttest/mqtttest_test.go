package mqtttest_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/atrium-iot/atrium/internal/mqtttest"
)

func TestClient(t *testing.T) {
	// Only user "dev" with password "pw" gets in, and may publish on dev/# only.
	addr := mqtttest.Serve(t, new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{
		Auth: auth.AuthRules{{Username: "dev", Password: "pw", Allow: true}},
		ACL:  auth.ACLRules{{Username: "dev", Filters: auth.Filters{"dev/#": auth.ReadWrite, "#": auth.ReadOnly}}},
	}})
	o := mqtttest.Options{Within: 10 * time.Second}

	t.Run("refused", func(t *testing.T) {
		c, ack, err := mqtttest.Dial(t, addr, mqtttest.Login("x", "dev", "wrong"), o)
		if err == nil || c != nil {
			t.Fatalf("connected with a wrong password")
		}
		if ack == nil || ack.ReasonCode != packets.ErrBadUsernameOrPassword.Code {
			t.Errorf("CONNACK %+v, want reason %#x", ack, packets.ErrBadUsernameOrPassword.Code)
		}
	})

	sub := mqtttest.MustDial(t, addr, mqtttest.Login("sub", "dev", "pw"), o)
	sub.MustSubscribe(t, "dev/#", 1)
	pub := mqtttest.MustDial(t, addr, mqtttest.Login("pub", "dev", "pw"), o)
	pub.MustSend(t, "dev/a", 1, []byte("1"))
	pub.MustSend(t, "dev/b", 0, []byte("2"))
	msgs := sub.WaitTopic(t, "dev/b")
	if len(msgs) != 2 || msgs[0].Topic != "dev/a" || !bytes.Equal(msgs[0].Payload, []byte("1")) || string(msgs[1].Payload) != "2" {
		t.Errorf("received %+v, want dev/a 1 then dev/b 2", msgs)
	}
	if n := len(sub.Messages()); n != 2 {
		t.Errorf("Messages: %d, want 2", n)
	}

	if rc, err := pub.Send("other/a", 1, []byte("3")); err != nil || rc < 0x80 {
		t.Errorf("publish outside the ACL: reason %#x, error %v; want a refusal without error", rc, err)
	}

	// A dropped client's will is sent; a closed one's is not.
	for _, id := range []string{"dropped", "closed"} {
		cp := mqtttest.Login(id, "dev", "pw")
		cp.WillMessage = &paho.WillMessage{Topic: "dev/will/" + id, QoS: 1, Payload: []byte("offline")}
		c, _, err := mqtttest.Dial(t, addr, cp, o)
		if err != nil {
			t.Fatal(err)
		}
		if id == "dropped" {
			c.Drop()
		} else {
			c.Close()
		}
	}
	sub.WaitTopic(t, "dev/will/dropped")

	// A client taken over by another with its client id is told so.
	kicked := make(chan byte, 1)
	mqtttest.MustDial(t, addr, mqtttest.Login("twin", "dev", "pw"), mqtttest.Options{Within: o.Within,
		OnServerDisconnect: func(d *paho.Disconnect) { kicked <- d.ReasonCode }})
	mqtttest.MustDial(t, addr, mqtttest.Login("twin", "dev", "pw"), o)
	select {
	case rc := <-kicked:
		if rc != packets.ErrSessionTakenOver.Code {
			t.Errorf("DISCONNECT reason %#x, want %#x", rc, packets.ErrSessionTakenOver.Code)
		}
	case <-time.After(o.Within):
		t.Error("the first twin was not told of the takeover")
	}
	for _, m := range sub.Messages() {
		if m.Topic == "dev/will/closed" {
			t.Error("a client closed with DISCONNECT had its will sent")
		}
	}
}
