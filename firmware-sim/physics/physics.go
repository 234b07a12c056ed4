// Package physics models the indoor climate of an office room: who is in it, and the
// CO2, temperature, humidity, light, motion and noise that follow. Every function is
// pure: the same inputs give the same outputs, so the simulator is reproducible and
// each law can be checked by hand.
//
// Clock convention: a time's UTC wall clock is read as the building's local solar
// time (08:00 UTC is "8 in the morning"), so schedules and daylight need no zone data.
package physics

import (
	"math"
	"time"
)

// Constants of the model, with the usual engineering values.
const (
	// OutdoorCO2 is the CO2 concentration of outdoor air, in ppm.
	OutdoorCO2 = 420.0
	// CO2PerPerson is the CO2 a seated office worker exhales, in litres per second.
	CO2PerPerson = 0.005
	// HeatPerPerson is the sensible heat one person gives off, in watts.
	HeatPerPerson = 100.0
	// MoisturePerPerson is the water vapour one person gives off, in grams per hour.
	MoisturePerPerson = 50.0
	// OccupiedSetPoint is the HVAC set-point while the building is in use, in °C.
	OccupiedSetPoint = 21.0
	// SetbackSetPoint is the HVAC set-point at night and at weekends, in °C.
	SetbackSetPoint = 17.0
	// LampIlluminance is what the ceiling lamps add at desk height when someone is in, in lux.
	LampIlluminance = 450.0
	// OutdoorRelativeHumidity is the relative humidity assumed for outdoor air, in %.
	OutdoorRelativeHumidity = 70.0
)

// Room is the fixed description of one room.
type Room struct {
	// Seed makes the room's meetings and clouds its own; two rooms with different
	// seeds have different days.
	Seed uint64
	// Capacity is how many people the room holds.
	Capacity int
	// Volume is the air volume in cubic metres.
	Volume float64
	// ACH is the mechanical ventilation rate in air changes per hour while the HVAC runs.
	ACH float64
	// InfiltrationACH is the air change rate through the envelope when the HVAC is off.
	InfiltrationACH float64
	// DaylightFactor is the share of outdoor horizontal illuminance that reaches the sensor.
	DaylightFactor float64
	// Latitude of the building in degrees north, for the sun's path.
	Latitude float64
	// HVACTimeConstant is how fast the HVAC pulls the air towards its set-point.
	HVACTimeConstant time.Duration
	// EnvelopeTimeConstant is how fast the room drifts towards the outdoor temperature.
	EnvelopeTimeConstant time.Duration
	// HeatCapacity is the room's effective heat capacity (air plus furniture) in J/K.
	HeatCapacity float64
}

// Office returns a typical office room for capacity people: 10 m² and 2.8 m of height
// per place, 4 air changes per hour while ventilated, 0.3 through the envelope.
func Office(capacity int, seed uint64) Room {
	vol := float64(capacity) * 10 * 2.8
	return Room{
		Seed: seed, Capacity: capacity, Volume: vol, ACH: 4, InfiltrationACH: 0.3,
		DaylightFactor: 0.03, Latitude: 50,
		HVACTimeConstant: 30 * time.Minute, EnvelopeTimeConstant: 8 * time.Hour,
		HeatCapacity: vol * 1.2 * 1005 * 8, // air, times 8 for walls and furniture
	}
}

// Workday reports whether t falls on Monday to Friday.
func Workday(t time.Time) bool {
	wd := t.UTC().Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// hours is the time of day of t in fractional hours.
func hours(t time.Time) float64 {
	t = t.UTC()
	return float64(t.Hour()) + float64(t.Minute())/60 + float64(t.Second())/3600
}

// HVACOn reports whether the HVAC is in occupied mode: working days 07:00–19:00, an
// hour either side of the working day.
func HVACOn(t time.Time) bool {
	h := hours(t)
	return Workday(t) && h >= 7 && h < 19
}

// SetPoint is the HVAC set-point at t: OccupiedSetPoint in occupied mode, else SetbackSetPoint.
func SetPoint(t time.Time) float64 {
	if HVACOn(t) {
		return OccupiedSetPoint
	}
	return SetbackSetPoint
}

// Ventilation is the room's air change rate at t, per hour.
func Ventilation(r Room, t time.Time) float64 {
	if HVACOn(t) {
		return r.ACH
	}
	return r.InfiltrationACH
}

// ScheduleFraction is the expected share of a room's places taken at t on a working
// day: nobody before 8, arrivals until 9, half full in the morning, a lunch dip
// 12–13, half full in the afternoon, departures 17–18, nobody after 18, nobody at
// weekends.
func ScheduleFraction(t time.Time) float64 {
	if !Workday(t) {
		return 0
	}
	switch h := hours(t); {
	case h < 8 || h >= 18:
		return 0
	case h < 9:
		return 0.5 * (h - 8)
	case h < 12:
		return 0.5
	case h < 13:
		return 0.2
	case h < 17:
		return 0.5
	default:
		return 0.5 * (18 - h)
	}
}

// MeetingHour reports whether the room holds a meeting during the hour that contains
// t: on working days between 9 and 12 and between 13 and 17, about one hour in three.
func MeetingHour(r Room, t time.Time) bool {
	if !Workday(t) {
		return false
	}
	h := t.UTC().Hour()
	if h < 9 || h >= 17 || h == 12 {
		return false
	}
	return unit(r.Seed, dayNumber(t), uint64(h), 1) < 1.0/3
}

// Occupancy is how many people are in the room at t. In a meeting hour the room is
// 60–100 % full for the whole hour; otherwise the schedule's share of the capacity,
// varied by ±30 % per 5-minute slot. Always within 0…Capacity.
func Occupancy(r Room, t time.Time) int {
	frac := ScheduleFraction(t)
	if frac == 0 {
		return 0
	}
	day := dayNumber(t)
	if MeetingHour(r, t) {
		return clampInt(int(math.Round(float64(r.Capacity)*(0.6+0.4*unit(r.Seed, day, uint64(t.UTC().Hour()), 2)))), 0, r.Capacity)
	}
	slot := uint64(hours(t) * 12) // 5-minute slots
	n := float64(r.Capacity) * frac * (0.7 + 0.6*unit(r.Seed, day, slot, 3))
	return clampInt(int(math.Round(n)), 0, r.Capacity)
}

// MassBalance advances a well-mixed concentration c0 by dt: generation g (concentration
// units per second) added, and air exchanged with outside air at concentration outdoor
// at rate lambda (per second). It is the exact solution of dc/dt = g − λ(c − outdoor)
// for constant g and λ.
func MassBalance(c0, g, lambda, outdoor float64, dt time.Duration) float64 {
	if lambda <= 0 {
		return c0 + g*dt.Seconds()
	}
	steady := outdoor + g/lambda
	return steady + (c0-steady)*math.Exp(-lambda*dt.Seconds())
}

// CO2Generation is the rate at which people raise the CO2 of a room of volume m³, in ppm/s.
func CO2Generation(people int, volume float64) float64 {
	return float64(people) * CO2PerPerson / 1000 / volume * 1e6
}

// CO2Steady is the CO2 a room settles at with people inside and ach air changes per
// hour: outdoor + generation / ventilation.
func CO2Steady(people int, volume, ach float64) float64 {
	return OutdoorCO2 + CO2Generation(people, volume)/(ach/3600)
}

// CO2Step advances the room's CO2 (ppm) from c0 by dt with people inside and ach air
// changes per hour.
func CO2Step(c0 float64, people int, volume, ach float64, dt time.Duration) float64 {
	return MassBalance(c0, CO2Generation(people, volume), ach/3600, OutdoorCO2, dt)
}

// OutdoorTemperature is a daily cycle around a seasonal mean: about 2 °C in January
// and 20 °C in July, ±5 °C between 05:00 (coldest) and 15:00 (warmest).
func OutdoorTemperature(t time.Time) float64 {
	doy := float64(t.UTC().YearDay())
	mean := 11 - 9*math.Cos(2*math.Pi*(doy-20)/365)
	return mean + 5*math.Cos(2*math.Pi*(hours(t)-15)/24)
}

// TemperatureStep advances the room temperature t0 (°C) by dt: the HVAC pulls it to
// setpoint, the envelope to outdoor, and each person adds HeatPerPerson. It is the
// exact solution of the linear first-order model for constant inputs.
func TemperatureStep(r Room, t0, setpoint, outdoor float64, people int, dt time.Duration) float64 {
	kh := 1 / r.HVACTimeConstant.Seconds()
	ke := 1 / r.EnvelopeTimeConstant.Seconds()
	q := float64(people) * HeatPerPerson / r.HeatCapacity
	eq := (kh*setpoint + ke*outdoor + q) / (kh + ke)
	return eq + (t0-eq)*math.Exp(-(kh+ke)*dt.Seconds())
}

// SaturationVapourDensity is the water vapour air holds when saturated at tempC, in
// g/m³ (Magnus formula over water).
func SaturationVapourDensity(tempC float64) float64 {
	es := 611.2 * math.Exp(17.62*tempC/(243.12+tempC)) // Pa
	return es / (461.5 * (tempC + 273.15)) * 1000
}

// RelativeHumidity is the relative humidity (0…100 %) of air at tempC holding abs g/m³.
func RelativeHumidity(abs, tempC float64) float64 {
	return math.Max(0, math.Min(100, 100*abs/SaturationVapourDensity(tempC)))
}

// OutdoorAbsoluteHumidity is the water content of outdoor air at t, in g/m³.
func OutdoorAbsoluteHumidity(t time.Time) float64 {
	return OutdoorRelativeHumidity / 100 * SaturationVapourDensity(OutdoorTemperature(t))
}

// HumidityStep advances the room's absolute humidity (g/m³) by dt with people inside,
// exchanged with outdoor air at ach air changes per hour.
func HumidityStep(abs0 float64, people int, volume, ach, outdoorAbs float64, dt time.Duration) float64 {
	g := float64(people) * MoisturePerPerson / 3600 / volume
	return MassBalance(abs0, g, ach/3600, outdoorAbs, dt)
}

// SolarElevation is the sun's height above the horizon at t and latitude, in degrees
// (negative at night).
func SolarElevation(t time.Time, latitude float64) float64 {
	doy := float64(t.UTC().YearDay())
	decl := -23.44 * math.Cos(2*math.Pi*(doy+10)/365) * math.Pi / 180
	hourAngle := 15 * (hours(t) - 12) * math.Pi / 180
	lat := latitude * math.Pi / 180
	s := math.Sin(lat)*math.Sin(decl) + math.Cos(lat)*math.Cos(decl)*math.Cos(hourAngle)
	return math.Asin(s) * 180 / math.Pi
}

// OutdoorIlluminance is the clear-sky horizontal illuminance at t, in lux: 110 000 lx
// times the sine of the sun's elevation, 0 at night.
func OutdoorIlluminance(t time.Time, latitude float64) float64 {
	e := SolarElevation(t, latitude)
	if e <= 0 {
		return 0
	}
	return 110000 * math.Sin(e*math.Pi/180)
}

// Cloudiness is the share of clear-sky daylight that gets through the clouds on t's
// day, between 0.3 and 1.
func Cloudiness(r Room, t time.Time) float64 {
	return 0.3 + 0.7*unit(r.Seed, dayNumber(t), 0, 4)
}

// Light is the illuminance at the room's sensor at t, in lux: daylight through the
// windows plus LampIlluminance when someone is in.
func Light(r Room, t time.Time, people int) float64 {
	l := r.DaylightFactor * OutdoorIlluminance(t, r.Latitude) * Cloudiness(r, t)
	if people > 0 {
		l += LampIlluminance
	}
	return l
}

// Motion is an analog PIR level (0…100) for one sampling period: 0 in an empty room;
// otherwise someone moves with probability 1 − 0.6^people, decided by u1 ∈ [0,1), and
// the level is 10…100 by u2 ∈ [0,1).
func Motion(people int, u1, u2 float64) float64 {
	if people <= 0 || u1 >= 1-math.Pow(0.6, float64(people)) {
		return 0
	}
	return 10 + 90*u2
}

// Noise is the sound level in dB(A): 30–33 dB of ventilation hum in an empty room,
// 40 dB plus 10·log10(people) plus up to 6 dB of chatter with people in; u ∈ [0,1).
func Noise(people int, u float64) float64 {
	if people <= 0 {
		return 30 + 3*u
	}
	return 40 + 10*math.Log10(float64(people)) + 6*u
}

// State is a room's climate at one instant.
type State struct {
	Time        time.Time
	People      int
	CO2         float64 // ppm
	Temperature float64 // °C
	AbsHumidity float64 // g/m³
}

// RelativeHumidity is the state's relative humidity in %.
func (s State) RelativeHumidity() float64 { return RelativeHumidity(s.AbsHumidity, s.Temperature) }

// Initial is a plausible state at t for a room that has been empty for a while: outdoor
// CO2, air at the set-point, outdoor water content.
func Initial(t time.Time) State {
	return State{Time: t, CO2: OutdoorCO2, Temperature: SetPoint(t), AbsHumidity: OutdoorAbsoluteHumidity(t)}
}

// Step advances s to t: the people present at t, and CO2, temperature and humidity
// integrated over the interval with the ventilation and set-point in force at t.
func Step(r Room, s State, t time.Time) State {
	dt := t.Sub(s.Time)
	if dt < 0 {
		dt = 0
	}
	n := Occupancy(r, t)
	ach := Ventilation(r, t)
	return State{
		Time:        t,
		People:      n,
		CO2:         CO2Step(s.CO2, n, r.Volume, ach, dt),
		Temperature: TemperatureStep(r, s.Temperature, SetPoint(t), OutdoorTemperature(t), n, dt),
		AbsHumidity: HumidityStep(s.AbsHumidity, n, r.Volume, ach, OutdoorAbsoluteHumidity(t), dt),
	}
}

// WarmUp runs the room from an empty-room state at t−d to t in steps of at most a
// minute, so a simulation that starts at t starts from a lived-in state.
func WarmUp(r Room, t time.Time, d time.Duration) State {
	s := Initial(t.Add(-d))
	for s.Time.Before(t) {
		next := s.Time.Add(time.Minute)
		if next.After(t) {
			next = t
		}
		s = Step(r, s, next)
	}
	return s
}

func dayNumber(t time.Time) uint64 {
	return uint64(t.UTC().Unix() / 86400)
}

// unit is a deterministic pseudo-random number in [0,1) for its inputs (splitmix64).
func unit(seed, a, b, c uint64) float64 {
	x := seed ^ a*0x9E3779B97F4A7C15 ^ b*0xBF58476D1CE4E5B9 ^ c*0x94D049BB133111EB
	x ^= x >> 30
	x *= 0xBF58476D1CE4E5B9
	x ^= x >> 27
	x *= 0x94D049BB133111EB
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

func clampInt(v, lo, hi int) int {
	return max(lo, min(hi, v))
}
