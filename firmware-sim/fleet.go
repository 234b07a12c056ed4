package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/atrium-iot/atrium/firmware-sim/physics"
	"github.com/atrium-iot/atrium/firmware-sim/replay"
)

// Role is what a simulated device measures and how it writes it.
type Role struct {
	Name  string
	Form  Form
	Types []string
}

// Roles are handed out to the devices of a room in turn: device s1 gets Roles[0],
// s2 Roles[1], …, s5 Roles[0] again.
var Roles = []Role{
	{"climate", FormJSON, []string{"temperature", "humidity", "co2"}},
	{"presence", FormSenML, []string{"occupancy", "pir", "noise"}},
	{"light", FormPlain, []string{"light", "temperature"}},
	{"air", FormSenML, []string{"co2", "temperature", "humidity"}},
}

// Capacities are handed out to rooms in turn: room-101 holds 8, room-102 12, …
var Capacities = []int{8, 12, 4, 20, 6, 10}

// simRoom is one simulated room and its climate.
type simRoom struct {
	id    string
	model physics.Room
	state physics.State
}

// RoomID names the i-th room (0-based): room-101, room-102, … with the site prefix.
func RoomID(site string, i int) string {
	id := fmt.Sprintf("room-%d", 101+i)
	if site != "" {
		id = site + "-" + id
	}
	return id
}

// SensorID names the j-th device (0-based) of a room: <room>-s1, <room>-s2, …
func SensorID(room string, j int) string { return fmt.Sprintf("%s-s%d", room, j+1) }

// round rounds v to d decimals.
func round(v float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(v*p) / p
}

// measure is what device d reads from its room's state at t, with sensor noise drawn from rng.
func measure(d *device, r *simRoom, t time.Time, rng *rand.Rand) []replay.Metric {
	s := r.state
	out := make([]replay.Metric, 0, len(d.role.Types))
	for _, typ := range d.role.Types {
		var v float64
		unit := ""
		switch typ {
		case "temperature":
			v, unit = round(s.Temperature+d.offset+rng.NormFloat64()*0.05, 2), "Cel"
		case "humidity":
			v, unit = round(math.Max(0, math.Min(100, s.RelativeHumidity()+rng.NormFloat64()*0.3)), 1), "%RH"
		case "co2":
			v, unit = math.Max(0, math.Round(s.CO2+rng.NormFloat64()*5)), "ppm"
		case "light":
			v, unit = math.Max(0, math.Round(physics.Light(r.model, t, s.People)*(1+rng.NormFloat64()*0.02))), "lx"
		case "occupancy":
			v, unit = float64(s.People), "count"
		case "pir":
			v = round(physics.Motion(s.People, rng.Float64(), rng.Float64()), 1)
		case "noise":
			v, unit = round(physics.Noise(s.People, rng.Float64()), 1), "dB"
		}
		out = append(out, replay.Metric{Type: typ, Unit: unit, Value: v})
	}
	return out
}
