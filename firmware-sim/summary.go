package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/atrium-iot/atrium/firmware-sim/replay"
)

// Summary is what a run did. Every count is exact; see the package documentation
// for what each means and how the counts relate.
type Summary struct {
	Mode    string `json:"mode"` // "simulate" or "replay"
	Seed    uint64 `json:"seed"`
	Start   string `json:"start,omitempty"` // simulated clock at round 0 (simulate mode)
	Broker  string `json:"broker"`
	Devices int    `json:"devices"`
	Rounds  int    `json:"rounds"`
	// Frames counts the sets of readings devices produced (one per device and
	// round, less those silenced by dropouts).
	Frames   int      `json:"frames"`
	Messages Messages `json:"messages"`
	// Readings counts readings in published, well-formed messages, copies included.
	Readings   int            `json:"readings"`
	ByForm     map[Form]int   `json:"by_form"` // published data messages per form, malformed included
	ByType     map[string]int `json:"by_type"` // Readings per type
	Faults     FaultCounts    `json:"faults"`
	Expect     Expect         `json:"expect"`
	Status     StatusCounts   `json:"status"`
	Reconnects int            `json:"reconnects"` // connections made after a device's first one
	Replay     *ReplayCounts  `json:"replay,omitempty"`
	Elapsed    string         `json:"elapsed"`
}

// Messages counts data messages (status messages are counted apart).
// Produced = Published + Failed, and Failed = Overflowed + Refused + Unsent.
type Messages struct {
	Produced   int `json:"produced"`   // handed to a device's outbox, duplicate copies and malformed included
	Published  int `json:"published"`  // acknowledged by the broker (QoS 1, 2) or written (QoS 0)
	Failed     int `json:"failed"`     // never published
	Overflowed int `json:"overflowed"` // dropped, oldest first, from a full outbox while disconnected
	Refused    int `json:"refused"`    // refused by the broker (reason code ≥ 0x80, e.g. not authorised)
	Unsent     int `json:"unsent"`     // still queued or in flight when the drain time ran out
	// Resent counts publishes repeated after the connection was lost with the
	// message in flight: the broker may have it twice, so a subscriber may see up
	// to Published + Resent messages.
	Resent int `json:"resent"`
}

// FaultCounts counts the faults injected.
type FaultCounts struct {
	Dropouts        int `json:"dropouts"`         // silent spells started
	DropoutFrames   int `json:"dropout_frames"`   // frames not produced during them
	Stuck           int `json:"stuck"`            // stuck spells started
	StuckFrames     int `json:"stuck_frames"`     // frames that repeated the frozen values (still valid)
	Spikes          int `json:"spikes"`           // readings given a physically implausible value
	Skews           int `json:"skews"`            // frames whose timestamp was shifted
	SkewFuture      int `json:"skew_future"`      // of Skews, those shifted 10–60 min into the future
	Malformed       int `json:"malformed"`        // messages made undecodable
	Duplicates      int `json:"duplicates"`       // extra copies of a message sent
	ReconnectStorms int `json:"reconnect_storms"` // times every device's connection was cut at once
}

// add adds the counts of o to c.
func (c *FaultCounts) add(o FaultCounts) {
	c.Dropouts += o.Dropouts
	c.DropoutFrames += o.DropoutFrames
	c.Stuck += o.Stuck
	c.StuckFrames += o.StuckFrames
	c.Spikes += o.Spikes
	c.Skews += o.Skews
	c.SkewFuture += o.SkewFuture
	c.Malformed += o.Malformed
	c.Duplicates += o.Duplicates
	c.ReconnectStorms += o.ReconnectStorms
}

// Expect is what a correct agent and cloud make of the published messages, computed
// from each message as it is acknowledged, with the validation rules of package
// reading and the wall clock at that moment.
type Expect struct {
	Stored     int `json:"stored"`     // readings valid and new: the cloud stores them
	Rejected   int `json:"rejected"`   // readings the agent dead-letters as invalid (spikes, future timestamps)
	Malformed  int `json:"malformed"`  // messages the agent dead-letters as undecodable
	Duplicates int `json:"duplicates"` // valid readings whose (sensor, type, timestamp) was already published
}

// StatusCounts counts status messages published on atrium/<room>/<sensor>/status.
// Offline statuses sent by the broker as a last will are not counted.
type StatusCounts struct {
	Online  int `json:"online"`
	Offline int `json:"offline"`
}

// ReplayCounts describes the replayed file.
type ReplayCounts struct {
	File   string        `json:"file"`
	Format replay.Format `json:"format"`
	replay.Stats
}

func (s *Summary) clone() Summary {
	c := *s
	c.ByForm = maps.Clone(s.ByForm)
	c.ByType = maps.Clone(s.ByType)
	if s.Replay != nil {
		r := *s.Replay
		c.Replay = &r
	}
	return c
}

// WriteJSON writes the summary as one indented JSON object.
func (s Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// WriteText writes the summary as aligned text.
func (s Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	p("mode", s.Mode)
	p("seed", s.Seed)
	if s.Start != "" {
		p("start", s.Start)
	}
	p("broker", s.Broker)
	p("elapsed", s.Elapsed)
	p("devices", s.Devices)
	p("rounds", s.Rounds)
	p("frames", s.Frames)
	m := s.Messages
	p("messages", fmt.Sprintf("produced %d, published %d, failed %d (overflowed %d, refused %d, unsent %d), resent %d",
		m.Produced, m.Published, m.Failed, m.Overflowed, m.Refused, m.Unsent, m.Resent))
	for _, f := range slices.Sorted(maps.Keys(s.ByForm)) {
		p("  form "+string(f), s.ByForm[f])
	}
	p("readings", s.Readings)
	for _, t := range slices.Sorted(maps.Keys(s.ByType)) {
		p("  type "+t, s.ByType[t])
	}
	f := s.Faults
	p("faults", strings.Join([]string{
		fmt.Sprintf("dropouts %d (%d frames)", f.Dropouts, f.DropoutFrames),
		fmt.Sprintf("stuck %d (%d frames)", f.Stuck, f.StuckFrames),
		fmt.Sprintf("spikes %d", f.Spikes),
		fmt.Sprintf("skews %d (%d future)", f.Skews, f.SkewFuture),
		fmt.Sprintf("malformed %d", f.Malformed),
		fmt.Sprintf("duplicates %d", f.Duplicates),
		fmt.Sprintf("reconnect storms %d", f.ReconnectStorms),
	}, ", "))
	e := s.Expect
	p("expect", fmt.Sprintf("stored %d, rejected %d, malformed %d, duplicates %d", e.Stored, e.Rejected, e.Malformed, e.Duplicates))
	p("status", fmt.Sprintf("online %d, offline %d, reconnects %d", s.Status.Online, s.Status.Offline, s.Reconnects))
	if r := s.Replay; r != nil {
		p("replay", fmt.Sprintf("%s (%s): rows %d, skipped rows %d, blank cells %d, bad cells %d", r.File, r.Format, r.Rows, r.SkippedRows, r.BlankCells, r.BadCells))
	}
	return tw.Flush()
}
