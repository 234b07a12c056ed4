package sensor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/reading"
)

// MaxBatchIDLen bounds a batch id (body batch_id or Idempotency-Key).
const MaxBatchIDLen = 128

// ingestBody is every accepted shape of POST /sensors/data that starts with '{': a
// batch object (it has "readings") or a single reading.
type ingestBody struct {
	BatchID  reading.Text     `json:"batch_id"`
	Readings *[]reading.Input `json:"readings"`
	reading.Input
}

func (s *Service) handleIngest() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := httpx.ReadBody(w, r, s.opts.MaxBody)
		if err != nil {
			s.batches.WithLabelValues("failed").Inc()
			httpx.Error(w, r, s.log, err)
			return
		}
		batchID, site, inputs, err := parseIngest(body, r.Header.Get("Idempotency-Key"))
		if err != nil {
			s.batches.WithLabelValues("failed").Inc()
			httpx.Error(w, r, s.log, err)
			return
		}
		principal, err := principalOf(r)
		if err != nil {
			s.batches.WithLabelValues("failed").Inc()
			httpx.Error(w, r, s.log, err)
			return
		}
		now := s.opts.Now().UTC()
		b := Batch{ID: batchID, Principal: principal, Fingerprint: Fingerprint(site, inputs), Site: site, ReceivedAt: now,
			Readings: make([]reading.Reading, 0, len(inputs)), Rejected: []Rejection{}}
		for i := range inputs {
			rd, err := inputs[i].Reading(now)
			if err != nil {
				b.Rejected = append(b.Rejected, Rejection{Index: i, Reason: err.Error()})
				continue
			}
			if rd.Site == "" {
				rd.Site = site
			}
			b.Readings = append(b.Readings, rd)
		}
		out, err := s.store.Ingest(r.Context(), b)
		if errors.Is(err, ErrBatchConflict) {
			s.batches.WithLabelValues("conflict").Inc()
			s.log.WarnContext(r.Context(), "batch id reused for a different request", "principal", principal, "batch_id", batchID,
				"request_id", httpx.RequestID(r.Context()))
			httpx.Error(w, r, s.log, conflictProblem(batchID))
			return
		}
		if err != nil {
			s.batches.WithLabelValues("failed").Inc()
			httpx.Error(w, r, s.log, fmt.Errorf("ingest batch %s: %w", batchID, err))
			return
		}
		// Count what the store did before publishing: the readings are on disk
		// whatever happens to the publish or to this request.
		if out.Replayed {
			s.batches.WithLabelValues("replayed").Inc()
		} else {
			s.batches.WithLabelValues("new").Inc()
			s.ingested.WithLabelValues("accepted").Add(float64(out.Result.Accepted))
			s.ingested.WithLabelValues("duplicate").Add(float64(out.Result.Duplicates))
			s.ingested.WithLabelValues("rejected").Add(float64(len(out.Result.Rejected)))
			s.live.seen(b.Readings)
		}
		if out.Pending != nil {
			// The readings are stored and the answer recorded; if the event cannot be
			// published now, the client's retry (same batch id) or the relay sends it.
			if err := s.publish(r.Context(), *out.Pending); err != nil {
				httpx.Error(w, r, s.log, fmt.Errorf("publish batch %s: %w", batchID, err))
				return
			}
		}
		if out.Result.Rejected == nil {
			out.Result.Rejected = []Rejection{}
		}
		httpx.JSON(w, http.StatusOK, out.Result)
	}
}

// principalOf is the caller of r: the API key the gateway names in
// PrincipalHeader, or DirectPrincipal when the request did not come through the
// gateway.
func principalOf(r *http.Request) (string, error) {
	name := r.Header.Get(PrincipalHeader)
	if name == "" {
		return DirectPrincipal, nil
	}
	if len(name) > MaxKeyNameLen {
		return "", httpx.NewProblem(http.StatusBadRequest, fmt.Sprintf("%s: at most %d bytes", PrincipalHeader, MaxKeyNameLen))
	}
	return KeyPrincipal(name), nil
}

// conflictProblem is the answer to a batch id its caller already used for a
// different request: 422, as the IETF Idempotency-Key draft has it.
func conflictProblem(batchID string) *httpx.Problem {
	p := httpx.NewProblem(http.StatusUnprocessableEntity, fmt.Sprintf(
		"batch id %q was already used by this caller for a different request; nothing was stored: "+
			"resend the first request unchanged, or send these readings under a new batch id", batchID))
	p.Errors = []httpx.FieldProblem{{Field: "batch_id", Reason: "already used for a different request"}}
	return p
}

// parseIngest reads the three body forms: a batch object, a single reading object, or
// an array of readings. The Idempotency-Key header, when given, is the batch id.
func parseIngest(body []byte, key string) (batchID, site string, inputs []reading.Input, err error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return "", "", nil, httpx.NewProblem(http.StatusBadRequest, "empty body: send a batch object, a reading object or an array of readings")
	}
	switch trimmed[0] {
	case '[':
		// The hand-written decoder gives what encoding/json would, faster; it
		// declines what it does not handle, and encoding/json decodes that.
		var ok bool
		if inputs, ok = reading.DecodeInputs(body); !ok {
			if err := httpx.Unmarshal(body, &inputs); err != nil {
				return "", "", nil, err
			}
		}
	case '{':
		bi, ok := reading.DecodeBatch(body)
		ib := ingestBody{BatchID: bi.BatchID, Readings: bi.Readings, Input: bi.Input}
		if !ok {
			ib = ingestBody{}
			if err := httpx.Unmarshal(body, &ib); err != nil {
				return "", "", nil, err
			}
		}
		if ib.BatchID.BadType != "" {
			return "", "", nil, httpx.NewProblem(http.StatusBadRequest, "batch_id: must be a string, got "+ib.BatchID.BadType)
		}
		batchID = ib.BatchID.S
		if ib.Readings != nil {
			inputs = *ib.Readings
			if ib.Site.BadType != "" {
				return "", "", nil, httpx.NewProblem(http.StatusBadRequest, "site: must be a string, got "+ib.Site.BadType)
			}
			site = ib.Site.S
			if site != "" && !reading.ValidID(site) {
				return "", "", nil, httpx.NewProblem(http.StatusBadRequest, "site: 1-128 characters of A-Z a-z 0-9 . _ : -")
			}
		} else {
			inputs = []reading.Input{ib.Input}
		}
	default:
		return "", "", nil, httpx.NewProblem(http.StatusBadRequest, "body must be a JSON object or array")
	}
	if key != "" {
		batchID = key
	}
	if len(batchID) > MaxBatchIDLen {
		return "", "", nil, httpx.NewProblem(http.StatusBadRequest, fmt.Sprintf("batch id longer than %d characters", MaxBatchIDLen))
	}
	if batchID == "" {
		batchID = uuid.NewString()
	}
	return batchID, site, inputs, nil
}

type readingsPage struct {
	SensorID   string            `json:"sensor_id"`
	Readings   []reading.Reading `json:"readings"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

func (s *Service) handleReadings() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		q := httpx.NewQuery(r)
		rq := ReadingQuery{
			SensorID: id,
			Type:     q.Type("type", false),
			From:     q.Time("from"),
			To:       q.Time("to"),
			Desc:     q.Enum("order", "asc", "asc", "desc") == "desc",
			Limit:    q.Limit(),
			Cursor:   q.String("cursor"),
		}
		q.Check(!rq.From.IsZero() && !rq.To.IsZero() && !rq.From.Before(rq.To), "to", "must be after from")
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		if _, err := s.store.Sensor(r.Context(), id); err != nil {
			httpx.Error(w, r, s.log, s.sensorErr(id, err))
			return
		}
		rs, next, err := s.store.Readings(r.Context(), rq)
		if err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("readings of %s: %w", id, err))
			return
		}
		if rs == nil {
			rs = []reading.Reading{}
		}
		httpx.JSON(w, http.StatusOK, readingsPage{SensorID: id, Readings: rs, NextCursor: next})
	}
}

func (s *Service) sensorErr(id string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return httpx.NewProblem(http.StatusNotFound, fmt.Sprintf("sensor %q is not registered", id))
	}
	return fmt.Errorf("sensor %s: %w", id, err)
}

// status fills in a sensor's online/offline status from its last_seen.
func (s *Service) status(sn *Sensor, now time.Time) {
	sn.Status = StatusOffline
	if !sn.LastSeen.Before(now.Add(-s.opts.OfflineAfter)) {
		sn.Status = StatusOnline
	}
	if sn.Types == nil {
		sn.Types = []string{}
	}
	if sn.LastValues == nil {
		sn.LastValues = map[string]LastValue{}
	}
}

func (s *Service) handleSensor() http.HandlerFunc {
	return httpx.HandleGet(s.log, func(ctx context.Context, id string) (Sensor, error) {
		sn, err := s.store.Sensor(ctx, id)
		if err != nil {
			return sn, s.sensorErr(id, err)
		}
		s.status(&sn, s.opts.Now())
		return sn, nil
	})
}

func (s *Service) handleSensors() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := httpx.NewQuery(r)
		now := s.opts.Now()
		sq := SensorQuery{
			RoomID:      q.ID("room_id"),
			Type:        q.Type("type", false),
			Status:      q.Enum("status", "", StatusOnline, StatusOffline),
			OnlineSince: now.Add(-s.opts.OfflineAfter),
			Limit:       q.Limit(),
			Cursor:      q.String("cursor"),
		}
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		ss, next, err := s.store.Sensors(r.Context(), sq)
		if err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("list sensors: %w", err))
			return
		}
		for i := range ss {
			s.status(&ss[i], now)
		}
		httpx.List(w, "sensors", ss, next)
	}
}
