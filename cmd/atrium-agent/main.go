// Command atrium-agent is Atrium's edge agent: an embedded MQTT broker for a
// building's sensors, a durable spool, and a batching forwarder to the cloud.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/atrium-iot/atrium/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "atrium-agent:", err)
		os.Exit(1)
	}
}
