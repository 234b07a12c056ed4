// Command atrium-sim is Atrium's simulated sensor firmware: a fleet of devices, each
// with its own MQTT connection, publishing realistic room climate, or a CSV replay.
// See package sim for the flags, payloads and faults.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	sim "github.com/atrium-iot/atrium/firmware-sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sim.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "atrium-sim:", err)
		stop()
		os.Exit(1)
	}
}
