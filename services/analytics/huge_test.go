package analytics_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx/httpxtest"
	"github.com/atrium-iot/atrium/internal/reading"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/internal/testwait"
	"github.com/atrium-iot/atrium/services/analytics"
)

// huge is a finite value whose double overflows.
const huge = 1.7e308

// TestHugeValues: readings near the largest double overflow the sums of every
// aggregate. The summary, the trends and a report still answer 200, means stay
// within their min and max, and a figure too large to represent is null.
func TestHugeValues(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 10, 30, 0, time.UTC)
	at := func(hms string) time.Time {
		c, err := time.Parse(time.DateTime, "2026-03-01 "+hms)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rd := func(sensor, room, typ string, v float64, hms string) reading.Reading {
		return reading.Reading{SensorID: sensor, RoomID: room, Type: typ, Value: v, Timestamp: at(hms)}
	}
	batches := [][]reading.Reading{
		{rd("a1", "r1", "energy", huge, "12:09:10"), rd("a2", "r1", "energy", huge, "12:09:20"),
			rd("o1", "r1", "occupancy", huge, "12:09:00"), rd("o2", "r1", "occupancy", huge, "12:09:30"),
			rd("b1", "r2", "co2", 700, "12:10:00"), rd("c1", "r3", "energy", huge, "11:50:00")},
		// The other sign in the same minute, in another batch: the sums meet.
		{rd("a3", "r1", "energy", -huge, "12:09:30"), rd("a4", "r1", "energy", -huge, "12:09:40"),
			rd("a5", "r1", "energy", -huge, "12:09:50"), rd("a6", "r1", "energy", -huge, "12:10:00"),
			rd("c1", "r3", "energy", -huge, "12:05:00")},
	}
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			b := servicetest.Bus(t)
			r := startRig(t, e.open(t, filepath.Join(t.TempDir(), "huge")), b, analytics.Options{SensorURL: "http://127.0.0.1:1", Now: func() time.Time { return now }})
			for i, rs := range batches {
				publishReadings(t, b, fmt.Sprintf("huge-%d", i), rs)
			}
			testwait.For(t, "readings stored", func() bool {
				n, err := r.store.CountReadings(t.Context(), at("11:00:00"), at("13:00:00"))
				return err == nil && n == 11
			})

			sum := httpxtest.GetOK[analytics.Summary](t, r.url+"/analytics/summary")
			if m := sum.Means["energy"]; m.Count != 8 || m.Mean < -huge || m.Mean > huge {
				t.Errorf("energy mean %+v, want 8 readings, a mean within ±%g", m, huge)
			}
			if m := sum.Means["occupancy"]; m.Count != 2 || m.Mean != huge {
				t.Errorf("occupancy mean %+v, want 2 readings of %g", m, huge)
			}
			if m := sum.Means["co2"]; m.Count != 1 || m.Mean != 700 {
				t.Errorf("co2 mean %+v, want 700", m)
			}

			q := "&bucket=1m&from=" + at("12:00:00").Format(time.RFC3339) + "&to=" + at("12:20:00").Format(time.RFC3339)
			tr := httpxtest.GetOK[analytics.TrendAnswer](t, r.url+"/analytics/trends?type=energy&room_id=r1"+q)
			if len(tr.Buckets) != 2 || tr.Count != 6 || tr.Mean == nil || *tr.Mean < -huge || *tr.Mean > huge {
				t.Fatalf("trend of r1: %d buckets, %d readings, mean %v; want 2, 6, within ±%g", len(tr.Buckets), tr.Count, tr.Mean, huge)
			}
			if b := tr.Buckets[0]; b.Count != 5 || b.Min != -huge || b.Max != huge || b.Mean < -huge || b.Mean > huge {
				t.Errorf("bucket 12:09 = %+v, want 5 readings within ±%g", b, huge)
			}
			if b := tr.Buckets[1]; b.Count != 1 || b.Mean != -huge {
				t.Errorf("bucket 12:10 = %+v, want one reading of %g", b, -huge)
			}
			// From a mean within ±huge to -huge in a minute: more than the largest double per hour.
			if tr.SlopePerHour != nil {
				t.Errorf("slope_per_hour = %v, want null", *tr.SlopePerHour)
			}
			// r3: huge in the previous period, -huge now: the change is -2·huge
			// (null) and -200 %.
			tr = httpxtest.GetOK[analytics.TrendAnswer](t, r.url+"/analytics/trends?type=energy&room_id=r3"+q)
			c := tr.Change
			if c.PreviousMean == nil || *c.PreviousMean != huge || c.Absolute != nil || c.Percent == nil || *c.Percent != -200 {
				t.Errorf("change of r3 = previous %v, absolute %v, percent %v; want %g, null, -200", c.PreviousMean, c.Absolute, c.Percent, huge)
			}

			body := fmt.Sprintf(`{"kind":"custom","from":%q,"to":%q,"rooms":["r1"],"capacities":{"r1":0.5}}`,
				at("12:00:00").Format(time.RFC3339), at("12:20:00").Format(time.RFC3339))
			id := httpxtest.Expect[map[string]string](t, httpxtest.DoJSON(t, http.MethodPost, r.url+"/analytics/reports", []byte(body)), http.StatusAccepted)["id"]
			rep, a := waitReport(t, r.url, id)
			if rep.Status != analytics.StatusReady || len(rep.Content.Rooms) != 1 {
				t.Fatalf("report %s: %s", rep.Status, a.Raw)
			}
			rr := rep.Content.Rooms[0]
			if en := rr.Types["energy"]; en.Count != 6 || en.Min != -huge || en.Max != huge || en.Mean < -huge || en.Mean > huge {
				t.Errorf("report energy = %+v, want 6 readings within ±%g", en, huge)
			}
			// huge people in a room for 0.5: a utilisation no double holds.
			if rr.MeanOccupancy == nil || *rr.MeanOccupancy != huge || rr.OccupancyUtilisation != nil {
				t.Errorf("report occupancy: mean %v utilisation %v, want %g and null", rr.MeanOccupancy, rr.OccupancyUtilisation, huge)
			}
			for _, f := range []string{"csv", "html"} {
				if a := httpxtest.Get(t, r.url+"/analytics/reports/"+id+"?format="+f); a.Code != http.StatusOK {
					t.Errorf("report as %s: %d %s", f, a.Code, a.Raw)
				}
			}
		})
	}
}
