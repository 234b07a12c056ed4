package broker

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/logging"
	"github.com/eclipse/paho.golang/paho"
)

// TestRefusedPublishLog: a publish refused by the ACL is logged with client, device,
// topic and size, and its payload appears nowhere in the log, at any level, in any
// encoding (mochi logs whole packets on some errors; the broker redacts them).
func TestRefusedPublishLog(t *testing.T) {
	pubBin, _ := mosquittoClients(t)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out logging.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			h := slog.Handler(slog.NewTextHandler(&out, opts))
			if format == "json" {
				h = slog.NewJSONHandler(&out, opts)
			}
			b, err := New(Config{Addr: "127.0.0.1:0", CredentialsFile: writeCredentials(t, devices)}, slog.New(h))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer b.Close()

			payload := func(n int) string { return fmt.Sprintf("SECRET-READING-%d-%s", n, strings.Repeat("x", n)) }
			var payloads []string
			send := func(what string, publish func(p string)) {
				p := payload(len(payloads) + 1)
				payloads = append(payloads, p)
				publish(p)
			}
			const topic = "atrium/room-101/sensor_002/temperature" // sensor_002's, not sensor_001's
			send("paho qos1", func(p string) {
				dev := mustConnect(t, b, "sensor_001")
				resp, _ := dev.Publish(ctxT(t), &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(p)})
				if resp == nil || resp.ReasonCode != 0x87 {
					t.Errorf("PUBACK %+v, want 0x87", resp)
				}
			})
			send("raw 3.1.1 qos1", func(p string) { // mochi disconnects it, logging the packet
				rc := connectRaw(t, b, 4, "sensor_001-raw", "sensor_001", devices["sensor_001"])
				_ = rc.publish(topic, 1, 9, []byte(p))
				for {
					if _, err := rc.read(); err != nil {
						break
					}
				}
			})
			for _, version := range []string{"mqttv311", "mqttv5"} {
				send("mosquitto_pub "+version, func(p string) {
					args := append(login("sensor_001"), "-t", topic, "-m", p, "-q", "1")
					_, _ = mosq(t, pubBin, b, version, args...) // refused: 3.1.1 is disconnected, 5 told 0x87
				})
			}
			poll(t, "every publish refused", func() bool { return b.Stats().ACLDenied >= int64(len(payloads)) })
			b.Close()
			log := out.String()

			for _, p := range payloads {
				forms := map[string]string{
					"plain": p, "base64": base64.StdEncoding.EncodeToString([]byte(p)),
					"bytes": strings.Trim(fmt.Sprint([]byte(p)), "[]"), "hex": fmt.Sprintf("%x", p),
				}
				for name, f := range forms {
					if strings.Contains(log, f[:min(len(f), 24)]) {
						t.Errorf("the log holds a refused payload (%s form)", name)
					}
				}
			}
			for _, line := range strings.Split(log, "\n") {
				if !strings.Contains(line, "publish refused by topic ACL") {
					continue
				}
				for _, want := range []string{"sensor_001", "client", topic, "bytes"} {
					if !strings.Contains(line, want) {
						t.Errorf("refusal log line lacks %q: %s", want, line)
					}
				}
			}
			for i, p := range payloads {
				if !strings.Contains(log, fmt.Sprintf("bytes=%d", len(p))) && !strings.Contains(log, fmt.Sprintf(`"bytes":%d`, len(p))) {
					t.Errorf("payload %d: no refusal logged with its size %d", i+1, len(p))
				}
			}
			if t.Failed() {
				t.Logf("log:\n%s", log)
			}
		})
	}
}
