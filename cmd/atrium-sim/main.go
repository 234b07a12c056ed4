// Command atrium-sim is Atrium's simulated sensor firmware: a fleet of devices, each
// with its own MQTT connection, publishing realistic room climate, or a CSV replay.
// See package sim for the flags, payloads and faults.
package main

import (
	sim "github.com/atrium-iot/atrium/firmware-sim"
	"github.com/atrium-iot/atrium/internal/flagenv"
)

func main() { flagenv.Main("atrium-sim", sim.Run) }
