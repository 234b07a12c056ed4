// Package deploy_test checks the deployment files against the programs they run:
// docker-compose.yml (and its override under deploy/compose/), the Dockerfile and
// .dockerignore. No Docker engine is needed: every command line and ATRIUM_*
// variable in the compose file is parsed by the real flag sets of atrium,
// atrium-agent and atrium-sim, so a renamed or removed flag fails here, not at
// `docker compose up`.
package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/cloud"
	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/gateway"
)

const (
	composePath  = "../docker-compose.yml"
	overridePath = "compose/keys-file.yml"
)

// ---------------------------------------------------------------- the compose model

type composeFile struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image       string       `yaml:"image"`
	Build       any          `yaml:"build"`
	Command     stringList   `yaml:"command"`
	Entrypoint  stringList   `yaml:"entrypoint"`
	Environment envMap       `yaml:"environment"`
	DependsOn   dependsOn    `yaml:"depends_on"`
	Healthcheck *healthcheck `yaml:"healthcheck"`
	Ports       []string     `yaml:"ports"`
	Volumes     []volume     `yaml:"volumes"`
	Deploy      struct {
		Replicas *int `yaml:"replicas"`
	} `yaml:"deploy"`
}

type healthcheck struct {
	Test stringList `yaml:"test"`
}

// stringList is a compose command: a list, or a string split on blanks.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = strings.Fields(n.Value)
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// envMap is a compose environment: a mapping, or a list of KEY=VALUE.
type envMap map[string]string

func (m *envMap) UnmarshalYAML(n *yaml.Node) error {
	out, err := decodeMapOrList(n, func(kv string) (string, string) {
		k, v, _ := strings.Cut(kv, "=")
		return k, v
	}, func(v string) string { return v })
	*m = out
	return err
}

// dependsOn is a compose depends_on: a list of names, or a mapping name → condition.
type dependsOn map[string]string

func (d *dependsOn) UnmarshalYAML(n *yaml.Node) error {
	out, err := decodeMapOrList(n, func(s string) (string, string) {
		return s, "service_started"
	}, func(v struct {
		Condition string `yaml:"condition"`
	}) string {
		if v.Condition == "" {
			return "service_started"
		}
		return v.Condition
	})
	*d = out
	return err
}

// decodeMapOrList reads the two spellings compose allows for a mapping: a list whose
// items fromItem turns into key and value, or a mapping whose values fromValue reads.
func decodeMapOrList[V any](n *yaml.Node, fromItem func(string) (string, string), fromValue func(V) string) (map[string]string, error) {
	out := map[string]string{}
	if n.Kind == yaml.SequenceNode {
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, item := range l {
			k, v := fromItem(item)
			out[k] = v
		}
		return out, nil
	}
	var m map[string]V
	if err := n.Decode(&m); err != nil {
		return nil, err
	}
	for k, v := range m {
		out[k] = fromValue(v)
	}
	return out, nil
}

// volume is a compose service volume, short (SOURCE:TARGET[:ro]) or long syntax.
type volume struct {
	Type     string `yaml:"type"`
	Source   string `yaml:"source"`
	Target   string `yaml:"target"`
	ReadOnly bool   `yaml:"read_only"`
}

func (v *volume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) < 2 {
			return fmt.Errorf("volume %q: want SOURCE:TARGET", n.Value)
		}
		v.Source, v.Target = parts[0], parts[1]
		v.ReadOnly = len(parts) > 2 && parts[2] == "ro"
		v.Type = "volume"
		if strings.HasPrefix(v.Source, ".") || strings.HasPrefix(v.Source, "/") {
			v.Type = "bind"
		}
		return nil
	}
	type plain volume
	return n.Decode((*plain)(v))
}

// interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR, $$.
var interpRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate expands compose variables in s from env, the way `docker compose` does.
func interpolate(s string, env map[string]string) (string, error) {
	var err error
	out := interpRE.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sm := interpRE.FindStringSubmatch(m)
		name, op, arg := sm[1], sm[2], sm[3]
		if name == "" {
			name = sm[4]
		}
		v, set := env[name]
		switch op {
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if !set || (op == ":?" && v == "") {
				err = fmt.Errorf("variable %s is required: %s", name, arg)
			}
		}
		return v
	})
	return out, err
}

// loadCompose parses a compose file the way docker compose reads it with env as the
// environment: anchors and merge keys resolved, variables interpolated.
func loadCompose(t *testing.T, path string, env map[string]string) composeFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var walk func(n *yaml.Node) error
	walk = func(n *yaml.Node) error {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			v, err := interpolate(n.Value, env)
			if err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			n.Value = v
		}
		for _, c := range n.Content {
			if err := walk(c); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(&root); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var cf composeFile
	if err := root.Decode(&cf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cf
}

// ---------------------------------------------------------------- the programs

// program is one of the image's three binaries, seen through its own Run/ParseFlags.
type program struct {
	name string
	run  func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr *bytes.Buffer) error
	// parse checks a command line and environment with the program's flag parser and
	// returns the parsed configuration.
	parse func(args []string, getenv func(string) string) (any, error)
}

var programs = map[string]program{
	"atrium":       newProgram("atrium", cloud.Run, cloud.ParseFlags),
	"atrium-agent": newProgram("atrium-agent", agent.Run, agent.ParseFlags),
	"atrium-sim":   newProgram("atrium-sim", sim.Run, sim.ParseFlags),
}

// newProgram sees a binary through the Run its main calls and its ParseFlags.
func newProgram[C any](name string,
	run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error,
	parse func(args []string, getenv func(string) string, stderr io.Writer) (C, error),
) program {
	return program{
		name: name,
		run: func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr *bytes.Buffer) error {
			return run(ctx, args, getenv, stdout, stderr)
		},
		parse: func(args []string, getenv func(string) string) (any, error) {
			return parse(args, getenv, new(bytes.Buffer))
		},
	}
}

// usage is what `PROGRAM -h` prints: its flags and their environment variables.
type usage struct {
	flags map[string]bool
	envs  map[string]bool
	text  string
}

var (
	flagLineRE = regexp.MustCompile(`(?m)^  -([a-z0-9][a-z0-9.-]*)`)
	envRE      = regexp.MustCompile(`\[\$(ATRIUM_[A-Z0-9_]+)\]`)
)

// help runs `PROGRAM -h` through the same Run the binary's main calls.
func help(t *testing.T, p program) usage {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := p.run(t.Context(), []string{"-h"}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatalf("%s -h: %v", p.name, err)
	}
	text := stdout.String() + stderr.String()
	u := usage{flags: map[string]bool{}, envs: map[string]bool{}, text: text}
	for _, m := range flagLineRE.FindAllStringSubmatch(text, -1) {
		u.flags[m[1]] = true
	}
	for _, m := range envRE.FindAllStringSubmatch(text, -1) {
		u.envs[m[1]] = true
	}
	if len(u.flags) < 5 || len(u.envs) != len(u.flags) {
		t.Fatalf("%s -h: found %d flags and %d variables in:\n%s", p.name, len(u.flags), len(u.envs), text)
	}
	return u
}

// flagNames are the flags named on a command line (-x, --x, -x=v); values that follow
// a flag are skipped because they do not start with a dash.
func flagNames(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		out = append(out, name)
	}
	return out
}

func getenvFrom(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// ---------------------------------------------------------------- the tests

// Every flag and ATRIUM_* variable the compose file gives a program is one that
// program documents in -h, and the program's own parser accepts the whole set.
func TestComposeFlagsExist(t *testing.T) {
	files := map[string]composeFile{
		composePath:  loadCompose(t, composePath, nil),
		overridePath: loadCompose(t, overridePath, nil),
	}
	helps := map[string]usage{}
	for name, p := range programs {
		helps[name] = help(t, p)
	}
	checked := map[string]int{}
	for path, cf := range files {
		base := loadCompose(t, composePath, nil)
		for name, svc := range cf.Services {
			if path == overridePath {
				// An override adds to the service of the main file.
				merged := base.Services[name]
				if len(svc.Command) > 0 {
					merged.Command = svc.Command
				}
				for k, v := range svc.Environment {
					if merged.Environment == nil {
						merged.Environment = envMap{}
					}
					merged.Environment[k] = v
				}
				svc = merged
			}
			if len(svc.Command) == 0 {
				continue
			}
			p, ok := programs[svc.Command[0]]
			if !ok {
				continue
			}
			t.Run(path+"/"+name, func(t *testing.T) {
				if len(svc.Entrypoint) > 0 {
					t.Errorf("entrypoint %q: the image's programs are chosen by the command", svc.Entrypoint)
				}
				u := helps[p.name]
				args := svc.Command[1:]
				for _, f := range flagNames(args) {
					if !u.flags[f] {
						t.Errorf("%s has no flag -%s (command %q)", p.name, f, svc.Command)
					}
				}
				for k := range svc.Environment {
					if strings.HasPrefix(k, "ATRIUM_") && !u.envs[k] {
						t.Errorf("environment %s names no flag of %s", k, p.name)
					}
				}
				if _, err := p.parse(args, getenvFrom(svc.Environment)); err != nil {
					t.Errorf("%s %s: %v", p.name, strings.Join(args, " "), err)
				}
			})
			checked[p.name]++
		}
	}
	for name := range programs {
		if checked[name] == 0 {
			t.Errorf("no compose service runs %s", name)
		}
	}
}

// The services the scale-out shape needs exist: the three engines, each cloud part in
// a container of its own (the room service twice), the agent and the simulator.
func TestComposeServices(t *testing.T) {
	cf := loadCompose(t, composePath, nil)
	if n := len(cf.Services); n < 8 {
		t.Errorf("%d services, want at least 8", n)
	}
	for _, want := range []string{"mongo", "clickhouse", "rabbitmq"} {
		found := slices.ContainsFunc(slices.Collect(maps.Keys(cf.Services)), func(s string) bool {
			return strings.Contains(strings.ToLower(s), want)
		})
		if !found {
			t.Errorf("no service named like %q", want)
		}
	}

	parts := map[string][]string{} // cloud part → services running it
	for name, svc := range cf.Services {
		if len(svc.Command) == 0 || svc.Command[0] != "atrium" {
			continue
		}
		cfg, err := cloud.ParseFlags(svc.Command[1:], getenvFrom(svc.Environment), new(bytes.Buffer))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for p := range strings.SplitSeq(cfg.Target, ",") {
			parts[strings.TrimSpace(p)] = append(parts[strings.TrimSpace(p)], name)
		}
	}
	tests := []struct {
		part     string
		replicas int
		store    string // prefix of the part's store URL
	}{
		{"sensor", 1, "mongodb://"},
		{"room", 2, "mongodb://"},
		{"analytics", 1, "clickhouse://"},
		{"notification", 1, "mongodb://"},
		{"gateway", 1, ""},
	}
	if _, ok := parts["all"]; ok {
		t.Errorf("service %v runs -target=all: each cloud part runs in its own container", parts["all"])
	}
	for _, tt := range tests {
		t.Run(tt.part, func(t *testing.T) {
			svcs := parts[tt.part]
			if len(svcs) != 1 || svcs[0] != tt.part {
				t.Fatalf("part %s runs in services %v, want exactly one named %q", tt.part, svcs, tt.part)
			}
			svc := cf.Services[tt.part]
			cfg, err := cloud.ParseFlags(svc.Command[1:], getenvFrom(svc.Environment), new(bytes.Buffer))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Target != tt.part {
				t.Errorf("-target=%s, want only %s", cfg.Target, tt.part)
			}
			replicas := 1
			if svc.Deploy.Replicas != nil {
				replicas = *svc.Deploy.Replicas
			}
			if replicas != tt.replicas {
				t.Errorf("replicas %d, want %d", replicas, tt.replicas)
			}
			if replicas > 1 && len(svc.Ports) > 0 {
				t.Errorf("ports %v: a replicated service cannot publish a fixed host port", svc.Ports)
			}
			if tt.part != "gateway" && len(svc.Ports) > 0 {
				t.Errorf("ports %v: the services answer without a key; only the gateway is published", svc.Ports)
			}
			switch {
			case tt.part == "gateway":
				if cfg.Keys == "" && !slices.ContainsFunc(svc.Volumes, func(v volume) bool { return v.Target == cfg.DataDir }) {
					t.Errorf("the gateway's keys under -data-dir %s are on no volume: they would be lost", cfg.DataDir)
				}
			case tt.part == "analytics":
				if !strings.HasPrefix(cfg.AnalyticsStore, tt.store) {
					t.Errorf("-analytics-store %s, want %s…", cfg.AnalyticsStore, tt.store)
				}
			default:
				if !strings.HasPrefix(cfg.Store, tt.store) {
					t.Errorf("-store %s, want %s…", cfg.Store, tt.store)
				}
			}
			if tt.part != "gateway" && !strings.HasPrefix(cfg.Bus, "amqp://") {
				t.Errorf("-bus %s, want RabbitMQ (amqp://)", cfg.Bus)
			}
		})
	}
}

// The URLs each program dials name a compose service and the port that service
// listens on; the engines' hosts are the engine services.
func TestComposeWiring(t *testing.T) {
	cf := loadCompose(t, composePath, nil)
	listen := map[string]string{} // service → port its program listens on
	type dial struct{ svc, what, url string }
	var dials []dial
	for name, svc := range cf.Services {
		if len(svc.Command) == 0 {
			continue
		}
		add := func(what, u string) { dials = append(dials, dial{name, what, u}) }
		getenv := getenvFrom(svc.Environment)
		switch svc.Command[0] {
		case "atrium":
			cfg, err := cloud.ParseFlags(svc.Command[1:], getenv, new(bytes.Buffer))
			if err != nil {
				t.Fatal(err)
			}
			listen[name] = port(t, listenAddr(cfg))
			switch cfg.Target {
			case "gateway":
				add("-sensor-url", cfg.SensorURL)
				add("-room-url", cfg.RoomURL)
				add("-analytics-url", cfg.AnalyticsURL)
				add("-notification-url", cfg.NotifyURL)
			case "analytics":
				add("-sensor-url", cfg.SensorURL)
				add("-analytics-store", cfg.AnalyticsStore)
				add("-bus", cfg.Bus)
			default:
				add("-store", cfg.Store)
				add("-bus", cfg.Bus)
			}
		case "atrium-agent":
			cfg, err := agent.ParseFlags(svc.Command[1:], getenv, new(bytes.Buffer))
			if err != nil {
				t.Fatal(err)
			}
			listen[name] = port(t, cfg.MQTTAddr)
			add("-cloud-url", cfg.CloudURL)
		case "atrium-sim":
			cfg, err := sim.ParseFlags(svc.Command[1:], getenv, new(bytes.Buffer))
			if err != nil {
				t.Fatal(err)
			}
			add("-broker", cfg.Broker)
		}
	}
	engines := map[string]string{"mongodb": "27017", "clickhouse": "9000", "amqp": "5672"}
	for _, d := range dials {
		t.Run(d.svc+d.what, func(t *testing.T) {
			u, err := url.Parse(d.url)
			if err != nil {
				t.Fatal(err)
			}
			host, p := u.Hostname(), u.Port()
			target, ok := cf.Services[host]
			if !ok {
				t.Fatalf("%s %s: no service %q", d.what, d.url, host)
			}
			want := listen[host]
			if w, ok := engines[u.Scheme]; ok {
				want = w
			}
			if p != want {
				t.Errorf("%s %s: port %q, want %q, where %s listens", d.what, d.url, p, want, host)
			}
			if target.Healthcheck == nil {
				t.Errorf("%s: %s has no healthcheck to wait for", d.what, host)
			}
			if c := cf.Services[d.svc].DependsOn[host]; c != "service_healthy" {
				t.Errorf("depends on %s with %q, want condition service_healthy", host, c)
			}
		})
	}
}

// Every healthcheck probes the port its program listens on; dependencies, conditions
// and named volumes refer to things that exist.
func TestComposeHealthAndVolumes(t *testing.T) {
	cf := loadCompose(t, composePath, nil)
	urlRE := regexp.MustCompile(`https?://[^\s"']+`)
	for name, svc := range cf.Services {
		t.Run(name, func(t *testing.T) {
			for dep, cond := range svc.DependsOn {
				d, ok := cf.Services[dep]
				if !ok {
					t.Errorf("depends on unknown service %q", dep)
					continue
				}
				if cond == "service_healthy" && d.Healthcheck == nil {
					t.Errorf("waits for %s to be healthy, but it has no healthcheck", dep)
				}
			}
			for _, v := range svc.Volumes {
				if v.Type == "volume" {
					if _, ok := cf.Volumes[v.Source]; !ok {
						t.Errorf("named volume %q is not declared under volumes:", v.Source)
					}
				}
			}
			if svc.Healthcheck == nil {
				if name != "simulator" {
					t.Errorf("no healthcheck")
				}
				return
			}
			test := svc.Healthcheck.Test
			if len(test) < 2 || (test[0] != "CMD" && test[0] != "CMD-SHELL") {
				t.Fatalf("healthcheck test %q: want [CMD, …]", test)
			}
			if len(svc.Command) == 0 || !strings.HasPrefix(svc.Command[0], "atrium") {
				return // an engine's own probe
			}
			if test[1] != "wget" {
				t.Errorf("healthcheck %q: the image has busybox wget, nothing else to probe with", test)
			}
			m := urlRE.FindString(strings.Join(test, " "))
			if m == "" {
				t.Fatalf("healthcheck %q probes no URL", test)
			}
			u, _ := url.Parse(m)
			var want []string
			switch svc.Command[0] {
			case "atrium":
				cfg, _ := cloud.ParseFlags(svc.Command[1:], getenvFrom(svc.Environment), new(bytes.Buffer))
				want = []string{port(t, listenAddr(cfg))}
			case "atrium-agent":
				cfg, _ := agent.ParseFlags(svc.Command[1:], getenvFrom(svc.Environment), new(bytes.Buffer))
				want = []string{port(t, cfg.HTTPAddr)}
				if !slices.ContainsFunc(svc.Volumes, func(v volume) bool {
					return v.Type == "volume" && strings.HasPrefix(cfg.Spool, v.Target+"/")
				}) {
					t.Errorf("-spool %s is on no named volume: the spool would not survive a new container", cfg.Spool)
				}
			}
			if !slices.Contains(want, u.Port()) || !slices.Contains([]string{"/healthz", "/readyz"}, u.Path) {
				t.Errorf("healthcheck probes %s, want /healthz or /readyz on port %v", m, want)
			}
		})
	}
}

// With no variables set the compose file still has every value (demo defaults), and
// the credentials a user sets reach both the engine and the URLs that dial it.
func TestComposeCredentials(t *testing.T) {
	env := map[string]string{
		"MONGO_USER": "mu", "MONGO_PASSWORD": "mp",
		"CLICKHOUSE_USER": "cu", "CLICKHOUSE_PASSWORD": "cp",
		"RABBITMQ_USER": "ru", "RABBITMQ_PASSWORD": "rp",
		"AGENT_TOKEN": "tok",
	}
	cf := loadCompose(t, composePath, env)
	tests := []struct {
		engine, userVar, passVar string
		engineUser, enginePass   string
		flag                     func(cloud.Config) string
		service                  string
	}{
		{"mongo", "mu", "mp", "MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD", func(c cloud.Config) string { return c.Store }, "sensor"},
		{"clickhouse", "cu", "cp", "CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD", func(c cloud.Config) string { return c.AnalyticsStore }, "analytics"},
		{"rabbitmq", "ru", "rp", "RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", func(c cloud.Config) string { return c.Bus }, "notification"},
	}
	for _, tt := range tests {
		t.Run(tt.engine, func(t *testing.T) {
			e := cf.Services[tt.engine].Environment
			if e[tt.engineUser] != tt.userVar || e[tt.enginePass] != tt.passVar {
				t.Errorf("engine credentials %s=%q %s=%q, want %q/%q", tt.engineUser, e[tt.engineUser], tt.enginePass, e[tt.enginePass], tt.userVar, tt.passVar)
			}
			svc := cf.Services[tt.service]
			cfg, err := cloud.ParseFlags(svc.Command[1:], getenvFrom(svc.Environment), new(bytes.Buffer))
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(tt.flag(cfg))
			if err != nil {
				t.Fatal(err)
			}
			if pw, _ := u.User.Password(); u.User.Username() != tt.userVar || pw != tt.passVar {
				t.Errorf("%s dials %s as %v, want %s:%s", tt.service, u.Redacted(), u.User, tt.userVar, tt.passVar)
			}
		})
	}
	ag := cf.Services["agent"]
	cfg, err := agent.ParseFlags(ag.Command[1:], getenvFrom(ag.Environment), new(bytes.Buffer))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Token != "tok" {
		t.Errorf("agent token %q, want AGENT_TOKEN to reach -token", cfg.Token)
	}
}

// The override that serves a keys file of one's own mounts it where ATRIUM_KEYS
// points, read-only, and the example file is a valid keys file.
func TestKeysFileOverride(t *testing.T) {
	cf := loadCompose(t, overridePath, nil)
	gw, ok := cf.Services["gateway"]
	if !ok {
		t.Fatalf("%s: no gateway service", overridePath)
	}
	keys := gw.Environment["ATRIUM_KEYS"]
	if keys == "" {
		t.Fatalf("%s: ATRIUM_KEYS unset", overridePath)
	}
	var mount *volume
	for i, v := range gw.Volumes {
		if strings.HasPrefix(keys, strings.TrimSuffix(v.Target, "/")+"/") {
			mount = &gw.Volumes[i]
		}
	}
	if mount == nil {
		t.Fatalf("ATRIUM_KEYS=%s is on no mount of %v", keys, gw.Volumes)
	}
	if !mount.ReadOnly {
		t.Errorf("keys mount %s is writable; the gateway only reads it", mount.Target)
	}
	if mount.Target == keys {
		t.Errorf("mount the keys file's directory, not the file: `atrium keys add` replaces it by a rename, which a file mount never sees")
	}
	// Relative sources resolve against the project directory (where docker-compose.yml is).
	src := filepath.Join("..", mount.Source)
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		t.Errorf("mount source %s: want a directory in the repository (%v)", mount.Source, err)
	}

	ks, err := gateway.ReadKeys("compose/keys.example.json")
	if err != nil {
		t.Fatalf("keys.example.json: %v", err)
	}
	if len(ks) == 0 {
		t.Errorf("keys.example.json holds no key")
	}
}

// The Dockerfile builds the three programs static and pure Go with the version
// stamped, on the Go of go.mod, and runs them as a non-root user.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	type stage struct {
		from  string
		lines []string
	}
	var stages []stage
	args := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(bytes.ReplaceAll(b, []byte("\\\n"), []byte(" "))))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			stages = append(stages, stage{from: rest})
			continue
		case "ARG":
			if k, v, ok := strings.Cut(rest, "="); ok && len(stages) == 0 {
				args[k] = v
			}
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a build stage and a small run stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	buildText, finalText := strings.Join(build.lines, "\n"), strings.Join(final.lines, "\n")

	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	from := os.Expand(fromImage(build.from), func(k string) string { return args[k] })

	tests := []struct {
		name string
		ok   bool
	}{
		{"builder is golang:" + string(goVersion[1]) + " (got " + from + ")", goVersion != nil && from == "golang:"+string(goVersion[1])},
		{"CGO_ENABLED=0", strings.Contains(buildText, "CGO_ENABLED=0")},
		{"-trimpath", strings.Contains(buildText, "-trimpath")},
		{"-ldflags -s -w", strings.Contains(buildText, `-ldflags "-s -w`)},
		{"version stamped", strings.Contains(buildText, "internal/version.Version=") && strings.Contains(buildText, "internal/version.Commit=")},
		{"builds ./cmd/atrium", strings.Contains(buildText, "./cmd/atrium ")},
		{"builds ./cmd/atrium-agent", strings.Contains(buildText, "./cmd/atrium-agent")},
		{"builds ./cmd/atrium-sim", strings.Contains(buildText, "./cmd/atrium-sim")},
		{"final stage is not the Go toolchain", !strings.Contains(final.from, "golang")},
		{"final stage has CA certificates", strings.Contains(finalText, "ca-certificates") || strings.Contains(final.from, "distroless")},
		{"final stage copies the three programs", strings.Contains(finalText, "/out/atrium ") &&
			strings.Contains(finalText, "/out/atrium-agent") && strings.Contains(finalText, "/out/atrium-sim")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.ok {
				t.Errorf("Dockerfile: want %s", tt.name)
			}
		})
	}

	t.Run("non-root user", func(t *testing.T) {
		var user string
		for _, l := range final.lines {
			if f := strings.Fields(l); strings.EqualFold(f[0], "USER") && len(f) > 1 {
				user = f[1]
			}
		}
		name, _, _ := strings.Cut(user, ":")
		if user == "" || name == "root" || name == "0" {
			t.Errorf("final stage USER %q, want a non-root user", user)
		}
	})
	t.Run("ENV names flags", func(t *testing.T) {
		u := help(t, programs["atrium"])
		for _, l := range final.lines {
			if f := strings.Fields(l); strings.EqualFold(f[0], "ENV") {
				for _, kv := range f[1:] {
					k, _, _ := strings.Cut(kv, "=")
					if strings.HasPrefix(k, "ATRIUM_") && !u.envs[k] {
						t.Errorf("ENV %s names no flag of atrium", k)
					}
				}
			}
		}
	})
	t.Run("compose ports exposed", func(t *testing.T) {
		var exposed []string
		for _, l := range final.lines {
			if f := strings.Fields(l); strings.EqualFold(f[0], "EXPOSE") {
				exposed = append(exposed, f[1:]...)
			}
		}
		for _, p := range []string{"8000", "8001", "8002", "8003", "8004", "1883", "9100"} {
			if !slices.Contains(exposed, p) {
				t.Errorf("EXPOSE %v lacks %s", exposed, p)
			}
		}
	})
}

// .dockerignore keeps out what the build does not need, but none of the packages the
// three programs are built from.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "!") {
			patterns = append(patterns, strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/"))
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	for dir := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if rel, err := filepath.Rel(root, dir); err == nil && !strings.HasPrefix(rel, "..") {
			needed = append(needed, filepath.ToSlash(rel))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, p := range needed {
		// A pattern excludes p when it matches p or one of its parent directories.
		for _, pat := range patterns {
			for q := p; q != "." && q != "/"; q = filepath.ToSlash(filepath.Dir(q)) {
				if m, _ := filepath.Match(strings.TrimPrefix(pat, "**/"), q); m || (strings.HasPrefix(pat, "**/") && matchBase(pat, q)) {
					t.Errorf(".dockerignore %q excludes %s, which the build needs", pat, p)
				}
			}
		}
	}
	for _, want := range []string{".git", "data", "bin"} {
		if !slices.Contains(patterns, want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

func matchBase(pat, p string) bool {
	m, _ := filepath.Match(strings.TrimPrefix(pat, "**/"), filepath.Base(p))
	return m
}

// listenAddr is the address the one cloud part cfg.Target runs listens on.
func listenAddr(cfg cloud.Config) string {
	return map[string]string{"sensor": cfg.SensorAddr, "room": cfg.RoomAddr, "analytics": cfg.AnalyticsAddr,
		"notification": cfg.NotifyAddr, "gateway": cfg.GatewayAddr}[cfg.Target]
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	if _, err := strconv.Atoi(p); err != nil {
		t.Fatalf("listen address %q: port %q", addr, p)
	}
	return p
}

// fromImage is the image of a FROM line: its first word that is not an option.
func fromImage(from string) string {
	for _, f := range strings.Fields(from) {
		if !strings.HasPrefix(f, "--") {
			return f
		}
	}
	return ""
}
