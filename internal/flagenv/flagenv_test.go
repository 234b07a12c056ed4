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

func TestProgramStart(t *testing.T) {
	parse := func(args ...string) (flagenv.Program, error) {
		var p flagenv.Program
		fs := flag.NewFlagSet("prog", flag.ContinueOnError)
		fs.SetOutput(&bytes.Buffer{})
		p.Add(fs)
		err := flagenv.Parse(fs, args, func(string) string { return "" })
		return p, err
	}
	tests := []struct {
		name    string
		args    []string
		logger  bool   // a logger is returned: the program goes on
		stdout  string // printed, a prefix
		wantErr string
	}{
		{"defaults", nil, true, "", ""},
		{"text at debug", []string{"-log-format", "text", "-log-level", "debug"}, true, "", ""},
		{"help", []string{"-h"}, false, "", ""},
		{"version", []string{"-version"}, false, "prog ", ""},
		{"unknown flag", []string{"-nope"}, false, "", "-nope"},
		{"bad level", []string{"-log-level", "loud"}, false, "", "loud"},
		{"bad format", []string{"-log-format", "xml"}, false, "", "xml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parse(tc.args...)
			var stdout, stderr bytes.Buffer
			log, err := p.Start("prog", err, &stdout, &stderr)
			if (log != nil) != tc.logger {
				t.Errorf("logger %v, want one: %v", log, tc.logger)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("error %v, want %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(stdout.String(), tc.stdout) || tc.stdout == "" && stdout.Len() > 0 {
				t.Errorf("stdout %q, want %q…", stdout.String(), tc.stdout)
			}
			if log != nil {
				log.Debug("hello")
				if got := stderr.String(); (tc.name == "text at debug") != strings.Contains(got, "hello") {
					t.Errorf("stderr %q after a debug line", got)
				}
			}
		})
	}
}
