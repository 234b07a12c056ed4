// Command baremochi is the footprint benchmark's reference point: a mochi-mqtt v2
// broker with an allow-all auth hook and nothing else (no spool, no forwarder),
// built and measured exactly like atrium-agent. -max-pending-writes sets mochi's
// per-connection outbound queue as the agent's flag of that name does (mochi's own
// default is 8,192). It logs one JSON line, {"msg":"broker started","mqtt":ADDR},
// and stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baremochi:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("mqtt-addr", "127.0.0.1:0", "MQTT listen address")
	pending := flag.Int("max-pending-writes", 0, "mochi's per-connection outbound queue (0: mochi's default)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	caps := mqtt.NewDefaultServerCapabilities()
	if *pending > 0 {
		caps.MaximumClientWritesPending = int32(*pending)
	}
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	ln := listeners.NewTCP(listeners.Config{ID: "tcp", Address: *addr})
	if err := srv.AddListener(ln); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	line, _ := json.Marshal(map[string]string{"msg": "broker started", "mqtt": ln.Address()})
	fmt.Fprintln(os.Stderr, string(line))
	<-ctx.Done()
	// Exit without Close: mochi v2.7.9's Close can deadlock while clients are
	// still being removed, and the process ends here anyway.
	return nil
}
