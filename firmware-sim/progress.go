package sim

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Progress tells how far a replay has got. On a terminal it redraws one status
// line (percent, rate, time left) a few times a second; elsewhere (a log file, a
// pipe, CI) it writes a plain log line every LogEvery, so logs stay readable.
// A nil *Progress does nothing.
type Progress struct {
	out       io.Writer    // the terminal, when Terminal
	log       *slog.Logger // otherwise
	terminal  bool
	drawEvery time.Duration
	logEvery  time.Duration
	now       func() time.Time

	mu        sync.Mutex
	start     time.Time
	last      time.Time // of the last line drawn or logged
	lineWidth int
	finished  bool
}

// ProgressOptions shape a Progress; zero values take the defaults.
type ProgressOptions struct {
	// Terminal selects the redrawn status line on Out; false selects log lines.
	Terminal bool
	// DrawEvery is how often the terminal line is redrawn (default 200ms) and
	// LogEvery how often a log line is written (default 10s).
	DrawEvery, LogEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NewProgress makes a Progress that draws on out (a terminal) or logs to log.
func NewProgress(out io.Writer, log *slog.Logger, opts ProgressOptions) *Progress {
	if opts.DrawEvery <= 0 {
		opts.DrawEvery = 200 * time.Millisecond
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Progress{out: out, log: log, terminal: opts.Terminal, drawEvery: opts.DrawEvery, logEvery: opts.LogEvery, now: opts.Now}
}

// ProgressState is one reading of the progress.
type ProgressState struct {
	Done, Total int           // rounds replayed and in the file
	Readings    int           // readings published so far
	Percent     float64       // Done/Total in percent
	Rate        float64       // readings per second since the start
	Elapsed     time.Duration // since the first Update
	Left        time.Duration // estimated time to the end; -1 when unknown
}

func (p *Progress) state(done, total, readings int, now time.Time) ProgressState {
	st := ProgressState{Done: done, Total: total, Readings: readings, Elapsed: now.Sub(p.start), Left: -1}
	if total > 0 {
		st.Percent = 100 * float64(min(done, total)) / float64(total)
	}
	if secs := st.Elapsed.Seconds(); secs > 0 {
		st.Rate = float64(readings) / secs
		if done > 0 && total >= done {
			st.Left = time.Duration(float64(st.Elapsed) * float64(total-done) / float64(done))
		}
	}
	return st
}

// Update reports that done of total rounds are replayed, with readings published;
// it draws or logs only when the interval has passed.
func (p *Progress) Update(done, total, readings int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.start.IsZero() {
		p.start, p.last = now, now
		if !p.terminal {
			p.log.Info("replay started", "rounds", total)
		}
	}
	if p.finished {
		return
	}
	every := p.logEvery
	if p.terminal {
		every = p.drawEvery
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.emit(p.state(done, total, readings, now), false)
}

// Finish draws or logs the final state and ends the terminal line.
func (p *Progress) Finish(done, total, readings int) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished {
		return
	}
	now := p.now()
	if p.start.IsZero() {
		p.start = now
	}
	p.finished = true
	p.emit(p.state(done, total, readings, now), true)
}

func (p *Progress) emit(st ProgressState, final bool) {
	if !p.terminal {
		attrs := []any{"done", st.Done, "total", st.Total, "percent", round(st.Percent, 1),
			"readings", st.Readings, "readings_per_s", round(st.Rate, 1), "elapsed", st.Elapsed.Round(time.Second).String()}
		if final {
			p.log.Info("replay finished", attrs...)
			return
		}
		if st.Left >= 0 {
			attrs = append(attrs, "left", st.Left.Round(time.Second).String())
		}
		p.log.Info("replay progress", attrs...)
		return
	}
	line := FormatProgress(st)
	pad := ""
	if n := p.lineWidth - len(line); n > 0 {
		pad = strings.Repeat(" ", n) // wipe the rest of a longer previous line
	}
	p.lineWidth = len(line)
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.out, "\r%s%s%s", line, pad, end)
}

// FormatProgress is the terminal line of st, e.g.
// "replay  42.0% [########------------]  1234/2938 rounds  812 readings/s  1m05s left".
func FormatProgress(st ProgressState) string {
	const width = 20
	filled := int(st.Percent / 100 * width)
	bar := strings.Repeat("#", filled) + strings.Repeat("-", width-filled)
	left := "--"
	switch {
	case st.Done >= st.Total && st.Total > 0:
		left = "done in " + shortDuration(st.Elapsed)
	case st.Left >= 0:
		left = shortDuration(st.Left) + " left"
	}
	return fmt.Sprintf("replay %5.1f%% [%s] %d/%d rounds  %s readings/s  %s",
		st.Percent, bar, st.Done, st.Total, formatRate(st.Rate), left)
}

func formatRate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// shortDuration writes d to the second, e.g. 1h02m03s, 4m05s, 7s.
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}
