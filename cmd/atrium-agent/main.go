// Command atrium-agent is Atrium's edge agent: an embedded MQTT broker for a
// building's sensors, a durable spool, and a batching forwarder to the cloud.
package main

import (
	"github.com/atrium-iot/atrium/agent"
	"github.com/atrium-iot/atrium/internal/flagenv"
)

func main() { flagenv.Main("atrium-agent", agent.Run) }
