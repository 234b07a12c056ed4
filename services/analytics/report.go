package analytics

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/reading"
)

// ReportContent is a ready report's content.
type ReportContent struct {
	GeneratedAt time.Time    `json:"generated_at"`
	Bucket      string       `json:"chart_bucket"`
	Rooms       []RoomReport `json:"rooms"`
	Series      []Series     `json:"series"`
}

// RoomReport is one room's part of a report.
type RoomReport struct {
	RoomID string `json:"room_id"`
	// ComfortCompliancePct is the share of the minutes with a temperature or
	// humidity reading whose means were within 20–24 °C and 30–60 %RH; nil without
	// such minutes.
	ComfortCompliancePct *float64 `json:"comfort_compliance_pct"`
	ComfortMinutes       int64    `json:"comfort_minutes"`
	// PoorAirHours is the number of minutes whose co2 mean was at least 1000 ppm, in hours.
	PoorAirHours float64 `json:"poor_air_hours"`
	CO2Minutes   int64   `json:"co2_minutes"`
	// OccupancyUtilisation is mean occupancy / capacity when the capacity is known
	// and the room reports occupancy counts, else the share of minutes occupied
	// (Basis says which); nil without occupancy data.
	OccupancyUtilisation *float64             `json:"occupancy_utilisation"`
	OccupancyBasis       string               `json:"occupancy_basis"`
	OccupancyType        string               `json:"occupancy_type,omitempty"`
	MeanOccupancy        *float64             `json:"mean_occupancy"`
	Capacity             float64              `json:"capacity,omitempty"`
	Types                map[string]TypeStats `json:"types"`
}

// TypeStats are min, mean and max of one type over the period.
type TypeStats struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	Max   float64 `json:"max"`
}

// Series is one room's line of one type in a report's charts.
type Series struct {
	RoomID string   `json:"room_id"`
	Type   string   `json:"type"`
	Points []Bucket `json:"points"`
}

// chartTypes are the types a report draws.
var chartTypes = []string{"temperature", "humidity", "co2", "occupancy"}

// chartBucket is the smallest bucket that draws the period in at most 300 points.
func chartBucket(span time.Duration) (string, time.Duration) {
	for _, name := range []string{"1m", "5m", "15m", "1h"} {
		if span/httpx.Buckets[name] <= 300 {
			return name, httpx.Buckets[name]
		}
	}
	return "1d", httpx.Buckets["1d"]
}

// generate builds a pending report and stores it ready (or failed).
func (s *Service) generate(ctx context.Context, id string) {
	rep, err := s.store.Report(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("report lookup failed", "id", id, "err", err)
		}
		return
	}
	if rep.Status != StatusPending {
		return
	}
	content, err := s.buildReport(ctx, rep)
	if ctx.Err() != nil {
		return // shutting down: stays pending, resumed on the next start
	}
	rep.FinishedAt = s.opts.Now().UTC().Truncate(time.Millisecond)
	if err != nil {
		s.log.Error("report failed", "id", id, "err", err)
		rep.Status, rep.Error = StatusFailed, "the report could not be generated"
		s.reports.WithLabelValues("failed").Inc()
	} else {
		rep.Status, rep.Content = StatusReady, content
		s.reports.WithLabelValues("ready").Inc()
	}
	if err := s.store.SaveReport(ctx, rep); err != nil {
		s.log.Error("report save failed", "id", id, "err", err)
	}
}

func (s *Service) buildReport(ctx context.Context, rep Report) ([]byte, error) {
	rooms := rep.Rooms
	if len(rooms) == 0 {
		var err error
		if rooms, err = s.store.Rooms(ctx); err != nil {
			return nil, err
		}
	}
	bname, bucket := chartBucket(rep.To.Sub(rep.From))
	c := ReportContent{GeneratedAt: s.opts.Now().UTC(), Bucket: bname, Rooms: []RoomReport{}, Series: []Series{}}
	for _, room := range rooms {
		f, err := s.store.RoomFigures(ctx, room, rep.From, rep.To)
		if err != nil {
			return nil, err
		}
		rr := roomReport(f, rep.Capacities[room])
		c.Rooms = append(c.Rooms, rr)
		for _, typ := range chartTypes {
			if _, ok := rr.Types[typ]; !ok {
				continue
			}
			bs, err := s.store.Series(ctx, SeriesQuery{RoomID: room, Type: typ, From: rep.From, To: rep.To, Bucket: bucket})
			if err != nil {
				return nil, err
			}
			c.Series = append(c.Series, Series{RoomID: room, Type: typ, Points: bs})
		}
	}
	return json.Marshal(c)
}

func roomReport(f RoomFigures, capacity float64) RoomReport {
	rr := RoomReport{RoomID: f.RoomID, ComfortMinutes: f.ComfortMinutes, CO2Minutes: f.CO2Minutes, OccupancyBasis: "none",
		OccupancyType: f.OccupancyType, Types: map[string]TypeStats{}}
	for _, t := range f.Types {
		rr.Types[t.Type] = TypeStats{Count: t.Count, Min: t.Min, Mean: t.Mean, Max: t.Max}
	}
	if f.ComfortMinutes > 0 {
		pct := 100 * float64(f.CompliantMinutes) / float64(f.ComfortMinutes)
		rr.ComfortCompliancePct = &pct
	}
	rr.PoorAirHours = float64(f.PoorAirMinutes) / 60
	if f.OccupancyMinutes > 0 {
		// The mean of the minute means lies within the type's min and max; it
		// is held there when the store's average overflowed.
		mean := f.MeanOccupancy
		if occ, ok := rr.Types[f.OccupancyType]; ok {
			mean = reading.Mean(mean, 1, occ.Min, occ.Max)
		}
		rr.MeanOccupancy = &mean
		if capacity > 0 && f.OccupancyType == "occupancy" {
			rr.OccupancyUtilisation, rr.OccupancyBasis, rr.Capacity = reading.Finite(mean/capacity), "capacity", capacity
		} else {
			u := float64(f.OccupiedMinutes) / float64(f.OccupancyMinutes)
			rr.OccupancyUtilisation, rr.OccupancyBasis = &u, "minutes_occupied"
		}
	}
	return rr
}

// reportView is a report as GET /analytics/reports/{id} answers it in JSON.
type reportView struct {
	Report
	Content json.RawMessage `json:"content,omitempty"`
}

func writeReport(w http.ResponseWriter, rep Report, format string) error {
	switch format {
	case "csv":
		var c ReportContent
		if err := json.Unmarshal(rep.Content, &c); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := reportCSV(&buf, c); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="report-%s.csv"`, rep.ID))
		_, err := w.Write(buf.Bytes())
		return err
	case "html":
		var c ReportContent
		if err := json.Unmarshal(rep.Content, &c); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := reportHTML(&buf, rep, c); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_, err := w.Write(buf.Bytes())
		return err
	}
	v := reportView{Report: rep}
	if len(rep.Content) > 0 {
		v.Content = rep.Content
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(append(b, '\n'))
	return err
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func fmtOpt(f *float64) string {
	if f == nil {
		return ""
	}
	return fmtNum(math.Round(*f*1000) / 1000)
}

// reportCSV writes one row per room and type, the room's figures repeated on each.
func reportCSV(w *bytes.Buffer, c ReportContent) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"room_id", "type", "count", "min", "mean", "max", "comfort_compliance_pct", "poor_air_hours", "occupancy_utilisation", "occupancy_basis"})
	for _, r := range c.Rooms {
		types := make([]string, 0, len(r.Types))
		for t := range r.Types {
			types = append(types, t)
		}
		sort.Strings(types)
		if len(types) == 0 {
			types = []string{""}
		}
		for _, t := range types {
			st := r.Types[t]
			row := []string{r.RoomID, t, "", "", "", ""}
			if t != "" {
				row = []string{r.RoomID, t, strconv.FormatInt(st.Count, 10), fmtNum(st.Min), fmtNum(st.Mean), fmtNum(st.Max)}
			}
			row = append(row, fmtOpt(r.ComfortCompliancePct), fmtNum(r.PoorAirHours), fmtOpt(r.OccupancyUtilisation), r.OccupancyBasis)
			_ = cw.Write(row)
		}
	}
	cw.Flush()
	return cw.Error()
}

// chart is one SVG chart: a type, a line per room.
type chart struct {
	Type   string
	Unit   string
	Lines  []chartLine
	YTicks []tick
	XTicks []tick
	W, H   int
	Empty  bool
}

type chartLine struct {
	RoomID  string
	Color   string
	Points  string
	Dots    []dot // markers, when the line has few points
	LegendY int
}

type dot struct{ X, Y float64 }

type tick struct {
	Pos   float64
	Label string
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

var units = map[string]string{"temperature": "°C", "humidity": "%RH", "co2": "ppm", "occupancy": "people"}

// Chart geometry: the plot area inside the SVG.
const (
	chartW, chartH = 760, 260
	plotL, plotR   = 60, 600
	plotT, plotB   = 20, 220
)

func buildCharts(rep Report, c ReportContent) []chart {
	var out []chart
	for _, typ := range chartTypes {
		ch := chart{Type: typ, Unit: units[typ], W: chartW, H: chartH}
		lo, hi := math.Inf(1), math.Inf(-1)
		var series []Series
		for _, s := range c.Series {
			if s.Type == typ && len(s.Points) > 0 {
				series = append(series, s)
				for _, p := range s.Points {
					lo, hi = math.Min(lo, p.Mean), math.Max(hi, p.Mean)
				}
			}
		}
		if len(series) == 0 {
			continue
		}
		if hi == lo { // ±1, or more where 1 is lost in the rounding of a huge value
			d := max(1, math.Abs(lo)/1e6)
			lo, hi = lo-d, hi+d
		}
		// Halves, so that huge means (up to ±MaxFloat64) do not overflow the
		// span: half is (hi-lo)/2, exactly.
		pad := (hi/2 - lo/2) * 0.1
		lo, hi = max(lo-pad, -math.MaxFloat64), min(hi+pad, math.MaxFloat64)
		half := hi/2 - lo/2
		t0, span := rep.From, rep.To.Sub(rep.From).Seconds()
		x := func(t time.Time) float64 { return plotL + (plotR-plotL)*t.Sub(t0).Seconds()/span }
		y := func(v float64) float64 { return plotB - (plotB-plotT)*(v/2-lo/2)/half }
		for i, s := range series {
			var b strings.Builder
			line := chartLine{RoomID: s.RoomID, Color: palette[i%len(palette)], LegendY: plotT + 14 + i*18}
			for _, p := range s.Points {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(p.Start), y(p.Mean))
				if len(s.Points) <= 60 {
					line.Dots = append(line.Dots, dot{math.Round(x(p.Start)*10) / 10, math.Round(y(p.Mean)*10) / 10})
				}
			}
			line.Points = strings.TrimSpace(b.String())
			ch.Lines = append(ch.Lines, line)
		}
		for i := 0; i <= 4; i++ {
			v := lo + half*float64(i)/2
			ch.YTicks = append(ch.YTicks, tick{Pos: y(v), Label: strconv.FormatFloat(v, 'f', 1, 64)})
		}
		layout := "01-02 15:04"
		if rep.To.Sub(rep.From) > 7*24*time.Hour {
			layout = "2006-01-02"
		}
		for i := 0; i <= 4; i++ {
			t := t0.Add(time.Duration(float64(rep.To.Sub(rep.From)) * float64(i) / 4))
			ch.XTicks = append(ch.XTicks, tick{Pos: x(t), Label: t.UTC().Format(layout)})
		}
		out = append(out, ch)
	}
	return out
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"pct": func(f *float64) string {
		if f == nil {
			return "–"
		}
		return strconv.FormatFloat(*f, 'f', 1, 64) + " %"
	},
	"num": func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
	"opt": func(f *float64) string {
		if f == nil {
			return "–"
		}
		return strconv.FormatFloat(*f, 'f', 2, 64)
	},
	"time": func(t time.Time) string { return reading.FormatTime(t) },
	"sortedTypes": func(m map[string]TypeStats) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	},
	"get":   func(m map[string]TypeStats, k string) TypeStats { return m[k] },
	"add":   func(a, b float64) float64 { return a + b },
	"plotL": func() int { return plotL }, "plotR": func() int { return plotR },
	"plotT": func() int { return plotT }, "plotB": func() int { return plotB },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Atrium {{.Rep.Kind}} report {{time .Rep.From}} – {{time .Rep.To}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 64rem; color: #1d2330; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.meta { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0 2rem; font-size: .92rem; }
th, td { border-bottom: 1px solid #dde1e8; padding: .45rem .6rem; text-align: right; }
th:first-child, td:first-child, table.types td:nth-child(2), table.types th:nth-child(2) { text-align: left; }
th { background: #f3f5f9; font-weight: 600; }
section.chart { margin: 1.5rem 0; }
svg { width: 100%; height: auto; background: #fbfcfe; border: 1px solid #e3e7ee; border-radius: 6px; }
svg text { font-size: 11px; fill: #5b6475; }
svg .legend { font-size: 12px; fill: #1d2330; }
.empty { color: #5b6475; font-style: italic; }
</style>
</head>
<body>
<h1>Atrium {{.Rep.Kind}} report</h1>
<p class="meta">{{time .Rep.From}} to {{time .Rep.To}} · generated {{time .C.GeneratedAt}} · report {{.Rep.ID}}</p>
<h2>Rooms</h2>
{{if not .C.Rooms}}<p class="empty">No room had readings in this period.</p>{{else}}
<table>
<thead><tr><th>Room</th><th>Comfort compliance</th><th>Poor air (h)</th><th>Occupancy utilisation</th><th>Basis</th><th>Mean occupancy</th></tr></thead>
<tbody>
{{range .C.Rooms}}<tr><td>{{.RoomID}}</td><td>{{pct .ComfortCompliancePct}}</td><td>{{num .PoorAirHours}}</td><td>{{opt .OccupancyUtilisation}}</td><td>{{.OccupancyBasis}}</td><td>{{opt .MeanOccupancy}}</td></tr>
{{end}}</tbody>
</table>
<h2>Readings per type</h2>
<table class="types">
<thead><tr><th>Room</th><th>Type</th><th>Readings</th><th>Min</th><th>Mean</th><th>Max</th></tr></thead>
<tbody>
{{range $r := .C.Rooms}}{{range $t := sortedTypes $r.Types}}{{$s := get $r.Types $t}}<tr><td>{{$r.RoomID}}</td><td>{{$t}}</td><td>{{$s.Count}}</td><td>{{num $s.Min}}</td><td>{{num $s.Mean}}</td><td>{{num $s.Max}}</td></tr>
{{end}}{{end}}</tbody>
</table>{{end}}
<h2>Charts</h2>
<p class="meta">Mean per {{.C.Bucket}}, one line per room.</p>
{{range .Charts}}<section class="chart">
<h3>{{.Type}}{{if .Unit}} ({{.Unit}}){{end}}</h3>
<svg viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Type}} per room">
<line x1="{{plotL}}" y1="{{plotB}}" x2="{{plotR}}" y2="{{plotB}}" stroke="#8a93a5"/>
<line x1="{{plotL}}" y1="{{plotT}}" x2="{{plotL}}" y2="{{plotB}}" stroke="#8a93a5"/>
{{range .YTicks}}<line x1="{{plotL}}" y1="{{.Pos}}" x2="{{plotR}}" y2="{{.Pos}}" stroke="#e3e7ee"/><text x="{{add 0 54}}" y="{{add .Pos 4}}" text-anchor="end">{{.Label}}</text>
{{end}}{{range .XTicks}}<text x="{{.Pos}}" y="{{add 0 238}}" text-anchor="middle">{{.Label}}</text>
{{end}}{{range .Lines}}<polyline fill="none" stroke="{{.Color}}" stroke-width="1.8" points="{{.Points}}"/>
{{$c := .Color}}{{range .Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="3" fill="{{$c}}"/>{{end}}
{{end}}{{range .Lines}}<line x1="612" y1="{{.LegendY}}" x2="630" y2="{{.LegendY}}" stroke="{{.Color}}" stroke-width="3"/><text class="legend" x="636" y="{{.LegendY}}" dy="4">{{.RoomID}}</text>
{{end}}</svg>
</section>
{{else}}<p class="empty">No chartable readings (temperature, humidity, co2, occupancy) in this period.</p>
{{end}}
</body>
</html>
`))

func reportHTML(w *bytes.Buffer, rep Report, c ReportContent) error {
	return reportTmpl.Execute(w, map[string]any{"Rep": rep, "C": c, "Charts": buildCharts(rep, c)})
}
