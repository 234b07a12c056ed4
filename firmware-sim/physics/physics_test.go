package physics

import (
	"math"
	"testing"
	"time"
)

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s = %.6g, want %.6g ± %g", name, got, want, tol)
	}
}

// monday is Monday 2 March 2026, 00:00 UTC.
var monday = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func at(day int, hh, mm int) time.Time {
	return monday.AddDate(0, 0, day).Add(time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute)
}

func TestCO2(t *testing.T) {
	// 10 people in 100 m³: 10 × 0.005 L/s = 0.05 L/s = 5e-5 m³/s = 0.5 ppm/s.
	// At 2 ACH, λ = 1/1800 s, so the steady state is 420 + 0.5 × 1800 = 1320 ppm.
	tests := []struct {
		name   string
		got    float64
		want   float64
		within float64
	}{
		{"generation", CO2Generation(10, 100), 0.5, 1e-12},
		{"steady state", CO2Steady(10, 100, 2), 1320, 1e-9},
		{"empty room steady state", CO2Steady(0, 100, 2), OutdoorCO2, 1e-9},
		{"long run reaches steady state", CO2Step(420, 10, 100, 2, 24*time.Hour), 1320, 1e-6},
		{"one time constant: 1320 − 900/e", CO2Step(420, 10, 100, 2, 30*time.Minute), 1320 - 900/math.E, 1e-9},
		{"decay of an empty room: 420 + 580/e after 1 h at 1 ACH", CO2Step(1000, 0, 100, 1, time.Hour), 420 + 580/math.E, 1e-9},
		{"no time passes", CO2Step(800, 10, 100, 2, 0), 800, 1e-12},
		{"sealed room grows linearly", MassBalance(420, 0.5, 0, 420, 100*time.Second), 470, 1e-12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { near(t, tt.name, tt.got, tt.want, tt.within) })
	}
}

func TestCO2StepsCompose(t *testing.T) {
	// Integrating in 60 steps of a minute equals one step of an hour (exact solution).
	c := 500.0
	for range 60 {
		c = CO2Step(c, 6, 150, 3, time.Minute)
	}
	near(t, "stepwise", c, CO2Step(500, 6, 150, 3, time.Hour), 1e-9)
}

func TestTemperature(t *testing.T) {
	r := Office(10, 1) // 280 m³, C = 280·1.2·1005·8 = 2 701 440 J/K
	// 10 people: q = 1000 W / C = 3.7017e-4 K/s; kh + ke = 1/1800 + 1/28800 = 5.9028e-4 /s,
	// so the air settles 0.6271 K above a set-point equal to the outdoor temperature.
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"at set-point, nobody, outdoor equal: stays", TemperatureStep(r, 21, 21, 21, 0, time.Hour), 21},
		{"occupant heat offset", TemperatureStep(r, 21, 21, 21, 10, 48*time.Hour), 21.6271},
		{"setback towards a cold outside: between 5 and 17", TemperatureStep(r, 21, 17, 5, 0, 48*time.Hour), (17.0/1800 + 5.0/28800) / (1.0/1800 + 1.0/28800)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { near(t, tt.name, tt.got, tt.want, 1e-3) })
	}
	t.Run("set-point schedule", func(t *testing.T) {
		for _, c := range []struct {
			t    time.Time
			want float64
		}{{at(0, 10, 0), 21}, {at(0, 6, 59), 17}, {at(0, 19, 0), 17}, {at(5, 10, 0), 17}, {at(4, 18, 30), 21}} {
			if got := SetPoint(c.t); got != c.want {
				t.Errorf("SetPoint(%s) = %g, want %g", c.t, got, c.want)
			}
		}
	})
	t.Run("outdoor daily cycle", func(t *testing.T) {
		// The cycle peaks at 15:00 and bottoms at 03:00, 10 K apart.
		near(t, "amplitude", OutdoorTemperature(at(0, 15, 0))-OutdoorTemperature(at(0, 3, 0)), 10, 0.01)
		if OutdoorTemperature(time.Date(2026, 7, 20, 12, 0, 0, 0, time.UTC)) < OutdoorTemperature(time.Date(2026, 1, 20, 12, 0, 0, 0, time.UTC))+10 {
			t.Error("July should be at least 10 K warmer than January")
		}
	})
}

func TestHumidity(t *testing.T) {
	// Saturated air holds 17.3 g/m³ at 20 °C and 30.4 g/m³ at 30 °C (steam tables).
	near(t, "saturation 20 °C", SaturationVapourDensity(20), 17.3, 0.1)
	near(t, "saturation 30 °C", SaturationVapourDensity(30), 30.4, 0.2)
	near(t, "half saturated", RelativeHumidity(SaturationVapourDensity(22)/2, 22), 50, 1e-9)
	near(t, "clamped at 100", RelativeHumidity(50, 20), 100, 0)
	// 4 people in 100 m³ give 4·50/3600/100 g/m³/s; at 1 ACH the excess is that × 3600 = 2 g/m³.
	near(t, "moisture steady state", HumidityStep(6, 4, 100, 1, 6, 72*time.Hour), 8, 1e-6)
}

func TestDaylight(t *testing.T) {
	r := Office(8, 7)
	midsummerNoon := time.Date(2026, 6, 21, 12, 0, 0, 0, time.UTC)
	// At 50°N on 21 June the noon sun stands 90 − 50 + 23.44 = 63.44° high.
	near(t, "noon elevation", SolarElevation(midsummerNoon, 50), 63.44, 0.15)
	near(t, "winter noon elevation", SolarElevation(time.Date(2026, 12, 21, 12, 0, 0, 0, time.UTC), 50), 90-50-23.44, 0.15)
	tests := []struct {
		name   string
		t      time.Time
		people int
		want   float64
	}{
		{"night, empty: dark", at(0, 0, 0), 0, 0},
		{"night, occupied: lamps only", at(0, 0, 0), 3, LampIlluminance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { near(t, tt.name, Light(r, tt.t, tt.people), tt.want, 1e-9) })
	}
	t.Run("noon daylight within the clear-sky bound", func(t *testing.T) {
		got := Light(r, midsummerNoon, 0)
		hi := r.DaylightFactor * 110000 * math.Sin(63.44*math.Pi/180)
		if got < 0.3*hi-1 || got > hi+1 {
			t.Errorf("Light = %g, want within [%g, %g]", got, 0.3*hi, hi)
		}
	})
}

func TestOccupancy(t *testing.T) {
	rooms := []Room{Office(4, 1), Office(12, 2), Office(20, 3)}
	t.Run("never outside the schedule, never above capacity", func(t *testing.T) {
		for _, r := range rooms {
			for m := 0; m < 7*24*60; m += 5 {
				ts := monday.Add(time.Duration(m) * time.Minute)
				n := Occupancy(r, ts)
				if n < 0 || n > r.Capacity {
					t.Fatalf("Occupancy(%s) = %d, capacity %d", ts, n, r.Capacity)
				}
				if ScheduleFraction(ts) == 0 && n != 0 {
					t.Fatalf("Occupancy(%s) = %d outside working hours", ts, n)
				}
			}
		}
	})
	t.Run("weekend and night are empty, deterministic", func(t *testing.T) {
		for _, ts := range []time.Time{at(5, 11, 0), at(6, 15, 0), at(0, 3, 0), at(2, 19, 30), at(3, 7, 59)} {
			if n := Occupancy(rooms[1], ts); n != 0 {
				t.Errorf("Occupancy(%s) = %d, want 0", ts, n)
			}
		}
		if first, again := Occupancy(rooms[2], at(1, 10, 7)), Occupancy(rooms[2], at(1, 10, 7)); first != again {
			t.Error("not deterministic")
		}
	})
	t.Run("lunch dip below the morning", func(t *testing.T) {
		// Outside meetings, mornings average 50 % of the places and lunch 20 %.
		var morning, lunch, mSlots, lSlots float64
		for d := range 5 {
			for m := 0; m < 60; m += 5 {
				for _, r := range rooms {
					if !MeetingHour(r, at(d, 10, m)) {
						morning += float64(Occupancy(r, at(d, 10, m))) / float64(r.Capacity)
						mSlots++
					}
					lunch += float64(Occupancy(r, at(d, 12, m))) / float64(r.Capacity)
					lSlots++
				}
			}
		}
		near(t, "morning share", morning/mSlots, 0.5, 0.1)
		near(t, "lunch share", lunch/lSlots, 0.2, 0.06)
	})
	t.Run("meetings fill the room", func(t *testing.T) {
		found := false
		for d := range 5 {
			for h := 9; h < 17; h++ {
				if r := rooms[2]; MeetingHour(r, at(d, h, 0)) {
					found = true
					if n := Occupancy(r, at(d, h, 30)); n < 12 {
						t.Errorf("meeting at day %d %d:30 has %d people, want ≥ 60%% of 20", d, h, n)
					}
				}
			}
		}
		if !found {
			t.Error("no meeting in a whole week")
		}
	})
}

func TestMotionAndNoise(t *testing.T) {
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"empty room: no motion", Motion(0, 0, 0.9), 0},
		{"one person moving (u1 0.3 < 0.4)", Motion(1, 0.3, 0.5), 55},
		{"one person still (u1 0.5 ≥ 0.4)", Motion(1, 0.5, 0.5), 0},
		{"empty room hum", Noise(0, 0), 30},
		{"ten people talking", Noise(10, 0), 50},
		{"ten people, loudest", Noise(10, 1), 56},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { near(t, tt.name, tt.got, tt.want, 1e-9) })
	}
}

func TestStepAndWarmUp(t *testing.T) {
	r := Office(12, 5)
	s := WarmUp(r, at(1, 11, 0), 4*time.Hour)
	if s.Temperature < 19 || s.Temperature > 24 || s.CO2 < OutdoorCO2 || s.CO2 > 3000 {
		t.Errorf("warm state implausible: %+v", s)
	}
	if rh := s.RelativeHumidity(); rh <= 0 || rh >= 100 {
		t.Errorf("RH %g", rh)
	}
	night := WarmUp(r, at(1, 23, 0), 6*time.Hour)
	if night.People != 0 || night.CO2 >= s.CO2 {
		t.Errorf("night CO2 %g should be below the morning's %g with nobody in", night.CO2, s.CO2)
	}
}

func BenchmarkStep(b *testing.B) {
	r := Office(12, 5)
	s := Initial(monday)
	for i := 0; b.Loop(); i++ {
		s = Step(r, s, s.Time.Add(5*time.Second))
	}
}
