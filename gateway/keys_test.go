package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atrium-iot/atrium/gateway"
)

func TestKeysCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	run := func(env map[string]string, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := gateway.KeysCommand(args, func(k string) string { return env[k] }, &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, msg, err := run(nil, "add", "-name", "agent-hq", "-scopes", "ingest, read", "-keys", file)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out)
	if !strings.HasPrefix(key, "atr_") || len(key) < 40 || strings.Count(out, "\n") != 1 {
		t.Fatalf("stdout should be the key alone: %q", out)
	}
	if !strings.Contains(msg, "only this once") {
		t.Errorf("stderr: %q", msg)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode %v %v, want 0600", fi.Mode(), err)
	}
	raw, _ := os.ReadFile(file)
	if strings.Contains(string(raw), key) {
		t.Fatal("the key itself is stored")
	}
	var keys []gateway.Key
	if err := json.Unmarshal(raw, &keys); err != nil || len(keys) != 1 || keys[0].Name != "agent-hq" ||
		keys[0].SHA256 != gateway.HashKey(key) || len(keys[0].Scopes) != 2 {
		t.Fatalf("file %s: %v", raw, err)
	}

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
		check   func(t *testing.T, stdout string)
	}{
		{name: "second key appended", args: []string{"add", "-name", "dash", "-keys", file},
			check: func(t *testing.T, _ string) {
				ks, _ := gateway.ReadKeys(file)
				if len(ks) != 2 || ks[1].Name != "dash" || ks[1].Scopes[0] != gateway.ScopeRead {
					t.Fatalf("keys %v", ks)
				}
			}},
		{name: "duplicate name", args: []string{"add", "-name", "dash", "-keys", file}, wantErr: "already exists"},
		{name: "unknown scope", args: []string{"add", "-name", "x", "-scopes", "write", "-keys", file}, wantErr: "unknown scope"},
		{name: "no name", args: []string{"add", "-keys", file}, wantErr: "name is empty"},
		{name: "list", args: []string{"list", "-keys", file},
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, "agent-hq\tingest,read") || !strings.Contains(out, "dash\tread") || strings.Contains(out, key) {
					t.Fatalf("list: %q", out)
				}
			}},
		{name: "file from ATRIUM_KEYS", env: map[string]string{"ATRIUM_KEYS": file}, args: []string{"list"},
			check: func(t *testing.T, out string) {
				if !strings.Contains(out, "dash") {
					t.Fatalf("list: %q", out)
				}
			}},
		{name: "default file under -data-dir", args: []string{"add", "-name", "ops", "-scopes", "admin", "-data-dir", dir},
			check: func(t *testing.T, _ string) {
				ks, err := gateway.ReadKeys(filepath.Join(dir, gateway.DefaultKeysFile))
				if err != nil || len(ks) != 1 || ks[0].Name != "ops" {
					t.Fatalf("default file: %v %v", ks, err)
				}
			}},
		{name: "remove", args: []string{"remove", "-name", "dash", "-keys", file},
			check: func(t *testing.T, _ string) {
				ks, _ := gateway.ReadKeys(file)
				if len(ks) != 1 || ks[0].Name != "agent-hq" {
					t.Fatalf("keys %v", ks)
				}
			}},
		{name: "remove unknown", args: []string{"remove", "-name", "dash", "-keys", file}, wantErr: "no key named"},
		{name: "unknown subcommand", args: []string{"rotate"}, wantErr: "unknown subcommand"},
		{name: "no subcommand", args: nil, wantErr: "missing subcommand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(tc.env, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, out)
		})
	}
}

func TestEnsureAdminKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", gateway.DefaultKeysFile)
	key, created, err := gateway.EnsureAdminKey(path)
	if err != nil || !created || key == "" {
		t.Fatalf("first call: %q %v %v", key, created, err)
	}
	ks, _ := gateway.ReadKeys(path)
	if len(ks) != 1 || ks[0].Scopes[0] != gateway.ScopeAdmin || ks[0].SHA256 != gateway.HashKey(key) {
		t.Fatalf("keys %v", ks)
	}
	key2, created, err := gateway.EnsureAdminKey(path)
	if err != nil || created || key2 != "" {
		t.Fatalf("second call must not make or show a key: %q %v %v", key2, created, err)
	}
}

func TestParseScopes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"read", "[read]", true}, {"read,ingest", "[read ingest]", true}, {" admin , read,admin", "[admin read]", true},
		{"", "", false}, {",", "", false}, {"Read", "", false}, {"write", "", false},
	} {
		got, err := gateway.ParseScopes(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseScopes(%q): err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && fmt.Sprint(got) != tc.want {
			t.Errorf("ParseScopes(%q) = %v, want %s", tc.in, got, tc.want)
		}
	}
}
