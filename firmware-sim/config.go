package sim

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/flagenv"
)

// Config is everything one run of the simulator needs. ParseFlags builds it from the
// command line; tests may fill it directly.
type Config struct {
	Broker         string            // MQTT server URL: tcp://host:port (mqtt:// and host:port accepted)
	Rooms          int               // simulated rooms
	SensorsPerRoom int               // simulated devices per room
	Interval       time.Duration     // simulated time between two rounds
	QoS            byte              // QoS of data messages: 0, 1 or 2
	Username       string            // MQTT username; empty with a password: the sensor id
	Password       string            // MQTT password for devices without one in Credentials
	Credentials    map[string]string // sensor id → password
	Site           string            // prefix of room and sensor ids ("<site>-room-101")
	Seed           uint64            // seed of every random choice; same seed, same run
	Duration       time.Duration     // wall-clock run time; 0 = until stopped
	Count          int               // rounds to publish; 0 = unlimited
	Replay         string            // CSV file to replay instead of simulating
	ReplayForm     Form              // payload form of replayed frames: FormSenML or FormJSON
	Speed          float64           // simulated seconds per real second; 0 = as fast as possible
	Faults         Faults            // fault rates
	Start          time.Time         // simulated clock at round 0
	Queue          int               // per-device outbox capacity, in messages
	Inflight       int               // QoS 1/2 publishes each device keeps in flight (capped by the broker's Receive Maximum); 0 = DefaultInflight
	Drain          time.Duration     // how long to keep publishing queued messages after the last round
	ConnectWait    time.Duration     // how long to wait for the devices' first connection (and after a storm at full speed)
	// Now is the wall clock; nil means time.Now.
	Now func() time.Time
	// Progress is told how far a replay has got; nil: nobody.
	Progress *Progress
}

// DefaultInflight is how many publishes a device keeps in flight unless -inflight
// says otherwise.
const DefaultInflight = 32

// Faults are per-draw probabilities of each fault (see the package documentation).
type Faults struct {
	Dropout   float64 `json:"dropout"`
	Spike     float64 `json:"spike"`
	Stuck     float64 `json:"stuck"`
	Skew      float64 `json:"skew"`
	Malformed float64 `json:"malformed"`
	Duplicate float64 `json:"duplicate"`
	Reconnect float64 `json:"reconnect"`
}

// ParseFaults reads a comma list of name=rate, e.g. "spike=0.01,duplicate=0.02".
// Rates are probabilities in [0,1]; spike, skew, malformed and duplicate are drawn
// together, so their sum must not exceed 1.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	fields := map[string]*float64{
		"dropout": &f.Dropout, "spike": &f.Spike, "stuck": &f.Stuck, "skew": &f.Skew,
		"malformed": &f.Malformed, "duplicate": &f.Duplicate, "reconnect": &f.Reconnect,
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		p := fields[strings.TrimSpace(name)]
		if !ok || p == nil {
			names := make([]string, 0, len(fields))
			for n := range fields {
				names = append(names, n)
			}
			sort.Strings(names)
			return Faults{}, fmt.Errorf("faults: %q: want name=rate with name one of %s", part, strings.Join(names, ", "))
		}
		r, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
			return Faults{}, fmt.Errorf("faults: %q: rate must be a number in [0,1]", part)
		}
		*p = r
	}
	if f.Spike+f.Skew+f.Malformed+f.Duplicate > 1 {
		return Faults{}, errors.New("faults: spike+skew+malformed+duplicate must not exceed 1")
	}
	return f, nil
}

// String writes the rates back in ParseFaults' syntax.
func (f Faults) String() string {
	var parts []string
	for _, p := range []struct {
		n string
		v float64
	}{{"dropout", f.Dropout}, {"spike", f.Spike}, {"stuck", f.Stuck}, {"skew", f.Skew}, {"malformed", f.Malformed}, {"duplicate", f.Duplicate}, {"reconnect", f.Reconnect}} {
		if p.v > 0 {
			parts = append(parts, p.n+"="+strconv.FormatFloat(p.v, 'g', -1, 64))
		}
	}
	return strings.Join(parts, ",")
}

// speedValue is the -speed flag: a positive factor or "max".
type speedValue struct{ f *float64 }

func (s speedValue) String() string {
	if s.f == nil || *s.f == 0 {
		return "max"
	}
	return strconv.FormatFloat(*s.f, 'g', -1, 64)
}

func (s speedValue) Set(v string) error {
	if strings.EqualFold(v, "max") {
		*s.f = 0
		return nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return errors.New(`want a positive number or "max"`)
	}
	*s.f = f
	return nil
}

// options are the flags that shape the program rather than the simulation.
type options struct {
	logFormat, logLevel, summary, progress string
}

// ParseFlags reads the command line and the ATRIUM_* environment into a Config.
// stderr receives -h output and parse errors.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg, _, err := parseFlags(args, getenv, stderr)
	return cfg, err
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, options, error) {
	var (
		cfg                              Config
		opt                              options
		qos, seed                        uint64
		faults, start, creds, replayForm string
	)
	cfg.Speed = 1
	fs := flag.NewFlagSet("atrium-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker URL (tcp://host:port); unset, with $ATRIUM_MQTT_ADDR set, tcp://$ATRIUM_MQTT_ADDR")
	fs.IntVar(&cfg.Rooms, "rooms", 3, "simulated rooms (room-101, room-102, …)")
	fs.IntVar(&cfg.SensorsPerRoom, "sensors-per-room", 4, "simulated devices per room (<room>-s1, …), each with its own MQTT connection")
	fs.DurationVar(&cfg.Interval, "interval", 5*time.Second, "simulated time between two readings of a device")
	fs.Uint64Var(&qos, "qos", 1, "MQTT QoS of readings: 0, 1 or 2")
	fs.StringVar(&cfg.Username, "username", "", "MQTT username (default: the sensor id when a password is set)")
	fs.StringVar(&cfg.Password, "password", "", "MQTT password for devices not in -credentials")
	fs.StringVar(&creds, "credentials", "", "JSON file of device passwords: {\"<sensor_id>\":\"<password>\"} or [{\"username\":…,\"password\":…}]")
	fs.StringVar(&cfg.Site, "site", "", "prefix of room and sensor ids, so several simulators can share a broker")
	fs.Uint64Var(&seed, "seed", 0, "seed of every random choice; 0 picks one from the clock (printed in the summary)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "stop after this wall-clock time; 0 runs until stopped or -count is reached")
	fs.IntVar(&cfg.Count, "count", 0, "stop after this many rounds (one reading of every device; in replay, one timestamp); 0 = no limit")
	fs.StringVar(&cfg.Replay, "replay", "", "CSV file to replay with its own timestamps: generic timestamp,sensor_id,room_id,type,value, or a UCI occupancy data set")
	fs.StringVar(&replayForm, "replay-form", "senml", "payload form of replayed readings: senml (keeps units) or json")
	fs.Var(speedValue{&cfg.Speed}, "speed", `simulated seconds per real second, or "max" for no waiting`)
	fs.StringVar(&faults, "faults", "", "fault rates, e.g. dropout=0.01,spike=0.01,stuck=0.01,skew=0.01,malformed=0.01,duplicate=0.01,reconnect=0.001")
	fs.StringVar(&start, "start", "", "simulated clock at the first round, RFC 3339 (default now)")
	fs.IntVar(&cfg.Inflight, "inflight", DefaultInflight, "QoS 1 and 2 publishes each device keeps in flight, in order (never more than the broker's Receive Maximum)")
	fs.IntVar(&cfg.Queue, "queue", 1000, "messages each device keeps while disconnected; the oldest overflow")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "after the last round, how long to keep sending what is queued")
	fs.DurationVar(&cfg.ConnectWait, "connect-wait", 10*time.Second, "how long to wait for the devices to connect before the first round")
	fs.StringVar(&opt.summary, "summary", "text", "summary format on stdout: text or json")
	fs.StringVar(&opt.progress, "progress", "auto", "replay progress on stderr: auto (a status line on a terminal, a log line every 10s otherwise) or off")
	fs.StringVar(&opt.logFormat, "log-format", "auto", "log format: json, text or auto (text on a terminal)")
	fs.StringVar(&opt.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := flagenv.Parse(fs, args, getenv); err != nil {
		return Config{}, opt, err
	}
	if fs.NArg() > 0 {
		return Config{}, opt, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	brokerGiven := getenv(flagenv.EnvName("broker")) != ""
	fs.Visit(func(f *flag.Flag) { brokerGiven = brokerGiven || f.Name == "broker" })
	if addr := getenv(flagenv.EnvName("mqtt-addr")); !brokerGiven && addr != "" {
		cfg.Broker = "tcp://" + dialAddr(addr)
	}
	if qos > 2 {
		return Config{}, opt, fmt.Errorf("-qos %d: want 0, 1 or 2", qos)
	}
	if cfg.Inflight < 1 {
		return Config{}, opt, fmt.Errorf("-inflight %d: want at least 1", cfg.Inflight)
	}
	cfg.QoS, cfg.Seed = byte(qos), seed
	var err error
	if cfg.Faults, err = ParseFaults(faults); err != nil {
		return Config{}, opt, err
	}
	if start != "" {
		if cfg.Start, err = time.Parse(time.RFC3339Nano, start); err != nil {
			return Config{}, opt, fmt.Errorf("-start %q: want RFC 3339", start)
		}
	}
	switch Form(replayForm) {
	case FormSenML, FormJSON:
		cfg.ReplayForm = Form(replayForm)
	default:
		return Config{}, opt, fmt.Errorf("-replay-form %q: want senml or json", replayForm)
	}
	if creds != "" {
		if cfg.Credentials, err = LoadCredentials(creds); err != nil {
			return Config{}, opt, err
		}
	}
	switch opt.summary {
	case "text", "json":
	default:
		return Config{}, opt, fmt.Errorf("-summary %q: want text or json", opt.summary)
	}
	switch opt.progress {
	case "auto", "off":
	default:
		return Config{}, opt, fmt.Errorf("-progress %q: want auto or off", opt.progress)
	}
	return cfg, opt, nil
}

// dialAddr turns a listen address (":1883", "0.0.0.0:1883") into one to dial.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// brokerURL reads the -broker value.
func brokerURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "tcp://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("broker %q: %w", s, err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss":
	default:
		return nil, fmt.Errorf("broker %q: unsupported scheme %q", s, u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("broker %q: no host", s)
	}
	return u, nil
}

// LoadCredentials reads a JSON file of device passwords. Accepted shapes: an object
// {"<sensor_id>": "<password>"}; an array of {"username"|"sensor_id"|"client_id"|"id":
// …, "password": …}; or such an array under "devices" or "credentials". Entries
// without a plain-text password (e.g. only a hash) are ignored.
func LoadCredentials(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	out := map[string]string{}
	var flat map[string]string
	if json.Unmarshal(b, &flat) == nil {
		return flat, nil
	}
	type entry struct {
		Username string `json:"username"`
		SensorID string `json:"sensor_id"`
		ClientID string `json:"client_id"`
		ID       string `json:"id"`
		Password string `json:"password"`
	}
	var list []entry
	if err := json.Unmarshal(b, &list); err != nil {
		var wrapped struct {
			Devices     []entry `json:"devices"`
			Credentials []entry `json:"credentials"`
		}
		if err2 := json.Unmarshal(b, &wrapped); err2 != nil {
			return nil, fmt.Errorf("credentials: %s: %w", path, err)
		}
		list = append(wrapped.Devices, wrapped.Credentials...)
	}
	for _, e := range list {
		id := cmp.Or(e.Username, e.SensorID, e.ClientID, e.ID)
		if id != "" && e.Password != "" {
			out[id] = e.Password
		}
	}
	return out, nil
}
