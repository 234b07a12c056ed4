package flagenv_test

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/flagenv"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		addr    string
		wait    time.Duration
		wantErr string
	}{
		{"defaults", nil, nil, ":1883", time.Second, ""},
		{"env fills", nil, map[string]string{"ATRIUM_MQTT_ADDR": "127.0.0.1:18830", "ATRIUM_LINGER_TIME": "5s"}, "127.0.0.1:18830", 5 * time.Second, ""},
		{"flag wins over env", []string{"-mqtt-addr", ":1"}, map[string]string{"ATRIUM_MQTT_ADDR": ":2"}, ":1", time.Second, ""},
		{"bad env value names the variable", nil, map[string]string{"ATRIUM_LINGER_TIME": "soon"}, ":1883", time.Second, "ATRIUM_LINGER_TIME"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			fs.SetOutput(&bytes.Buffer{})
			addr := fs.String("mqtt-addr", ":1883", "broker")
			wait := fs.Duration("linger-time", time.Second, "linger")
			err := flagenv.Parse(fs, tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || *addr != tc.addr || *wait != tc.wait {
				t.Fatalf("got %q %v %v, want %q %v", *addr, *wait, err, tc.addr, tc.wait)
			}
		})
	}
}

func TestUsageNamesEveryVariable(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.String("cloud-url", "http://127.0.0.1:8001", "the cloud")
	fs.Bool("allow-anonymous", false, "dev only")
	if err := flagenv.Parse(fs, []string{"-h"}, func(string) string { return "" }); err != flag.ErrHelp {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"-cloud-url", "$ATRIUM_CLOUD_URL", "$ATRIUM_ALLOW_ANONYMOUS", `(default "http://127.0.0.1:8001")`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %s:\n%s", want, out.String())
		}
	}
}

func TestStrip(t *testing.T) {
	got := flagenv.Strip([]string{"HOME=/root", "ATRIUM_STORE=x", "PATH=/bin", "ATRIUM_BUS=memory"})
	if want := []string{"HOME=/root", "PATH=/bin"}; !slices.Equal(got, want) {
		t.Errorf("Strip = %q, want %q", got, want)
	}
}
