package flagenv_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"github.com/atrium-iot/atrium/internal/flagenv"
)

// TestListenError binds real listeners on addresses that cannot be had and checks
// the line that names them.
func TestListenError(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().String()
	port := taken[strings.LastIndex(taken, ":"):]

	tests := []struct {
		name   string
		listen string            // what the program binds
		addrs  map[string]string // its listen-address flags
		want   string            // the whole line
	}{
		{
			name: "taken", listen: taken,
			addrs: map[string]string{"mqtt-addr": taken, "http-addr": "127.0.0.1:0"},
			want:  "cannot listen on " + taken + " (-mqtt-addr, $ATRIUM_MQTT_ADDR): bind: address already in use",
		},
		{
			name: "host name resolved", listen: "localhost" + port,
			addrs: map[string]string{"sensor-addr": "localhost" + port, "room-addr": ":0"},
			want:  "cannot listen on localhost" + port + " (-sensor-addr, $ATRIUM_SENSOR_ADDR): bind: address already in use",
		},
		{
			name: "two flags on one address", listen: taken,
			addrs: map[string]string{"ws-addr": taken, "mqtt-addr": taken},
			want: "cannot listen on " + taken + " (-mqtt-addr, $ATRIUM_MQTT_ADDR; -ws-addr, $ATRIUM_WS_ADDR): " +
				"bind: address already in use",
		},
		{
			name: "no port", listen: "garbage",
			addrs: map[string]string{"gateway-addr": "garbage"},
			want:  "cannot listen on garbage (-gateway-addr, $ATRIUM_GATEWAY_ADDR): address garbage: missing port in address",
		},
		{
			name: "bad port", listen: "127.0.0.1:http-ish",
			addrs: map[string]string{"gateway-addr": "127.0.0.1:http-ish", "sensor-addr": ":8001"},
			want:  "cannot listen on 127.0.0.1:http-ish (-gateway-addr, $ATRIUM_GATEWAY_ADDR): lookup tcp/http-ish: unknown port",
		},
		{
			name: "no flag names it", listen: taken,
			addrs: map[string]string{"http-addr": "127.0.0.1:1"},
			want:  "cannot listen on " + taken + ": bind: address already in use",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tc.listen)
			if err == nil {
				ln.Close()
				t.Fatalf("listen %s: bound, want a failure", tc.listen)
			}
			wrapped := fmt.Errorf("broker: start: listen %s: %w", tc.listen, err)
			got := flagenv.ListenError(wrapped, tc.addrs)
			if got.Error() != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			var oe *net.OpError
			if !errors.As(got, &oe) {
				t.Errorf("the net.OpError is lost: %v", got)
			}
		})
	}
	t.Run("keeps errors.Is", func(t *testing.T) {
		_, err := net.Listen("tcp", taken)
		if got := flagenv.ListenError(err, nil); !errors.Is(got, syscall.EADDRINUSE) {
			t.Errorf("%v is not EADDRINUSE", got)
		}
	})
	t.Run("other errors unchanged", func(t *testing.T) {
		dialErr := func() error {
			c, err := net.Dial("tcp", "127.0.0.1:1")
			if err == nil {
				c.Close()
			}
			return err
		}()
		for _, err := range []error{nil, errors.New("open spool: locked"), dialErr} {
			if got := flagenv.ListenError(err, map[string]string{"mqtt-addr": ":1883"}); got != err {
				t.Errorf("ListenError(%v) = %v, want it unchanged", err, got)
			}
		}
	})
}
