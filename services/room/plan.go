package room

import (
	"slices"
	"time"

	"github.com/atrium-iot/atrium/internal/reading"
)

// Placement is the room a batch places a sensor in: the room of the sensor's
// newest reading that names one (the later of two equally new readings).
// Whether the sensor moves there is the store's decision: not when it is
// assigned elsewhere, nor when it has reported from elsewhere since Seen.
type Placement struct {
	SensorID, RoomID string
	Seen             time.Time
}

// Placements returns the rooms the readings place their sensors in, in the
// order the sensors first appear, and every sensor of the readings in that
// order (also those no reading places).
func Placements(readings []reading.Reading) (placed []Placement, sensors []string) {
	at := map[string]int{} // sensor → index in placed, -1 when unplaced
	for _, r := range readings {
		i, ok := at[r.SensorID]
		if !ok {
			sensors = append(sensors, r.SensorID)
			i = -1
		}
		if r.RoomID == "" {
			at[r.SensorID] = i
			continue
		}
		switch {
		case i < 0:
			at[r.SensorID] = len(placed)
			placed = append(placed, Placement{r.SensorID, r.RoomID, r.Timestamp})
		case !r.Timestamp.Before(placed[i].Seen):
			placed[i].RoomID, placed[i].Seen = r.RoomID, r.Timestamp
		}
	}
	return placed, sensors
}

// Where is where a sensor is once the batch's placements are stored: its room
// ("" when none is known) and whether it is assigned there.
type Where struct {
	Room     string
	Assigned bool
}

// RoomOf returns the room a reading goes to: its sensor's assigned room, else
// the reading's own room, else the room its sensor is in ("": none).
func RoomOf(r reading.Reading, w Where) string {
	if w.Assigned || r.RoomID == "" {
		return w.Room
	}
	return r.RoomID
}

// Agg is the count, sum, minimum and maximum of some values. The sum saturates
// (reading.AddSum) so that a store never sees an infinite or NaN sum.
type Agg struct {
	N             int64
	Sum, Min, Max float64
}

// Add counts v.
func (a *Agg) Add(v float64) {
	if a.N == 0 || v < a.Min {
		a.Min = v
	}
	if a.N == 0 || v > a.Max {
		a.Max = v
	}
	a.N++
	a.Sum = reading.AddSum(a.Sum, v)
}

// Merge counts the values b counts.
func (a *Agg) Merge(b Agg) {
	if b.N == 0 {
		return
	}
	if a.N == 0 {
		*a = b
		return
	}
	a.N += b.N
	a.Sum = reading.AddSum(a.Sum, b.Sum)
	a.Min, a.Max = min(a.Min, b.Min), max(a.Max, b.Max)
}

// BucketStart returns the start, in Unix milliseconds, of the bucket of the
// given period holding the time ms (buckets are aligned on the epoch, times
// before 1970 too).
func BucketStart(ms int64, period time.Duration) int64 {
	p := period.Milliseconds()
	q := ms / p
	if ms%p != 0 && ms < 0 {
		q--
	}
	return q * p
}

// Latest is the newest reading of one (room, type, sensor) in a batch.
type Latest struct {
	RoomID string
	reading.Reading
}

// Rollup is what a batch adds to one bucket of one room and type.
type Rollup struct {
	RoomID, Type string
	// Start is the bucket's start in Unix milliseconds.
	Start int64
	Agg
}

// Plan is what applying a batch writes, computed from its readings and where
// their sensors are: a store only persists it.
type Plan struct {
	// Applied is the answer to the batch (Duplicate false): the readings
	// applied and skipped, and the rooms they went to, sorted.
	Applied Applied
	// Latest holds the newest reading of each (room, type, sensor), in the order
	// they first appear in the batch.
	Latest []Latest
	// Rollups holds, per period given to NewPlan, the batch's buckets in the
	// order they first appear.
	Rollups [][]Rollup
}

// NewPlan plans a batch: each reading goes to RoomOf its sensor's Where (a
// sensor missing from where is in no room), or is counted unroomed; the rooms
// it names are listed; the latest values and the rollups of each of the
// periods (finest first) are aggregated.
func NewPlan(readings []reading.Reading, where map[string]Where, periods []time.Duration) Plan {
	type seriesKey struct{ room, typ, sensor string }
	type bucketKey struct {
		room, typ string
		start     int64
	}
	p := Plan{Applied: Applied{Rooms: []string{}}, Rollups: make([][]Rollup, len(periods))}
	rooms := map[string]struct{}{}
	latest := map[seriesKey]int{}
	buckets := make([]map[bucketKey]int, len(periods))
	for i := range buckets {
		buckets[i] = map[bucketKey]int{}
	}
	for _, r := range readings {
		roomID := RoomOf(r, where[r.SensorID])
		if roomID == "" {
			p.Applied.Unroomed++
			continue
		}
		p.Applied.Readings++
		if _, ok := rooms[roomID]; !ok {
			rooms[roomID] = struct{}{}
			p.Applied.Rooms = append(p.Applied.Rooms, roomID)
		}
		k := seriesKey{roomID, r.Type, r.SensorID}
		if i, ok := latest[k]; !ok {
			latest[k] = len(p.Latest)
			p.Latest = append(p.Latest, Latest{roomID, r})
		} else if r.Timestamp.After(p.Latest[i].Timestamp) {
			p.Latest[i].Reading = r
		}
		ms := r.Timestamp.UnixMilli()
		for t, period := range periods {
			bk := bucketKey{roomID, r.Type, BucketStart(ms, period)}
			i, ok := buckets[t][bk]
			if !ok {
				i = len(p.Rollups[t])
				buckets[t][bk] = i
				p.Rollups[t] = append(p.Rollups[t], Rollup{RoomID: roomID, Type: r.Type, Start: bk.start})
			}
			p.Rollups[t][i].Add(r.Value)
		}
	}
	slices.Sort(p.Applied.Rooms)
	return p
}
