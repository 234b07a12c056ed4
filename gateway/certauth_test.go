package gateway

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestNormalizeSubject(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"cn:agent-hq", "cn:agent-hq", ""},
		{"dns:Agent.Example", "dns:agent.example", ""},
		{"uri:spiffe://atrium/agent/hq", "uri:spiffe://atrium/agent/hq", ""},
		{"spiffe://atrium/agent/hq", "uri:spiffe://atrium/agent/hq", ""},
		{"agent-hq", "", "want uri:"},
		{"cn:", "", "want uri:"},
		{"uri:not-a-uri", "", "want uri:"},
	}
	for _, c := range cases {
		got, err := NormalizeSubject(c.in)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %q, %v; want %q, %q", c.in, got, err, c.want, c.err)
		}
	}
}

func TestKeysFileWithSubjects(t *testing.T) {
	cases := []struct{ body, err string }{
		{`[{"name":"a","subject":"cn:a","scopes":["ingest"]}]`, ""},
		{`[{"name":"a","subject":"cn:a","sha256":"` + strings.Repeat("0", 64) + `","scopes":["ingest"]}]`, "not both"},
		{`[{"name":"a","subject":"a","scopes":["ingest"]}]`, "want uri:"},
		{`[{"name":"a","scopes":["ingest"]}]`, "sha256 must be"},
	}
	for _, c := range cases {
		_, err := decodeKeys([]byte(c.body))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.body, err, c.err)
		}
	}
}

func TestKeysCommandAddsASubject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.json")
	var out, errb bytes.Buffer
	env := func(string) string { return "" }
	if err := KeysCommand([]string{"add", "-keys", path, "-name", "agent-hq", "-subject", "spiffe://atrium/agent/hq", "-scopes", "ingest"}, env, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if _, err := AddKey(path, "dashboard", []Scope{ScopeRead}); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := KeysCommand([]string{"list", "-keys", path}, env, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "agent-hq\tingest\tsubject spiffe://atrium/agent/hq") || !strings.Contains(out.String(), "dashboard\tread\t") {
		t.Fatalf("list:\n%s", out.String())
	}
	keys, err := ReadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	kr := newKeyring(keys)
	if len(kr.ids) != 1 || kr.subjects["uri:spiffe://atrium/agent/hq"].name != "agent-hq" {
		t.Fatalf("keyring %+v", kr)
	}
}
