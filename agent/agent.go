// Package agent is the edge agent, `atrium-agent`: sensors publish to its embedded
// MQTT broker; an ingest hook decodes and validates every publish and keeps the
// readings in a bbolt spool (fsynced before the QoS 1 PUBACK); a forwarder sends them
// in batches to the sensor service until the cloud has them. Sub-packages: decode
// (payload forms), spool (durable store and dead letters), forward (batching HTTP).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/atrium-iot/atrium/agent/forward"
	"github.com/atrium-iot/atrium/agent/spool"
	"github.com/atrium-iot/atrium/broker"
	"github.com/atrium-iot/atrium/internal/httpx"
)

// Agent is a running edge agent.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	broker  *broker.Broker
	spool   *spool.Spool
	fwd     *forward.Forwarder
	status  *httpx.Server
	reg     *prometheus.Registry
	metrics agentMetrics
	devices devices
	stamps  stamps
	pipe    *pipeline
}

type agentMetrics struct {
	decoded *prometheus.CounterVec
	refused prometheus.Counter
}

// New opens the spool and binds the broker's and the status server's listeners.
func New(ctx context.Context, cfg Config, log *slog.Logger) (a *Agent, err error) {
	a = &Agent{cfg: cfg, log: log, now: time.Now}
	if cfg.Now != nil {
		a.now = cfg.Now
	}
	// a itself, not the result, which is nil by the time a failing New returns.
	opened := a
	defer func() {
		if err != nil {
			opened.closeAll()
		}
	}()
	if dir := filepath.Dir(cfg.Spool); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("spool directory: %w", err)
		}
	}
	a.spool, err = spool.Open(cfg.Spool, spool.Options{MaxBytes: cfg.SpoolMaxBytes, Policy: cfg.SpoolFull, Logger: log.With("part", "spool")})
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	client, err := newCloudClient(ctx, cfg, log.With("part", "forward"))
	if err != nil {
		return nil, err
	}
	a.fwd = forward.New(forward.NewSpoolQueue(a.spool), forward.Config{
		URL: strings.TrimRight(cfg.CloudURL, "/"), Token: cfg.Token, Client: client,
		MaxCount: cfg.BatchMax, MaxBytes: cfg.BatchBytes, Linger: cfg.Linger,
		MaxInFlight: cfg.MaxInFlight, MismatchRetries: zeroAsNone(cfg.MismatchRetries),
		Logger: log.With("part", "forward"),
	})
	a.broker, err = broker.New(broker.Config{
		Addr: cfg.MQTTAddr, TLSAddr: cfg.TLSAddr, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey, WSAddr: cfg.WSAddr,
		TLSClientCA: cfg.TLSClientCA, TLSClientAuth: tlsClientAuth(cfg),
		CredentialsFile: cfg.Credentials, AllowAnonymous: cfg.AllowAnonymous,
		MaxPacketSize: cfg.MaxPacketSize, MaxConnections: cfg.MaxConnections, MaxPendingWrites: cfg.MaxPendingWrites,
		MaxKeepAlive: cfg.MaxKeepAlive, MaxRetained: zeroAsNone(cfg.MaxRetained), MaxRetainedBytes: zeroAsNone(cfg.MaxRetainedBytes),
	}, log.With("part", "broker"))
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	a.pipe = newPipeline(a)
	if err := a.broker.AddHook(&ingestHook{a: a}, nil); err != nil {
		return nil, fmt.Errorf("broker: ingest hook: %w", err)
	}
	a.reg = httpx.NewRegistry()
	a.registerMetrics()
	a.status, err = httpx.Listen("status", cfg.HTTPAddr, a.handler(), log)
	if err != nil {
		return nil, err
	}
	if err := a.broker.Start(ctx); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	return a, nil
}

// MQTTAddr is the address the broker's TCP listener is bound to.
func (a *Agent) MQTTAddr() string { return a.broker.Addr() }

// HTTPAddr is the address of the status server.
func (a *Agent) HTTPAddr() string { return a.status.Addr() }

// Run serves until ctx ends, then shuts down in order: stop taking MQTT input and
// status requests, flush the forwarder within the shutdown deadline, close the spool.
func (a *Agent) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.status.Serve() }()
	fctx, stopFwd := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.fwd.Run(fctx); err != nil && !errors.Is(err, context.Canceled) {
			a.log.Error("forwarder stopped", "err", err)
		}
	})
	a.log.Info("agent started", "mqtt", a.broker.Addr(), "status", a.status.Addr(), "cloud", a.cfg.CloudURL, "site", a.cfg.Site, "spool", a.cfg.Spool)
	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
	case runErr = <-errc:
	}
	// 1. stop taking input, and spool what the pipeline holds
	if err := a.broker.Close(); err != nil {
		a.log.Error("broker close failed", "err", err)
	}
	a.pipe.close()
	// 2. flush what is spooled, within the deadline
	stopFwd()
	wg.Wait()
	fl, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.fwd.Flush(fl); err != nil {
		st := a.spool.Stats()
		a.log.Warn("readings left in the spool for the next start", "readings", st.Readings, "err", err)
	}
	sctx, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	_ = a.status.Shutdown(sctx)
	// 3. close the spool
	if err := a.spool.Close(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	a.spool = nil
	return runErr
}

// closeAll releases what New opened when New fails.
func (a *Agent) closeAll() {
	if a.broker != nil {
		_ = a.broker.Close()
	}
	if a.pipe != nil {
		a.pipe.close()
	}
	if a.spool != nil {
		_ = a.spool.Close()
	}
}

func (a *Agent) handler() http.Handler {
	r := chi.NewRouter()
	r.Use(httpx.RequestIDs, httpx.AccessLog(nil, httpx.NewMetrics(a.reg)), httpx.Recoverer(a.log), httpx.GetHead)
	httpx.Health(r, a.reg, map[string]httpx.Check{
		"cloud": a.fwd.Probe,
		"spool": func(context.Context) error { return nil },
	})
	r.Get("/devices", func(w http.ResponseWriter, _ *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]any{"devices": a.devices.list()})
	})
	r.Get("/status", func(w http.ResponseWriter, _ *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]any{
			"site": a.cfg.Site, "spool": a.spool.Stats(), "forwarder": a.fwd.Stats(), "broker": a.broker.Stats(),
		})
	})
	return r
}

func (a *Agent) registerMetrics() {
	a.metrics.decoded = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "atrium_agent_messages_total", Help: "MQTT messages on atrium/ topics, by payload form (json, senml, plain, status) and result (ok; partial: some parts dead-lettered, the rest kept; dead_letter: nothing kept).",
	}, []string{"form", "result"})
	a.metrics.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "atrium_agent_messages_refused_total", Help: "Messages refused because the spool could not take them (full with reject-new, or failing).",
	})
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	sp := func() spool.Stats { return a.spool.Stats() }
	a.reg.MustRegister(a.leftOutMetrics()...)
	a.reg.MustRegister(a.metrics.decoded, a.metrics.refused,
		gauge("atrium_agent_spool_readings", "Readings in the spool, waiting for the cloud.", func() float64 { return float64(sp().Readings) }),
		gauge("atrium_agent_spool_bytes", "Bytes of the readings in the spool.", func() float64 { return float64(sp().Bytes) }),
		gauge("atrium_agent_spool_file_bytes", "Size of the spool file on disk.", func() float64 { return float64(sp().FileBytes) }),
		gauge("atrium_agent_spool_oldest_age_seconds", "Age of the oldest spooled reading (0 when empty).", func() float64 {
			if t := sp().OldestAppend; !t.IsZero() {
				return a.now().Sub(t).Seconds()
			}
			return 0
		}),
		gauge("atrium_agent_dead_letters", "Dead letters kept in the spool.", func() float64 { return float64(sp().DeadLetters) }),
		counter("atrium_agent_ingested_total", "Readings taken into the spool.", func() float64 { return float64(sp().Appended) }),
		counter("atrium_agent_dead_lettered_total", "Payloads and readings dead-lettered (undecodable, invalid, or refused by the cloud).", func() float64 { return float64(sp().DeadLettered) }),
		counter("atrium_agent_dropped_total", "Readings dropped by the drop-oldest policy of a full spool.", func() float64 { return float64(sp().Dropped) }),
		counter("atrium_agent_rejected_total", "Readings rejected by the reject-new policy of a full spool.", func() float64 { return float64(sp().Rejected) }),
		counter("atrium_agent_forwarded_total", "Readings the cloud acknowledged.", func() float64 { return float64(a.fwd.Stats().Forwarded) }),
		counter("atrium_agent_forward_retries_total", "Batch sends retried after a failure.", func() float64 { return float64(a.fwd.Stats().Retries) }),
		forwardMismatches(a.fwd),
		gauge("atrium_agent_mqtt_clients", "MQTT clients connected.", func() float64 { return float64(a.broker.Stats().ClientsConnected) }),
		counter("atrium_agent_mqtt_messages_received_total", "MQTT PUBLISH packets received.", func() float64 { return float64(a.broker.Stats().MessagesReceived) }),
		counter("atrium_agent_mqtt_messages_dropped_total", "Messages to slow subscribers dropped by the broker.", func() float64 { return float64(a.broker.Stats().MessagesDropped) }),
		counter("atrium_agent_mqtt_auth_failures_total", "Connections refused for bad credentials.", func() float64 { return float64(a.broker.Stats().AuthFailures) }),
		counter("atrium_agent_mqtt_acl_denied_total", "Publishes and subscriptions refused by the topic ACL.", func() float64 { return float64(a.broker.Stats().ACLDenied) }),
		counter("atrium_agent_mqtt_retained_refused_total", "Retained messages delivered but not retained: their device's retained allowance was full.", func() float64 { return float64(a.broker.Stats().RetainedRefused) }),
	)
}
