package agent_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/internal/mqtttest"
	"github.com/atrium-iot/atrium/internal/testenv"
)

// brokerStatus is the broker part of /status.
type brokerStatus struct {
	Broker struct {
		Subscriptions, Retained, Inflight, MessagesReceived int64
	}
}

// A reading published on a reading topic reaches MQTT subscribers as the device sent
// it (it went through the spool first): every MQTT 5 property, QoS 0, 1 and 2 alike,
// and the device stays the sender, so its own noLocal subscription does not get it
// back. Its PUBACK/PUBREC carries no property and a valid reason code.
func TestReadingDeliveredAsSent(t *testing.T) {
	subBin := testenv.Tool(t, "mosquitto_sub")
	cloud := startCloud(t)
	r := startAgent(t, cloud.url)
	host, port, _ := net.SplitHostPort(r.mqtt)

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	sub := exec.CommandContext(ctx, subBin, "-h", host, "-p", port, "-V", "5", "-i", "watcher", "-q", "2",
		"-t", "atrium/r1/sensor_a/#", "-C", "3", "-F", "%t|%q|%p|%C|%D|%E|%F|%R|%P")
	var out bytes.Buffer
	sub.Stdout, sub.Stderr = &out, &out
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	poll(t, "mosquitto_sub subscribed", func() bool {
		var st brokerStatus
		getJSON(t, r.status+"/status", &st)
		return st.Broker.Subscriptions == 1
	})

	dev := mustDial(t, r.mqtt, "sensor_a")
	if _, err := dev.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "atrium/r1/#", QoS: 2, NoLocal: true}}}); err != nil {
		t.Fatal(err)
	}
	expiry, format := uint32(60), byte(1)
	props := &paho.PublishProperties{ContentType: "text/plain", CorrelationData: []byte("c1"), MessageExpiry: &expiry,
		PayloadFormat: &format, ResponseTopic: "atrium/r1/sensor_a/reply", User: paho.UserProperties{{Key: "fw", Value: "1.2"}}}
	for _, qos := range []byte{0, 1, 2} {
		pr, err := dev.Publish(ctx, &paho.Publish{QoS: qos, Topic: "atrium/r1/sensor_a/temperature", Payload: []byte("21.5"), Properties: props})
		if err != nil {
			t.Fatalf("QoS %d: %v", qos, err)
		}
		if qos > 0 && (pr.ReasonCode != 0 || pr.Properties != nil && len(pr.Properties.User) > 0) {
			t.Errorf("QoS %d acknowledgement: reason %#x, properties %+v", qos, pr.ReasonCode, pr.Properties)
		}
	}
	if err := sub.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("mosquitto_sub printed %q", out.String())
	}
	for i, line := range lines {
		f := strings.Split(line, "|")
		want := []string{"atrium/r1/sensor_a/temperature", string(rune('0' + i)), "21.5", "text/plain", "c1", "", "1", "atrium/r1/sensor_a/reply", "fw:1.2"}
		if len(f) != len(want) || f[5] == "" || f[5] > "60" || len(f[5]) > 2 {
			t.Errorf("message %d: %q", i, line)
			continue
		}
		f[5] = ""
		for j := range want {
			if f[j] != want[j] {
				t.Errorf("message %d field %d: %q, want %q (%q)", i, j, f[j], want[j], line)
			}
		}
	}

	// The device's noLocal subscription got none of its own readings; another's it gets.
	other := mustDial(t, r.mqtt, "sensor_b")
	if _, err := other.Publish(ctx, &paho.Publish{QoS: 1, Topic: "atrium/r1/sensor_b/temperature", Payload: []byte("20")}); err != nil {
		t.Fatal(err)
	}
	got := dev.Wait(t, "reading of another device", func(msgs []*paho.Publish) bool { return len(msgs) > 0 })
	if len(got) != 1 || got[0].Topic != "atrium/r1/sensor_b/temperature" {
		t.Errorf("the device's noLocal subscription got %d messages, the first on %s", len(got), got[0].Topic)
	}
	var st brokerStatus
	getJSON(t, r.status+"/status", &st)
	if st.Broker.MessagesReceived != 4 || st.Broker.Retained != 0 || st.Broker.Inflight < 0 {
		t.Errorf("/status broker: %+v; want 4 received, none retained", st.Broker)
	}
}

// TestMaxKeepAliveFlag: -max-keepalive is told to MQTT 5 clients that ask for more.
func TestMaxKeepAliveFlag(t *testing.T) {
	if _, err := agent.ParseFlags([]string{"-max-keepalive=1500ms"}, noEnv, io.Discard); err == nil {
		t.Error("-max-keepalive=1500ms accepted")
	}
	r := startAgent(t, "http://127.0.0.1:1", "-max-keepalive=60s")
	_, ack, err := mqtttest.Dial(t, r.mqtt, &paho.Connect{ClientID: "ka", KeepAlive: 120, CleanStart: true}, mqtttest.Options{Within: waitFor})
	if err != nil {
		t.Fatal(err)
	}
	if ack.Properties == nil || ack.Properties.ServerKeepAlive == nil || *ack.Properties.ServerKeepAlive != 60 {
		t.Errorf("CONNACK properties %+v; want Server Keep Alive 60", ack.Properties)
	}
}
