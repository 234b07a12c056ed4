package room

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/paging"
	"github.com/atrium-iot/atrium/internal/reading"
)

// Limits of a room's fields.
const (
	MaxTextLen  = 200
	MaxCapacity = 1_000_000
	MinFloor    = -100
	MaxFloor    = 1000
	MaxAreaM2   = 10_000_000
)

// roomErr turns a store error about room id into the answer a client sees (nil
// when there is no error).
func roomErr(id string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) {
		return httpx.NewProblem(http.StatusNotFound, fmt.Sprintf("room %q does not exist", id))
	}
	return fmt.Errorf("room %s: %w", id, err)
}

func (s *Service) handleRooms() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := httpx.NewQuery(r)
		limit := q.Limit()
		after, err := decodeCursor(q.String("cursor"))
		q.Check(err != nil, "cursor", "not a cursor this service gave out")
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		rooms, err := s.store.Rooms(r.Context(), after, limit+1)
		if err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("list rooms: %w", err))
			return
		}
		rooms, next := paging.Cut(rooms, limit, func(last Room) string { return encodeCursor(last.ID) })
		page := make([]Summary, 0, len(rooms))
		for _, rm := range rooms {
			m, err := s.metrics(r.Context(), rm.ID)
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile
			}
			if err != nil {
				httpx.Error(w, r, s.log, fmt.Errorf("metrics of %s: %w", rm.ID, err))
				return
			}
			page = append(page, Summarise(rm, m))
		}
		httpx.List(w, "rooms", page, next)
	}
}

func (s *Service) handleRoom() http.HandlerFunc {
	return httpx.HandleGet(s.log, func(ctx context.Context, id string) (Room, error) {
		rm, err := s.store.Room(ctx, id)
		return rm, roomErr(id, err)
	})
}

func (s *Service) handleCreate() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, p, err := s.decodeRoom(w, r, true, true)
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		if id == "" {
			id = uuid.NewString()
		}
		created, err := s.store.CreateRoom(r.Context(), newRoom(id, p, s.opts.Now().UTC()))
		if errors.Is(err, ErrConflict) {
			httpx.Error(w, r, s.log, httpx.NewProblem(http.StatusConflict, fmt.Sprintf("room %q already exists", id)))
			return
		}
		if err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("create room %s: %w", id, err))
			return
		}
		w.Header().Set("Location", "/rooms/"+id)
		httpx.JSON(w, http.StatusCreated, created)
	}
}

// decodeRoom reads the body of a create, replace or patch request as parseRoom
// does.
func (s *Service) decodeRoom(w http.ResponseWriter, r *http.Request, all, withID bool) (string, Patch, error) {
	body, err := httpx.ReadBody(w, r, s.opts.MaxBody)
	if err != nil {
		return "", Patch{}, err
	}
	return parseRoom(body, all, withID)
}

// newRoom is a room made from a create or replace request.
func newRoom(id string, p Patch, now time.Time) Room {
	rm := Room{ID: id, Name: id}
	if v := p.Name.Value; v != nil {
		rm.Name = *v
	}
	if v := p.Building.Value; v != nil {
		rm.Building = *v
	}
	rm.Floor, rm.Capacity, rm.AreaM2 = p.Floor.Value, p.Capacity.Value, p.AreaM2.Value
	rm.CreatedAt, rm.UpdatedAt = now, now
	return rm
}

// handleUpdate serves PUT (replace: an absent field is cleared) and PATCH (JSON
// merge patch: only the fields present change, null clears).
func (s *Service) handleUpdate(replace bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		bodyID, p, err := s.decodeRoom(w, r, replace, false)
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		if bodyID != "" && bodyID != id {
			httpx.Error(w, r, s.log, httpx.NewProblem(http.StatusBadRequest, fmt.Sprintf("id %q in the body differs from the path's %q", bodyID, id)))
			return
		}
		now := s.opts.Now().UTC()
		rm, err := s.store.UpdateRoom(r.Context(), id, p, now)
		if replace && errors.Is(err, ErrNotFound) && reading.ValidID(id) {
			// PUT creates the room at that id when it does not exist yet.
			created, cerr := s.store.CreateRoom(r.Context(), newRoom(id, p, now))
			if cerr == nil {
				w.Header().Set("Location", "/rooms/"+id)
				httpx.JSON(w, http.StatusCreated, created)
				return
			}
			if !errors.Is(cerr, ErrConflict) { // a concurrent create: update it below
				httpx.Error(w, r, s.log, fmt.Errorf("create room %s: %w", id, cerr))
				return
			}
			rm, err = s.store.UpdateRoom(r.Context(), id, p, now)
		}
		if err != nil {
			httpx.Error(w, r, s.log, roomErr(id, err))
			return
		}
		httpx.JSON(w, http.StatusOK, rm)
	}
}

func (s *Service) handleDelete() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if err := s.store.DeleteRoom(r.Context(), id); err != nil {
			httpx.Error(w, r, s.log, roomErr(id, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Service) handleAssign() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, sensorID := chi.URLParam(r, "id"), chi.URLParam(r, "sensor_id")
		if !reading.ValidID(sensorID) {
			httpx.Error(w, r, s.log, httpx.NewProblem(http.StatusBadRequest, "sensor_id: 1-128 characters of A-Z a-z 0-9 . _ : -"))
			return
		}
		if err := s.store.AssignSensor(r.Context(), id, sensorID, s.opts.Now().UTC()); err != nil {
			httpx.Error(w, r, s.log, roomErr(id, err))
			return
		}
		rm, err := s.store.Room(r.Context(), id)
		if err != nil {
			httpx.Error(w, r, s.log, roomErr(id, err))
			return
		}
		httpx.JSON(w, http.StatusOK, rm)
	}
}

func (s *Service) handleMetrics() http.HandlerFunc {
	return httpx.HandleGet(s.log, func(ctx context.Context, id string) (Metrics, error) {
		m, err := s.metrics(ctx, id)
		return m, roomErr(id, err)
	})
}

// BucketStats is one bucket of GET /rooms/{id}/history.
type BucketStats struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Min   float64   `json:"min"`
	Mean  float64   `json:"mean"`
	Max   float64   `json:"max"`
	Count int64     `json:"count"`
}

type historyPage struct {
	RoomID     string        `json:"room_id"`
	Type       string        `json:"type"`
	Bucket     string        `json:"bucket"`
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Buckets    []BucketStats `json:"buckets"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// DefaultHistorySpan is the span of a history request without from.
const DefaultHistorySpan = 24 * time.Hour

func (s *Service) handleHistory() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		q := httpx.NewQuery(r)
		typ := q.Type("type", true)
		name, bucket := q.Bucket()
		to, from := q.Time("to"), q.Time("from")
		limit := q.Limit()
		cursor, err := decodeCursor(q.String("cursor"))
		q.Check(err != nil, "cursor", "not a cursor this service gave out")
		var after int64
		if cursor != "" {
			after, err = strconv.ParseInt(cursor, 10, 64)
			q.Check(err != nil, "cursor", "not a cursor this service gave out")
		}
		if to.IsZero() {
			to = s.opts.Now().UTC()
		}
		if from.IsZero() {
			from = to.Add(-DefaultHistorySpan)
		}
		q.Check(!from.Before(to), "to", "must be after from")
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		from = alignDown(from, bucket)
		start := from
		if after != 0 {
			start = time.UnixMilli(after).UTC()
		}
		if _, err := s.store.Room(r.Context(), id); err != nil {
			httpx.Error(w, r, s.log, roomErr(id, err))
			return
		}
		stats, err := s.store.History(r.Context(), HistoryQuery{RoomID: id, Type: typ, From: start, To: to, Bucket: bucket, Limit: limit + 1})
		if err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("history of %s: %w", id, err))
			return
		}
		stats, next := paging.Cut(stats, limit, func(last Stat) string {
			return encodeCursor(strconv.FormatInt(last.Start.Add(bucket).UnixMilli(), 10))
		})
		page := historyPage{RoomID: id, Type: typ, Bucket: name, From: from, To: to.UTC(), NextCursor: next, Buckets: make([]BucketStats, 0, len(stats))}
		for _, st := range stats {
			page.Buckets = append(page.Buckets, BucketStats{
				Start: st.Start.UTC(), End: st.Start.Add(bucket).UTC(),
				Min: st.Min, Mean: reading.Mean(st.Sum, st.Count, st.Min, st.Max), Max: st.Max, Count: st.Count,
			})
		}
		httpx.JSON(w, http.StatusOK, page)
	}
}

// alignDown rounds t down to a multiple of d since the Unix epoch.
func alignDown(t time.Time, d time.Duration) time.Time {
	ms, dm := t.UnixMilli(), d.Milliseconds()
	return time.UnixMilli(ms - ((ms%dm)+dm)%dm).UTC()
}

func encodeCursor(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeCursor(c string) (string, error) {
	if c == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) == 0 {
		return "", errors.New("bad cursor")
	}
	return string(b), nil
}

// parseRoom reads a room body: a JSON object of name, floor, building, capacity,
// area_m2 (and id). With all set, every field absent from the body is Set to
// null (PUT and POST); otherwise only the fields present are (PATCH). Other
// fields (sensor_count, created_at…) are ignored. Every bad field is reported.
func parseRoom(body []byte, all, withID bool) (id string, p Patch, err error) {
	var raw map[string]json.RawMessage
	if err := httpx.Unmarshal(body, &raw); err != nil {
		return "", p, err
	}
	if raw == nil {
		return "", p, httpx.NewProblem(http.StatusBadRequest, "body must be a JSON object")
	}
	var probs []httpx.FieldProblem
	bad := func(field, reason string) { probs = append(probs, httpx.FieldProblem{Field: field, Reason: reason}) }
	if v, ok := raw["id"]; ok {
		if err := json.Unmarshal(v, &id); err != nil || !reading.ValidID(id) {
			bad("id", "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
		}
	}
	text := func(name string, f *Field[string]) {
		v, ok := raw[name]
		f.Set = ok || all
		if !ok || string(v) == "null" {
			return
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			bad(name, "must be a string or null")
			return
		}
		if len(s) > MaxTextLen {
			bad(name, fmt.Sprintf("longer than %d characters", MaxTextLen))
			return
		}
		if s != "" {
			f.Value = &s
		}
	}
	integer := func(name string, f *Field[int], lo, hi int) {
		v, ok := raw[name]
		f.Set = ok || all
		if !ok || string(v) == "null" {
			return
		}
		var x float64
		if err := json.Unmarshal(v, &x); err != nil || x != math.Trunc(x) || x < float64(lo) || x > float64(hi) {
			bad(name, fmt.Sprintf("must be an integer from %d to %d, or null", lo, hi))
			return
		}
		n := int(x)
		f.Value = &n
	}
	text("name", &p.Name)
	text("building", &p.Building)
	integer("floor", &p.Floor, MinFloor, MaxFloor)
	integer("capacity", &p.Capacity, 0, MaxCapacity)
	if v, ok := raw["area_m2"]; ok || all {
		p.AreaM2.Set = true
		if ok && string(v) != "null" {
			var x float64
			if err := json.Unmarshal(v, &x); err != nil || !(x > 0) || x > MaxAreaM2 {
				bad("area_m2", fmt.Sprintf("must be a number above 0 and at most %d, or null", MaxAreaM2))
			} else {
				p.AreaM2.Value = &x
			}
		}
	}
	if len(probs) > 0 {
		pr := httpx.NewProblem(http.StatusBadRequest, "the room has invalid fields")
		pr.Errors = probs
		return "", p, pr
	}
	return id, p, nil
}
