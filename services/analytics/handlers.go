package analytics

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Summary is the dashboard: GET /analytics/summary.
type Summary struct {
	GeneratedAt time.Time         `json:"generated_at"`
	Sensors     Sensors           `json:"sensors"`
	Rooms       int               `json:"rooms"`
	Readings    ReadingCounts     `json:"readings"`
	IngestRate  float64           `json:"ingest_rate_per_s"`
	Means       map[string]TypeAv `json:"means"`
	Attention   []Attention       `json:"attention"`
	// Alerts counts the active alerts and AlertsLastDay those raised in the
	// last day, both from alert.raised and alert.resolved.
	Alerts        int64 `json:"active_alerts"`
	AlertsLastDay int64 `json:"alerts_raised_last_day"`
}

// ReadingCounts are the readings stored with a timestamp in the last hour and day
// (whole minutes, the current one included).
type ReadingCounts struct {
	LastHour int64 `json:"last_hour"`
	LastDay  int64 `json:"last_day"`
}

// TypeAv is a building-wide mean over the last hour.
type TypeAv struct {
	Mean  float64 `json:"mean"`
	Count int64   `json:"count"`
}

// Attention is a room whose latest values (of the last hour) break a threshold.
type Attention struct {
	RoomID  string             `json:"room_id"`
	Reasons []string           `json:"reasons"`
	Values  map[string]float64 `json:"values"`
}

func (s *Service) handleSummary() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sum, err := s.Summary(r.Context())
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, sum)
	}
}

// Summary computes the dashboard, or serves the one computed less than
// Options.SummaryTTL ago; one older than that by less than Options.SummaryStale
// is served too, while the next is computed in the background.
func (s *Service) Summary(ctx context.Context) (*Summary, error) {
	ttl, stale := s.opts.SummaryTTL, s.opts.SummaryStale
	s.sumMu.Lock()
	if sum := s.summary; sum != nil && ttl > 0 {
		age := s.opts.Now().Sub(s.sumAt)
		if age < ttl {
			s.sumMu.Unlock()
			return sum, nil
		}
		if stale > 0 && age < ttl+stale {
			if !s.sumRefreshing {
				s.sumRefreshing = true
				go s.refreshSummary()
			}
			s.sumMu.Unlock()
			return sum, nil
		}
	}
	s.sumMu.Unlock()
	return s.summarize(ctx)
}

// summarize computes the summary and keeps it, unless a summary computed while
// this call waited for its turn is still fresh.
func (s *Service) summarize(ctx context.Context) (*Summary, error) {
	s.sumCompute.Lock()
	defer s.sumCompute.Unlock()
	now := s.opts.Now()
	s.sumMu.Lock()
	if sum := s.summary; sum != nil && s.opts.SummaryTTL > 0 && now.Sub(s.sumAt) < s.opts.SummaryTTL {
		s.sumMu.Unlock()
		return sum, nil
	}
	s.sumMu.Unlock()
	sum, err := s.computeSummary(ctx, now)
	if err != nil {
		return nil, err
	}
	s.sumMu.Lock()
	s.summary, s.sumAt = sum, now
	s.sumMu.Unlock()
	return sum, nil
}

// refreshSummary computes the next summary in the background while the stale
// one is served.
func (s *Service) refreshSummary() {
	defer func() {
		s.sumMu.Lock()
		s.sumRefreshing = false
		s.sumMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.summarize(ctx); err != nil {
		s.log.Warn("summary refresh failed", "err", err)
	}
}

func (s *Service) computeSummary(ctx context.Context, now time.Time) (*Summary, error) {
	out := &Summary{GeneratedAt: now.UTC(), Means: map[string]TypeAv{}, Attention: []Attention{}}
	sens, err := s.sens.get(ctx)
	if err != nil {
		s.log.Warn("sensor registry unavailable, serving the last answer", "err", err, "as_of", sens.AsOf)
	}
	out.Sensors = sens
	f, err := s.store.SummaryFigures(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	out.Readings = ReadingCounts{LastHour: f.LastHour, LastDay: f.LastDay}
	out.IngestRate = math.Round(s.rate.perSecond(now)*100) / 100
	for _, st := range f.Types {
		out.Means[st.Type] = TypeAv{Mean: st.Mean, Count: st.Count}
	}
	all := map[string]struct{}{}
	for _, r := range append(f.Rooms, sens.rooms...) {
		all[r] = struct{}{}
	}
	out.Rooms = len(all)
	out.Attention = attention(f.Latest)
	out.Alerts, out.AlertsLastDay = f.ActiveAlerts, f.AlertsLastDay
	return out, nil
}

// attention lists the rooms whose latest values break the air (co2 ≥ 1000 ppm) or
// comfort (temperature outside 20–24 °C, humidity outside 30–60 %RH) thresholds.
func attention(latest []RoomValue) []Attention {
	byRoom := map[string]*Attention{}
	var order []string
	for _, v := range latest {
		var reason string
		switch v.Type {
		case "co2":
			if v.Value >= PoorAirCO2 {
				reason = "air"
			}
		case "temperature":
			if v.Value < ComfortTempMin || v.Value > ComfortTempMax {
				reason = "comfort"
			}
		case "humidity":
			if v.Value < ComfortHumidityMin || v.Value > ComfortHumidityMax {
				reason = "comfort"
			}
		}
		if reason == "" {
			continue
		}
		a := byRoom[v.RoomID]
		if a == nil {
			a = &Attention{RoomID: v.RoomID, Values: map[string]float64{}}
			byRoom[v.RoomID] = a
			order = append(order, v.RoomID)
		}
		if len(a.Reasons) == 0 || a.Reasons[len(a.Reasons)-1] != reason {
			a.Reasons = append(a.Reasons, reason)
		}
		a.Values[v.Type] = v.Value
	}
	sort.Strings(order)
	out := make([]Attention, 0, len(order))
	for _, r := range order {
		a := byRoom[r]
		sort.Strings(a.Reasons)
		if len(a.Reasons) == 2 && a.Reasons[0] == a.Reasons[1] {
			a.Reasons = a.Reasons[:1]
		}
		out = append(out, *a)
	}
	return out
}

// maxBuckets bounds the buckets of one trend.
const maxBuckets = 50000

// TrendAnswer is GET /analytics/trends.
type TrendAnswer struct {
	Type         string    `json:"type"`
	RoomID       string    `json:"room_id,omitempty"`
	Scope        string    `json:"scope"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Bucket       string    `json:"bucket"`
	Buckets      []Bucket  `json:"buckets"`
	Count        int64     `json:"count"`
	Mean         *float64  `json:"mean"`
	SlopePerHour *float64  `json:"slope_per_hour"`
	Change       Change    `json:"change"`
	Min          *Extreme  `json:"min"`
	Max          *Extreme  `json:"max"`
	Anomalies    []Anomaly `json:"anomalies"`
}

func (s *Service) handleTrends() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := httpx.NewQuery(r)
		typ := q.Type("type", true)
		room := q.ID("room_id")
		bucketName, bucket := q.Bucket()
		from, to := q.Time("from"), q.Time("to")
		if to.IsZero() {
			to = s.opts.Now()
		}
		if from.IsZero() {
			from = to.Add(-24 * time.Hour)
		}
		q.Check(!from.Before(to), "from", "must be before to")
		from, to = alignDown(from, bucket), alignUp(to, bucket)
		q.Check(to.Sub(from)/bucket > maxBuckets, "bucket", fmt.Sprintf("more than %d buckets: choose a larger bucket or a shorter period", maxBuckets))
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		ans, err := s.Trend(r.Context(), SeriesQuery{RoomID: room, Type: typ, From: from, To: to, Bucket: bucket})
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		ans.Bucket = bucketName
		httpx.JSON(w, http.StatusOK, ans)
	}
}

func alignDown(t time.Time, d time.Duration) time.Time {
	return time.UnixMilli(t.UnixMilli() - mod(t.UnixMilli(), d.Milliseconds())).UTC()
}

func alignUp(t time.Time, d time.Duration) time.Time {
	down := alignDown(t, d)
	if down.Equal(t) {
		return down
	}
	return down.Add(d)
}

func mod(a, b int64) int64 { return ((a % b) + b) % b }

// Trend computes the series of q and its statistics: the slope of the bucket
// means, the change of the mean against the previous period of the same length,
// the lowest and highest readings with their times, and the anomalous buckets.
func (s *Service) Trend(ctx context.Context, q SeriesQuery) (*TrendAnswer, error) {
	bs, err := s.store.Series(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("trend: %w", err)
	}
	prevQ := q
	prevQ.From, prevQ.To = q.From.Add(-q.To.Sub(q.From)), q.From
	prev, err := s.store.Series(ctx, prevQ)
	if err != nil {
		return nil, fmt.Errorf("trend: previous period: %w", err)
	}
	ans := &TrendAnswer{Type: q.Type, RoomID: q.RoomID, Scope: "building", From: q.From, To: q.To, Buckets: bs, Change: Compare(bs, prev), Anomalies: Anomalies(bs)}
	if q.RoomID != "" {
		ans.Scope = "room"
	}
	if ans.Buckets == nil {
		ans.Buckets = []Bucket{}
	}
	if n, mean, ok := Overall(bs); ok {
		ans.Count, ans.Mean = n, &mean
	}
	if slope, ok := SlopePerHour(bs); ok {
		ans.SlopePerHour = &slope
	}
	for _, max := range []bool{false, true} {
		e, ok, err := s.store.Extreme(ctx, q, max)
		if err != nil {
			return nil, fmt.Errorf("trend: %w", err)
		}
		if ok {
			if max {
				ans.Max = &e
			} else {
				ans.Min = &e
			}
		}
	}
	return ans, nil
}

// reportRequest is the body of POST /analytics/reports.
type reportRequest struct {
	Kind       string             `json:"kind"`
	From       *time.Time         `json:"from"`
	To         *time.Time         `json:"to"`
	Rooms      []string           `json:"rooms"`
	Capacities map[string]float64 `json:"capacities"`
}

// maxReportSpan bounds a custom report's period.
const maxReportSpan = 5 * 366 * 24 * time.Hour

// period resolves the request's period: daily and weekly reports cover one day or
// week, ending at `to`, starting at `from`, or ending at the last midnight (UTC).
func (req reportRequest) period(now time.Time) (from, to time.Time, probs []httpx.FieldProblem) {
	bad := func(field, reason string) { probs = append(probs, httpx.FieldProblem{Field: field, Reason: reason}) }
	var span time.Duration
	switch req.Kind {
	case KindDaily:
		span = 24 * time.Hour
	case KindWeekly:
		span = 7 * 24 * time.Hour
	case KindCustom:
		if req.From == nil || req.To == nil {
			bad("from", "a custom report needs from and to")
			return
		}
		from, to = req.From.UTC(), req.To.UTC()
		if !from.Before(to) {
			bad("from", "must be before to")
		} else if to.Sub(from) > maxReportSpan {
			bad("to", "a report covers at most 5 years")
		}
	default:
		bad("kind", "must be daily, weekly or custom")
		return
	}
	if span > 0 {
		switch {
		case req.From != nil && req.To != nil:
			from, to = req.From.UTC(), req.To.UTC()
			if to.Sub(from) != span {
				bad("to", fmt.Sprintf("a %s report covers %s: give from or to, or both %s apart", req.Kind, span, span))
			}
		case req.From != nil:
			from = req.From.UTC()
			to = from.Add(span)
		case req.To != nil:
			to = req.To.UTC()
			from = to.Add(-span)
		default:
			to = now.UTC().Truncate(24 * time.Hour)
			from = to.Add(-span)
		}
	}
	from, to = alignDown(from, time.Minute), alignUp(to, time.Minute)
	return from, to, probs
}

func (s *Service) handleCreateReport() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, err := httpx.Decode[reportRequest](w, r, s.opts.MaxBody)
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		now := s.opts.Now()
		from, to, probs := req.period(now)
		for i, room := range req.Rooms {
			if !reading.ValidID(room) {
				probs = append(probs, httpx.FieldProblem{Field: fmt.Sprintf("rooms[%d]", i), Reason: "1-128 characters of A-Z a-z 0-9 . _ : -"})
			}
		}
		if len(req.Rooms) > 1000 {
			probs = append(probs, httpx.FieldProblem{Field: "rooms", Reason: "at most 1000 rooms"})
		}
		for room, c := range req.Capacities {
			if !(c > 0) || math.IsInf(c, 0) {
				probs = append(probs, httpx.FieldProblem{Field: "capacities." + room, Reason: "must be a positive number"})
			}
		}
		if len(probs) > 0 {
			p := httpx.NewProblem(http.StatusBadRequest, "the report request has invalid fields")
			p.Errors = probs
			httpx.Error(w, r, s.log, p)
			return
		}
		rooms := req.Rooms
		if rooms == nil {
			rooms = []string{}
		}
		rep := Report{
			ID: uuid.NewString(), Kind: req.Kind, Status: StatusPending, From: from, To: to,
			Rooms: rooms, Capacities: req.Capacities, CreatedAt: now.UTC().Truncate(time.Millisecond),
		}
		if err := s.store.SaveReport(r.Context(), rep); err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("create report: %w", err))
			return
		}
		select {
		case s.queue <- rep.ID:
		default: // the sweep will find it
		}
		w.Header().Set("Location", "/analytics/reports/"+rep.ID)
		httpx.JSON(w, http.StatusAccepted, map[string]string{"id": rep.ID, "status": rep.Status})
	}
}

func (s *Service) handleReports() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := httpx.NewQuery(r)
		limit := q.Limit()
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		rs, next, err := s.store.Reports(r.Context(), limit, q.String("cursor"))
		if err != nil {
			if errors.Is(err, ErrBadCursor) {
				p := httpx.NewProblem(http.StatusBadRequest, "invalid query parameters")
				p.Errors = []httpx.FieldProblem{{Field: "cursor", Reason: "not a cursor this service made"}}
				err = p
			}
			httpx.Error(w, r, s.log, err)
			return
		}
		httpx.List(w, "reports", rs, next)
	}
}

func (s *Service) handleReport() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		q := httpx.NewQuery(r)
		format := q.Enum("format", "json", "json", "csv", "html")
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		rep, err := s.store.Report(r.Context(), id)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				err = httpx.NewProblem(http.StatusNotFound, fmt.Sprintf("report %q does not exist", id))
			}
			httpx.Error(w, r, s.log, err)
			return
		}
		if format != "json" && rep.Status != StatusReady {
			p := httpx.NewProblem(http.StatusConflict, fmt.Sprintf("report %q is %s; %s is available once it is ready", id, rep.Status, format))
			if rep.Status == StatusPending {
				p.RetryAfter = 2 * time.Second
			}
			httpx.Error(w, r, s.log, p)
			return
		}
		if err := writeReport(w, rep, format); err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("render report %s: %w", id, err))
		}
	}
}
