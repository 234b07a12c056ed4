package broker

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/internal/testenv"
)

// mosquittoClients returns the paths of mosquitto_pub and mosquitto_sub, skipping the
// test when they are not installed (failing it when ATRIUM_REQUIRE_INTEGRATION=1).
func mosquittoClients(t *testing.T) (pub, sub string) {
	t.Helper()
	return testenv.Tool(t, "mosquitto_pub"), testenv.Tool(t, "mosquitto_sub")
}

// mosq runs a mosquitto client against b and returns its combined output and error.
func mosq(t *testing.T, bin string, b *Broker, version string, args ...string) (string, error) {
	t.Helper()
	host, port, err := net.SplitHostPort(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"-h", host, "-p", port, "-V", version}, args...)
	cmd := exec.CommandContext(ctxT(t), bin, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

func login(id string) []string {
	return []string{"-i", id + "-cli", "-u", id, "-P", devices[id]}
}

func TestMosquittoClients(t *testing.T) {
	pubBin, subBin := mosquittoClients(t)
	rec := &recordHook{}
	b := startBroker(t, nil, rec)
	open := startBroker(t, func(c *Config) { c.AllowAnonymous = true })

	for _, version := range []string{"mqttv311", "mqttv5"} {
		t.Run(version, func(t *testing.T) {
			refused := []struct {
				name string
				args []string
			}{
				{"wrong password", []string{"-i", "x", "-u", "sensor_001", "-P", "guess"}},
				{"unknown device", []string{"-i", "x", "-u", "sensor_999", "-P", devices["sensor_001"]}},
				{"anonymous", []string{"-i", "x"}},
			}
			for _, tt := range refused {
				t.Run(tt.name+" refused", func(t *testing.T) {
					args := append(tt.args, "-t", "atrium/r/sensor_001", "-m", "1", "-q", "1")
					if out, err := mosq(t, pubBin, b, version, args...); err == nil {
						t.Errorf("mosquitto_pub succeeded: %s", out)
					}
				})
			}

			t.Run("own topic accepted", func(t *testing.T) {
				topic := "atrium/r/sensor_001/" + version
				args := append(login("sensor_001"), "-t", topic, "-m", "21.5", "-q", "1")
				if out, err := mosq(t, pubBin, b, version, args...); err != nil {
					t.Fatalf("mosquitto_pub: %v: %s", err, out)
				}
				if !slices.Contains(rec.seen(), topic) {
					t.Errorf("ingest hook did not see %s: %v", topic, rec.seen())
				}
			})

			t.Run("subscription outside own topics refused", func(t *testing.T) {
				args := append(login("sensor_001"), "-t", "atrium/#", "-C", "1", "-W", "20")
				out, _ := mosq(t, subBin, b, version, args...) // it exits 0 after saying so
				if !strings.Contains(out, "All subscription requests were denied") {
					t.Errorf("output %q, want the subscription denied", out)
				}
			})

			t.Run("another device's topic never reaches a subscriber", func(t *testing.T) {
				subs := open.Stats().Subscriptions
				ctx, cancel := context.WithCancel(ctxT(t))
				defer cancel()
				host, port, _ := net.SplitHostPort(open.Addr())
				cmd := exec.CommandContext(ctx, subBin, "-h", host, "-p", port, "-V", version,
					"-i", "watcher-"+version, "-t", "atrium/#", "-v", "-C", "1", "-W", "30")
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				poll(t, "mosquitto_sub subscribed", func() bool { return open.Stats().Subscriptions > subs })

				// QoS 0 so that 3.1.1 is not disconnected: the message is silently dropped.
				args := append(login("sensor_001"), "-t", "atrium/r/sensor_002", "-m", "forged", "-q", "0")
				if out, err := mosq(t, pubBin, open, version, args...); err != nil {
					t.Fatalf("mosquitto_pub (forged, qos 0): %v: %s", err, out)
				}
				if version == "mqttv5" { // 5 gets a PUBACK "not authorized" for QoS 1
					args := append(login("sensor_001"), "-t", "atrium/r/sensor_002", "-m", "forged1", "-q", "1")
					out, _ := mosq(t, pubBin, open, version, args...)
					if !strings.Contains(strings.ToLower(out), "not authori") {
						t.Errorf("mosquitto_pub output %q, want not authorized", out)
					}
				}
				args = append(login("sensor_001"), "-t", "atrium/r/sensor_001", "-m", "marker", "-q", "1")
				if out, err := mosq(t, pubBin, open, version, args...); err != nil {
					t.Fatalf("mosquitto_pub (marker): %v: %s", err, out)
				}
				if err := cmd.Wait(); err != nil {
					t.Fatalf("mosquitto_sub: %v: %s", err, out.String())
				}
				if got := strings.TrimSpace(out.String()); got != "atrium/r/sensor_001 marker" {
					t.Errorf("subscriber's first message %q, want the marker", got)
				}
			})
		})
	}
}
