package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/firmware-sim/physics"
	"github.com/atrium-iot/atrium/firmware-sim/replay"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Simulator runs a fleet of simulated devices, or replays a file, over MQTT.
type Simulator struct {
	cfg    Config
	log    *slog.Logger
	broker *url.URL

	devices []*device
	byID    map[string]*device
	rooms   []*simRoom

	physRNG  *rand.Rand // sensor noise
	faultRNG *rand.Rand // every fault decision

	mu  sync.Mutex
	sum Summary

	warnedAhead bool
	rounds      int // in the replay file
	// replayed and toReplay are the replay's progress in rounds, for the final report.
	replayed, toReplay int
}

// New checks cfg and makes a simulator. It connects nothing until Run.
func New(cfg Config, log *slog.Logger) (*Simulator, error) {
	u, err := brokerURL(cfg.Broker)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if cfg.Replay == "" && (cfg.Rooms < 1 || cfg.SensorsPerRoom < 1) {
		return nil, errors.New("sim: -rooms and -sensors-per-room must be at least 1")
	}
	if cfg.Interval <= 0 {
		return nil, errors.New("sim: -interval must be positive")
	}
	if cfg.Count < 0 || cfg.Duration < 0 || cfg.Speed < 0 {
		return nil, errors.New("sim: -count, -duration and -speed must not be negative")
	}
	if cfg.QoS > 2 {
		return nil, fmt.Errorf("sim: qos %d: want 0, 1 or 2", cfg.QoS)
	}
	if cfg.Queue < 1 {
		cfg.Queue = 1
	}
	if cfg.Inflight < 1 {
		cfg.Inflight = DefaultInflight
	}
	if cfg.ReplayForm == "" {
		cfg.ReplayForm = FormSenML
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano()) | 1
	}
	if cfg.Start.IsZero() {
		cfg.Start = cfg.Now().Truncate(time.Second)
	}
	s := &Simulator{
		cfg: cfg, log: log, broker: u, byID: map[string]*device{},
		physRNG:  rand.New(rand.NewPCG(cfg.Seed, 1)),
		faultRNG: rand.New(rand.NewPCG(cfg.Seed, 2)),
	}
	s.sum = Summary{Mode: "simulate", Seed: cfg.Seed, Broker: u.Redacted(), ByForm: map[Form]int{}, ByType: map[string]int{}}
	if cfg.Replay != "" {
		s.sum.Mode = "replay"
		if err := s.scanReplay(); err != nil {
			return nil, err
		}
	} else {
		s.sum.Start = reading.FormatTime(cfg.Start)
		s.buildFleet()
	}
	s.sum.Devices = len(s.devices)
	return s, nil
}

func (s *Simulator) now() time.Time { return s.cfg.Now() }

// update changes the summary under its lock.
func (s *Simulator) update(f func(*Summary)) {
	s.mu.Lock()
	f(&s.sum)
	s.mu.Unlock()
}

// Stats is a snapshot of the counts so far.
func (s *Simulator) Stats() Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.clone()
}

func (s *Simulator) addDevice(d *device) {
	s.devices = append(s.devices, d)
	s.byID[d.id] = d
}

func (s *Simulator) buildFleet() {
	for i := range s.cfg.Rooms {
		id := RoomID(s.cfg.Site, i)
		capacity := Capacities[i%len(Capacities)]
		s.rooms = append(s.rooms, &simRoom{id: id, model: physics.Office(capacity, s.cfg.Seed^uint64(i+1)*0x9E3779B97F4A7C15)})
		for j := range s.cfg.SensorsPerRoom {
			d := newDevice(SensorID(id, j), id, Roles[j%len(Roles)], s.cfg.Queue)
			d.roomIdx = i
			d.offset = round(s.physRNG.NormFloat64()*0.2, 2)
			s.addDevice(d)
		}
	}
}

// openReplay opens the replay file and a reader of its rounds; the caller closes f.
func (s *Simulator) openReplay() (f *os.File, r *replay.Reader, err error) {
	f, err = os.Open(s.cfg.Replay)
	if err != nil {
		return nil, nil, fmt.Errorf("sim: replay: %w", err)
	}
	r, err = replay.NewReader(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("sim: %s: %w", s.cfg.Replay, err)
	}
	return f, r, nil
}

// scanReplay reads the replay file once to learn its devices.
func (s *Simulator) scanReplay() error {
	f, r, err := s.openReplay()
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		round, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("sim: %s: %w", s.cfg.Replay, err)
		}
		s.rounds++
		for _, fr := range round.Frames {
			if _, ok := s.byID[fr.SensorID]; !ok {
				s.addDevice(newDevice(fr.SensorID, fr.RoomID, Role{Name: "replay", Form: s.cfg.ReplayForm}, s.cfg.Queue))
			}
		}
	}
	s.sum.Replay = &ReplayCounts{File: s.cfg.Replay, Format: r.Format()}
	return nil
}

// Run connects every device, publishes until -count, -duration, the end of the
// replay file or ctx, drains what is queued for at most -drain, disconnects and
// returns the summary. A Simulator runs once.
func (s *Simulator) Run(ctx context.Context) (Summary, error) {
	began := time.Now()
	devCtx, stopDevices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDevices()
	for _, d := range s.devices {
		if err := s.connect(devCtx, d, s.broker); err != nil {
			return s.Stats(), fmt.Errorf("sim: connect %s: %w", d.id, err)
		}
	}
	var wg sync.WaitGroup
	for _, d := range s.devices {
		wg.Go(func() { s.serve(devCtx, d) })
	}
	s.log.Info("simulator started", "mode", s.sum.Mode, "broker", s.sum.Broker, "devices", len(s.devices),
		"seed", s.cfg.Seed, "faults", s.cfg.Faults.String())

	prodCtx := ctx
	if s.cfg.Duration > 0 {
		var cancel context.CancelFunc
		prodCtx, cancel = context.WithTimeout(ctx, s.cfg.Duration)
		defer cancel()
	}
	s.awaitConnections(prodCtx, nil)
	var err error
	if s.cfg.Replay != "" {
		err = s.replay(prodCtx)
	} else {
		err = s.simulate(prodCtx)
	}
	if err != nil && prodCtx.Err() != nil {
		err = nil // stopped by signal or -duration: a normal end
	}

	// Drain: no more messages; give the devices -drain to send what they hold.
	for _, d := range s.devices {
		d.ob.close()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.Drain):
		s.log.Warn("drain time over, dropping what is still queued", "drain", s.cfg.Drain)
		stopDevices()
		<-done
	}
	for _, d := range s.devices {
		if n := len(d.ob.takeAll()); n > 0 {
			s.update(func(sum *Summary) { sum.Messages.Failed += n; sum.Messages.Unsent += n })
		}
	}
	if s.cfg.Replay != "" {
		s.cfg.Progress.Finish(s.replayed, s.toReplay, s.readings()) // after the drain: every reading sent
	}
	byeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var bye sync.WaitGroup
	for _, d := range s.devices {
		bye.Go(func() { s.shutdown(byeCtx, d) })
	}
	bye.Wait()
	stopDevices()

	s.update(func(sum *Summary) {
		sum.Elapsed = time.Since(began).Round(time.Millisecond).String()
		for _, d := range s.devices {
			sum.Reconnects += max(0, d.connections()-1)
		}
	})
	sum := s.Stats()
	s.log.Info("simulator stopped", "published", sum.Messages.Published, "failed", sum.Messages.Failed, "rounds", sum.Rounds)
	return sum, err
}

// awaitConnections waits up to -connect-wait until every device has connected more
// often than before[i] (all at least once when before is nil).
func (s *Simulator) awaitConnections(ctx context.Context, before []int) {
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectWait)
	defer cancel()
	for i, d := range s.devices {
		want := 1
		if before != nil {
			want = before[i] + 1
		}
		for d.connections() < want {
			if _, err := d.awaitConnection(wctx); err != nil {
				s.log.Warn("devices not connected, going on", "sensor_id", d.id, "waited", s.cfg.ConnectWait)
				return
			}
			if d.connections() < want { // still the old connection: wait for its loss
				select {
				case <-time.After(10 * time.Millisecond):
				case <-wctx.Done():
				}
			}
		}
	}
}

// pace waits until the simulated instant sim is due, given the run began at
// (simStart, realStart). With speed 0 it never waits.
func (s *Simulator) pace(ctx context.Context, realStart time.Time, simElapsed time.Duration) error {
	if s.cfg.Speed == 0 {
		return ctx.Err()
	}
	due := realStart.Add(time.Duration(float64(simElapsed) / s.cfg.Speed))
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Simulator) simulate(ctx context.Context) error {
	realStart := time.Now()
	for k := 0; s.cfg.Count == 0 || k < s.cfg.Count; k++ {
		if err := s.pace(ctx, realStart, time.Duration(k)*s.cfg.Interval); err != nil {
			return err
		}
		t := s.cfg.Start.Add(time.Duration(k) * s.cfg.Interval)
		if !s.warnedAhead && t.After(s.now().Add(reading.MaxFuture)) {
			s.warnedAhead = true
			s.log.Warn("simulated clock is more than 5 min ahead of the wall clock: receivers will reject these readings; set -start in the past",
				"simulated", t, "speed", s.cfg.Speed)
		}
		for _, r := range s.rooms {
			if k == 0 {
				r.state = physics.WarmUp(r.model, t, 6*time.Hour)
			} else {
				r.state = physics.Step(r.model, r.state, t)
			}
		}
		storm := s.maybeStorm()
		for _, d := range s.devices {
			r := s.rooms[d.roomIdx]
			ms := measure(d, r, t, s.physRNG)
			if err := s.emit(ctx, d, d.room, d.role.Form, t, ms); err != nil {
				return err
			}
		}
		s.update(func(sum *Summary) { sum.Rounds++ })
		if storm != nil && s.cfg.Speed == 0 {
			s.awaitConnections(ctx, storm)
		}
	}
	return nil
}

func (s *Simulator) replay(ctx context.Context) error {
	f, r, err := s.openReplay()
	if err != nil {
		return err
	}
	defer f.Close()
	total := s.rounds
	if s.cfg.Count > 0 {
		total = min(total, s.cfg.Count)
	}
	s.toReplay = total
	defer func() {
		st := r.Stats()
		s.update(func(sum *Summary) { sum.Replay.Stats = st })
	}()
	realStart := time.Now()
	var first time.Time
	for k := 0; s.cfg.Count == 0 || k < s.cfg.Count; k++ {
		round, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sim: %s: %w", s.cfg.Replay, err)
		}
		if k == 0 {
			first = round.Time
		}
		if err := s.pace(ctx, realStart, max(0, round.Time.Sub(first))); err != nil {
			return err
		}
		storm := s.maybeStorm()
		for _, fr := range round.Frames {
			if err := s.emit(ctx, s.byID[fr.SensorID], fr.RoomID, s.cfg.ReplayForm, round.Time, fr.Metrics); err != nil {
				return err
			}
		}
		s.update(func(sum *Summary) { sum.Rounds++ })
		s.replayed = k + 1
		s.cfg.Progress.Update(s.replayed, total, s.readings())
		if storm != nil && s.cfg.Speed == 0 {
			s.awaitConnections(ctx, storm)
		}
	}
	return nil
}

// readings is how many readings were published so far.
func (s *Simulator) readings() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sum.Readings
}

// maybeStorm cuts every device's connection with probability Faults.Reconnect and
// returns the connection counts from before, or nil when it did not.
func (s *Simulator) maybeStorm() []int {
	if s.cfg.Faults.Reconnect <= 0 || s.faultRNG.Float64() >= s.cfg.Faults.Reconnect {
		return nil
	}
	before := make([]int, len(s.devices))
	for i, d := range s.devices {
		before[i] = d.connections()
		d.cm.TerminateConnectionForTest() // an abrupt loss: the broker sends the last will
	}
	s.update(func(sum *Summary) { sum.Faults.ReconnectStorms++ })
	s.log.Info("reconnect storm", "devices", len(s.devices))
	return before
}

type faultKind int

const (
	noFault faultKind = iota
	malformedFault
	spikeFault
	skewFault
	duplicateFault
)

// emit applies the faults to one frame of device d, encodes it in form and queues
// the messages.
func (s *Simulator) emit(ctx context.Context, d *device, room string, form Form, t time.Time, ms []replay.Metric) error {
	ff := frameFaults{rates: s.cfg.Faults, rng: s.faultRNG, now: s.now}
	defer s.update(func(sum *Summary) { sum.Faults.add(ff.counts) })
	if ff.silent(d) {
		return nil
	}
	ms = ff.stick(d, slices.Clone(ms))
	kind := ff.choose(form)
	switch kind {
	case spikeFault:
		ff.spike(ms)
	case skewFault:
		t = ff.skew(t)
	}
	msgs := ff.damage(kind, encode(form, room, d.id, t, ms))
	s.update(func(sum *Summary) { sum.Frames++ })
	return s.queue(ctx, d, msgs)
}

// queue pushes the messages of one frame into d's outbox, counting what a full
// outbox dropped.
func (s *Simulator) queue(ctx context.Context, d *device, msgs []*message) error {
	for _, m := range msgs {
		dropped, err := d.ob.push(ctx, m)
		if err != nil {
			return err
		}
		s.update(func(sum *Summary) {
			sum.Messages.Produced++
			sum.Messages.Overflowed += len(dropped)
			sum.Messages.Failed += len(dropped)
		})
	}
	return nil
}

// frameFaults decides and applies the faults of one frame, every decision drawn
// from rng in a fixed order (a seed replays the same faults), and counts them.
type frameFaults struct {
	rates  Faults
	rng    *rand.Rand
	now    func() time.Time
	counts FaultCounts
}

// silent reports whether the device says nothing this frame: a dropout lasts 3–12
// frames, the one that starts it included.
func (ff *frameFaults) silent(d *device) bool {
	if d.dropLeft > 0 {
		d.dropLeft--
		ff.counts.DropoutFrames++
		return true
	}
	if ff.rates.Dropout > 0 && ff.rng.Float64() < ff.rates.Dropout {
		d.dropLeft = 2 + ff.rng.IntN(10)
		ff.counts.Dropouts++
		ff.counts.DropoutFrames++
		return true
	}
	return false
}

// stick gives ms the frozen values while d is stuck, or starts a stuck spell: the
// values of this frame are repeated by the next 5–20 frames.
func (ff *frameFaults) stick(d *device, ms []replay.Metric) []replay.Metric {
	if d.stuckLeft > 0 {
		d.stuckLeft--
		ff.counts.StuckFrames++
		for i := range ms {
			for _, f := range d.frozen {
				if f.Type == ms[i].Type {
					ms[i].Value = f.Value
				}
			}
		}
		return ms
	}
	if ff.rates.Stuck > 0 && ff.rng.Float64() < ff.rates.Stuck {
		d.frozen = slices.Clone(ms)
		d.stuckLeft = 5 + ff.rng.IntN(16)
		ff.counts.Stuck++
	}
	return ms
}

// choose draws the frame's message fault: at most one, from a single draw.
func (ff *frameFaults) choose(form Form) faultKind {
	r := ff.rates
	sum := r.Malformed + r.Spike + r.Skew + r.Duplicate
	if sum <= 0 {
		return noFault
	}
	kind := noFault
	switch u := ff.rng.Float64(); {
	case u < r.Malformed:
		kind = malformedFault
	case u < r.Malformed+r.Spike:
		kind = spikeFault
	case u < r.Malformed+r.Spike+r.Skew:
		kind = skewFault
	case u < sum:
		kind = duplicateFault
	}
	if form == FormPlain && (kind == skewFault || kind == duplicateFault) {
		return noFault // a plain number has no timestamp: the receiver stamps it
	}
	return kind
}

// spike gives one reading of a known type with a plausible range a value outside it.
func (ff *frameFaults) spike(ms []replay.Metric) {
	var known []int
	for i, m := range ms {
		if k, ok := reading.Known[m.Type]; ok && (k.Min > -1e300 || k.Max < 1e300) {
			known = append(known, i)
		}
	}
	if len(known) == 0 {
		return
	}
	i := known[ff.rng.IntN(len(known))]
	ms[i].Value = spikeValue(reading.Known[ms[i].Type], ff.rng)
	ff.counts.Spikes++
}

// skew shifts the frame's time t: half the time 10–60 minutes ahead of both t and
// the clock (any receiver rejects it), else 1–120 seconds back.
func (ff *frameFaults) skew(t time.Time) time.Time {
	ff.counts.Skews++
	if ff.rng.IntN(2) != 0 {
		return t.Add(-time.Second - time.Duration(ff.rng.Int64N(int64(119*time.Second))))
	}
	base := t
	if now := ff.now(); now.After(base) {
		base = now
	}
	ff.counts.SkewFuture++
	return base.Add(10*time.Minute + time.Duration(ff.rng.Int64N(int64(50*time.Minute))))
}

// damage applies the faults that act on the encoded messages: a malformed payload,
// or a duplicate of the first message.
func (ff *frameFaults) damage(kind faultKind, msgs []*message) []*message {
	switch kind {
	case malformedFault:
		breakPayload(msgs[0])
		ff.counts.Malformed++
	case duplicateFault:
		cp := *msgs[0]
		cp.duplicate = true
		msgs = append(msgs, &cp)
		ff.counts.Duplicates++
	}
	return msgs
}

// spikeValue is a value outside k's plausible range: above the maximum by half the
// range or more, or below the minimum when there is no maximum.
func spikeValue(k reading.Kind, rng *rand.Rand) float64 {
	if k.Max < 1e300 {
		return round(k.Max+(k.Max-k.Min)*(0.5+rng.Float64()), 2)
	}
	return round(k.Min-1-99*rng.Float64(), 2)
}
