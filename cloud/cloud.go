// Package cloud wires Atrium's cloud program, `atrium`: it parses the flags, opens
// each part's store and the bus, starts the chosen parts (-target) on their ports and
// shuts them down in order. Only this package and the thin main know every part.
package cloud

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/gateway"
	"github.com/atrium-iot/atrium/internal/bus"
	"github.com/atrium-iot/atrium/internal/bus/amqpbus"
	"github.com/atrium-iot/atrium/internal/bus/membus"
	"github.com/atrium-iot/atrium/internal/flagenv"
	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/retention"
	"github.com/atrium-iot/atrium/internal/tlsx"
	"github.com/atrium-iot/atrium/internal/version"
)

// part is one thing `atrium -target` can run. Each lives in its own file here
// (sensor.go, room.go, …): add opens its store, builds the service and binds its
// listener on the App. The gateway comes last so that it can point at the local
// services that run in the same process.
type part struct {
	name string
	add  func(a *App, ctx context.Context) error
}

// parts is every part, in start order. "all" means all of them.
var parts = []part{
	{"sensor", (*App).addSensor},
	{"room", (*App).addRoom},
	{"analytics", (*App).addAnalytics},
	{"notification", (*App).addNotification},
	{"gateway", (*App).addGateway},
}

func partNames() []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.name
	}
	return out
}

// Config is the parsed command line of `atrium`.
type Config struct {
	Target          string
	DataDir         string
	Store           string
	AnalyticsStore  string
	Bus             string
	GatewayAddr     string
	SensorAddr      string
	RoomAddr        string
	AnalyticsAddr   string
	NotifyAddr      string
	SensorURL       string
	RoomURL         string
	AnalyticsURL    string
	NotifyURL       string
	Keys            string
	RateLimit       float64
	RateBurst       int
	CORSOrigins     string
	OfflineAfter    time.Duration
	Retention       time.Duration
	RollupRetention time.Duration
	MaxBody         int64
	ReadTimeout     time.Duration
	TLSCert         string
	TLSKey          string
	TLSReload       time.Duration
	ClientCA        string
	UpstreamCA      string
	ShutdownTimeout time.Duration
	flagenv.Program
}

// keep is the retention every store is opened with.
func (c Config) keep() retention.Tiered {
	return retention.Tiered{Policy: retention.Policy{Retention: c.Retention}, RollupRetention: c.RollupRetention}
}

// ParseFlags reads the command line; every flag -x-y also reads ATRIUM_X_Y.
func ParseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("atrium", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Target, "target", "all", "parts to run, comma separated: all, or any of "+strings.Join(partNames(), ", "))
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded stores (one SQLite file per service)")
	fs.StringVar(&c.Store, "store", "", "store URL of the services: sqlite:///DIR (default: sqlite:// + -data-dir)")
	fs.StringVar(&c.AnalyticsStore, "analytics-store", "", "store URL of the analytics service: sqlite:///DIR or clickhouse://host:9000 (default: -store)")
	fs.StringVar(&c.Bus, "bus", "memory", "message bus: memory (in-process) or amqp://user:pass@host:5672/")
	fs.StringVar(&c.GatewayAddr, "gateway-addr", ":8000", "listen address of the API gateway")
	fs.StringVar(&c.SensorAddr, "sensor-addr", ":8001", "listen address of the sensor service")
	fs.StringVar(&c.RoomAddr, "room-addr", ":8002", "listen address of the room service")
	fs.StringVar(&c.AnalyticsAddr, "analytics-addr", ":8003", "listen address of the analytics service")
	fs.StringVar(&c.NotifyAddr, "notification-addr", ":8004", "listen address of the notification service")
	fs.StringVar(&c.SensorURL, "sensor-url", "http://127.0.0.1:8001", "URL of the sensor service when it runs elsewhere (used by the gateway and analytics)")
	fs.StringVar(&c.RoomURL, "room-url", "http://127.0.0.1:8002", "URL of the room service when it runs elsewhere")
	fs.StringVar(&c.AnalyticsURL, "analytics-url", "http://127.0.0.1:8003", "URL of the analytics service when it runs elsewhere")
	fs.StringVar(&c.NotifyURL, "notification-url", "http://127.0.0.1:8004", "URL of the notification service when it runs elsewhere")
	fs.StringVar(&c.Keys, "keys", "", "API keys file of the gateway (JSON: name, sha256, scopes); default: an admin key made on first start under -data-dir")
	fs.Float64Var(&c.RateLimit, "rate-limit", 50, "gateway: requests per second per API key")
	fs.IntVar(&c.RateBurst, "rate-burst", 100, "gateway: burst of requests per API key")
	fs.StringVar(&c.CORSOrigins, "cors-origins", "", "gateway: comma-separated origins allowed by CORS (empty: none)")
	fs.DurationVar(&c.OfflineAfter, "offline-after", 5*time.Minute, "a sensor silent longer than this is offline: the sensor service's registry status and its sensor.status.changed events")
	fs.DurationVar(&c.Retention, "retention", 0, "how long every store keeps raw readings, by reading timestamp: sensor readings, the room service's minute rollups, "+
		"the analytics service's readings (0: forever)")
	fs.DurationVar(&c.RollupRetention, "rollup-retention", 0, "how long rollups are kept: the sensor service's hourly ones (MongoDB), the room service's 5-minute and hour ones, "+
		"the analytics service's per-minute ones (0: forever; at least -retention when both are set)")
	fs.Int64Var(&c.MaxBody, "max-body", httpx.DefaultMaxBody, "largest accepted request body in bytes, after decompression")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", httpx.DefaultReadTimeout, "how long a request body may take to arrive, on every port; past it the answer is 408 "+
		"(request headers have at most 10s; WebSocket connections are not bounded by it)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain allowed) the gateway serves HTTPS with, HTTP/2 included; reloaded when the file changes or on SIGHUP.\n"+
		"A process that runs services without the gateway serves them over HTTPS with it")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of -tls-cert")
	fs.DurationVar(&c.TLSReload, "tls-reload-interval", tlsx.DefaultReloadInterval, "how often -tls-cert and -tls-key are checked for changes")
	fs.StringVar(&c.ClientCA, "client-ca", "", "gateway: PEM bundle of the CAs whose client certificates are accepted next to API keys (needs -tls-cert);\n"+
		"a certificate's subject maps to a principal of the keys file")
	fs.StringVar(&c.UpstreamCA, "upstream-ca", "", "PEM bundle of the CAs trusted, instead of the system's, for https:// upstream URLs (-sensor-url …)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may take to finish on shutdown")
	c.Program.Add(fs)
	if err := flagenv.Parse(fs, args, getenv); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.ReadTimeout <= 0 {
		return c, fmt.Errorf("-read-timeout must be positive, got %s", c.ReadTimeout)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, errors.New("-tls-cert and -tls-key go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return c, errors.New("-client-ca needs -tls-cert: client certificates come over HTTPS")
	}
	if c.Retention < 0 || c.RollupRetention < 0 {
		return c, fmt.Errorf("-retention and -rollup-retention must not be negative")
	}
	if c.Retention > 0 && c.RollupRetention > 0 && c.RollupRetention < c.Retention {
		return c, fmt.Errorf("-rollup-retention (%s) must be at least -retention (%s): rollups outlive the raw readings", c.RollupRetention, c.Retention)
	}
	if c.Store == "" {
		c.Store = "sqlite://" + c.DataDir
	}
	if c.AnalyticsStore == "" {
		// Analytics runs on SQLite or ClickHouse: with a MongoDB -store it keeps its
		// embedded SQLite file under -data-dir unless -analytics-store says otherwise.
		c.AnalyticsStore = c.Store
		if !strings.HasPrefix(c.Store, "sqlite://") {
			c.AnalyticsStore = "sqlite://" + c.DataDir
		}
	}
	return c, nil
}

// targets expands -target into the parts to run, in start order.
func (c Config) targets() ([]part, error) {
	want := map[string]bool{}
	for _, t := range strings.Split(c.Target, ",") {
		t = strings.TrimSpace(t)
		switch {
		case t == "all":
			for _, p := range parts {
				want[p.name] = true
			}
		case slices.Contains(partNames(), t):
			want[t] = true
		default:
			return nil, fmt.Errorf("-target: unknown part %q (known: all, %s)", t, strings.Join(partNames(), ", "))
		}
	}
	var out []part
	for _, p := range parts {
		if want[p.name] {
			out = append(out, p)
		}
	}
	return out, nil
}

// App is a running `atrium`: its servers, background loops, stores and bus.
type App struct {
	cfg     Config
	bus     bus.Bus
	log     *slog.Logger
	servers map[string]*httpx.Server
	loops   []func(context.Context) error
	// cert is the -tls-cert pair, nil without one; gateway tells whether the
	// gateway runs in this process (then only it serves HTTPS).
	cert        *tlsx.Reloader
	gateway     bool
	clientCAs   *x509.CertPool
	upstreamTLS *tls.Config
	closers     []func() error // closed in reverse order after the servers stop
}

// New opens the stores and the bus of the chosen parts and binds their listeners.
// Start serves them.
func New(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log, servers: map[string]*httpx.Server{}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	targets, err := cfg.targets()
	if err != nil {
		return nil, err
	}
	if err := a.setupTLS(targets); err != nil {
		return nil, err
	}
	b, err := openBus(ctx, cfg.Bus, log)
	if err != nil {
		return nil, err
	}
	a.bus = b
	a.closers = append(a.closers, b.Close)
	for _, p := range targets {
		if err := p.add(a, ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return a, nil
}

func openBus(ctx context.Context, url string, log *slog.Logger) (bus.Bus, error) {
	switch {
	case url == "memory" || url == "":
		return membus.New(log.With("bus", "memory")), nil
	case strings.HasPrefix(url, "amqp://") || strings.HasPrefix(url, "amqps://"):
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		b, err := amqpbus.New(cctx, url, amqpbus.Options{Logger: log.With("bus", "amqp")})
		if err != nil {
			return nil, fmt.Errorf("-bus %s: %w", redactURL(url), err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("-bus %q: want memory or amqp://", url)
	}
}

// storeDir is the directory of an sqlite:// store URL given by flag.
func storeDir(flag, url string) (string, error) {
	dir, ok := strings.CutPrefix(url, "sqlite://")
	if !ok {
		return "", fmt.Errorf("%s %q: want sqlite:///DIR", flag, url)
	}
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	return dir, nil
}

// Bus is the app's message bus, for tests that watch its events.
func (a *App) Bus() bus.Bus { return a.bus }

// serve registers a part's HTTP server and background loops on the App.
func (a *App) serve(name, addr string, h http.Handler, log *slog.Logger, loops ...func(context.Context) error) error {
	opts := []httpx.ServerOption{httpx.WithReadTimeout(a.cfg.ReadTimeout)}
	if tc := a.serverTLS(name); tc != nil {
		opts = append(opts, httpx.WithTLS(tc))
	}
	srv, err := httpx.Listen(name, addr, h, log, opts...)
	if err != nil {
		return err
	}
	a.servers[name] = srv
	a.loops = append(a.loops, loops...)
	return nil
}

// URL is the base URL of a part: the local server when it runs in this process,
// else the -X-url flag.
func (a *App) URL(part string) string {
	if s, ok := a.servers[part]; ok {
		return s.URL()
	}
	switch part {
	case "sensor":
		return a.cfg.SensorURL
	case "room":
		return a.cfg.RoomURL
	case "analytics":
		return a.cfg.AnalyticsURL
	case "notification":
		return a.cfg.NotifyURL
	}
	return ""
}

// openStore opens a service's store: with engine when the store URL of flag is
// for it (MongoDB, ClickHouse), else with sqlite at the service's file under that
// sqlite:// URL. The App closes the store after its servers stop.
func openStore[S io.Closer](a *App, flag, url, service string, useEngine bool,
	engine func(url string) (S, error), sqlite func(path string) (S, error)) (S, error) {
	var st S
	if useEngine {
		s, err := engine(url)
		if err != nil {
			return st, fmt.Errorf("open store: %w", err)
		}
		st = s
	} else {
		dir, err := storeDir(flag, url)
		if err != nil {
			return st, err
		}
		s, err := sqlite(filepath.Join(dir, service+".db"))
		if err != nil {
			return st, fmt.Errorf("open store: %w", err)
		}
		st = s
	}
	a.closers = append(a.closers, st.Close)
	return st, nil
}

// Addr is the listen address of a part ("sensor", …), or "" when it is not running.
func (a *App) Addr(part string) string {
	if s, ok := a.servers[part]; ok {
		return s.Addr()
	}
	return ""
}

// Run serves until ctx ends or a server fails, then shuts down in order: stop
// accepting and finish in-flight requests, stop the background loops, close the bus
// and the stores.
func (a *App) Run(ctx context.Context) error {
	defer a.close()
	errc := make(chan error, len(a.servers))
	for _, s := range a.servers {
		go func() { errc <- s.Serve() }()
	}
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, l := range a.loops {
		wg.Go(func() {
			if err := l(loopCtx); err != nil {
				a.log.Error("background loop failed", "err", err)
			}
		})
	}
	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
	case runErr = <-errc:
		a.log.Error("server failed, shutting down", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, s := range a.servers {
		if err := s.Shutdown(sctx); err != nil {
			errs = append(errs, err)
		}
	}
	stopLoops()
	wg.Wait()
	return errors.Join(append([]error{runErr}, errs...)...)
}

func (a *App) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Error("close failed", "err", err)
		}
	}
	a.closers = nil
}

// Run is the whole `atrium` program: main only calls it.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "keys" {
		return gateway.KeysCommand(args[1:], getenv, stdout, stderr)
	}
	cfg, err := ParseFlags(args, getenv, stderr)
	log, err := cfg.Start("atrium", err, stdout, stderr)
	if log == nil {
		return err
	}
	app, err := New(ctx, cfg, log)
	if err != nil {
		return flagenv.ListenError(err, cfg.listenAddrs())
	}
	log.Info("atrium started", "version", version.Version, "parts", cfg.Target, "store", cfg.Store, "bus", redactURL(cfg.Bus))
	return app.Run(ctx)
}

// redactURL hides a password in a URL for logging.
func redactURL(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.Index(s[i+3:], "@"); j >= 0 {
			cred := s[i+3 : i+3+j]
			if k := strings.Index(cred, ":"); k >= 0 {
				return s[:i+3] + cred[:k] + ":xxxxx" + s[i+3+j:]
			}
		}
	}
	return s
}
