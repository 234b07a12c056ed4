// Command atrium runs Atrium's cloud: the API gateway and the sensor, room,
// analytics and notification services, all in one process or any subset (-target).
package main

import (
	"github.com/atrium-iot/atrium/cloud"
	"github.com/atrium-iot/atrium/internal/flagenv"
)

func main() { flagenv.Main("atrium", cloud.Run) }
