package agent_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/internal/mqtttest"
)

// A device's retained messages on its own reading topics go through the pipeline
// (QoS 0 and 1) or the synchronous path (QoS 2); either way the broker holds it to its
// allowance: the first -max-retained topics are retained, the rest delivered and
// counted; a deletion frees a slot; another device's allowance is its own.
func TestRetainedAllowance(t *testing.T) {
	t.Parallel()
	cl := startCloud(t)
	file := filepath.Join(t.TempDir(), "credentials.json")
	pw := map[string]string{"dev-r": addDevice(t, file, "dev-r"), "dev-s": addDevice(t, file, "dev-s")}
	ag := startAgent(t, cl.url, "-allow-anonymous=false", "-credentials="+file, "-max-retained=32")
	connect := func(clientID, id string) *mqtttest.Client {
		c, ack, err := dial(t, ag.mqtt, clientID, id, pw[id], nil)
		if err != nil {
			t.Fatalf("connect %s: %v (%+v)", clientID, err, ack)
		}
		return c
	}
	send := func(c *mqtttest.Client, topic string, qos byte, payload string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		pr, err := c.Publish(ctx, &paho.Publish{QoS: qos, Retain: true, Topic: topic, Payload: []byte(payload)})
		if err == nil && pr.ReasonCode >= 0x80 {
			err = fmt.Errorf("reason code %#x", pr.ReasonCode)
		}
		if err != nil {
			t.Fatalf("retained publish %s: %v", topic, err)
		}
	}
	retained := func(want int) {
		t.Helper()
		poll(t, fmt.Sprintf("%d retained", want), func() bool {
			var st brokerStatus
			getJSON(t, ag.status+"/status", &st)
			return st.Broker.Retained == int64(want)
		})
	}
	topic := func(id string, i int) string { return fmt.Sprintf("atrium/r-1/%s/t%02d", id, i) }

	pub := connect("dev-r", "dev-r")
	live := connect("dev-r-live", "dev-r")
	live.MustSubscribe(t, "atrium/r-1/dev-r/#", 1)
	for i := 1; i <= 40; i++ {
		send(pub, topic("dev-r", i), byte(1+i%2), fmt.Sprint(20+i)) // QoS 1 and 2 in turn
	}
	live.Wait(t, "40 live messages", func(msgs []*paho.Publish) bool { return len(msgs) >= 40 })
	retained(32)
	if n := ag.metrics(t).Sum("atrium_agent_mqtt_retained_refused_total"); n != 8 {
		t.Errorf("atrium_agent_mqtt_retained_refused_total %v, want 8", n)
	}
	fresh := connect("dev-r-fresh", "dev-r")
	fresh.MustSubscribe(t, "atrium/r-1/dev-r/#", 1)
	msgs := fresh.Wait(t, "32 retained messages", func(msgs []*paho.Publish) bool { return len(msgs) >= 32 })
	var got []string
	for _, m := range msgs {
		got = append(got, m.Topic)
	}
	slices.Sort(got)
	var want []string
	for i := 1; i <= 32; i++ {
		want = append(want, topic("dev-r", i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("retained topics %v, want %v", got, want)
	}

	send(pub, topic("dev-r", 1), 1, "")
	send(pub, topic("dev-r", 41), 1, "61")
	send(pub, topic("dev-r", 2), 1, "62") // a replacement takes no new slot
	retained(32)
	other := connect("dev-s", "dev-s")
	send(other, topic("dev-s", 1), 1, "1")
	retained(33)
	if n := ag.metrics(t).Sum("atrium_agent_mqtt_retained_refused_total"); n != 8 {
		t.Errorf("atrium_agent_mqtt_retained_refused_total %v, want still 8", n)
	}
}

func TestMaxRetainedFlags(t *testing.T) {
	c, err := agent.ParseFlags(nil, noEnv, io.Discard)
	if err != nil || c.MaxRetained != 32 || c.MaxRetainedBytes != 64<<10 {
		t.Errorf("defaults: %d topics, %d bytes (%v); want 32, 65536", c.MaxRetained, c.MaxRetainedBytes, err)
	}
	env := map[string]string{"ATRIUM_MAX_RETAINED": "0", "ATRIUM_MAX_RETAINED_BYTES": "1024"}
	if c, err = agent.ParseFlags(nil, func(k string) string { return env[k] }, io.Discard); err != nil || c.MaxRetained != 0 || c.MaxRetainedBytes != 1024 {
		t.Errorf("from the environment: %d topics, %d bytes (%v); want 0, 1024", c.MaxRetained, c.MaxRetainedBytes, err)
	}
	if _, err := agent.ParseFlags([]string{"-max-retained=-1"}, noEnv, io.Discard); err == nil {
		t.Error("-max-retained=-1 accepted")
	}
}
