package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/atrium-iot/atrium/internal/httpx"
)

// Sensors is the registry part of the summary: counts from the sensor service.
// Stale is true when the sensor service could not be reached and the counts are
// the last good answer, of AsOf (nil when there never was one).
type Sensors struct {
	Total   int        `json:"total"`
	Online  int        `json:"online"`
	Offline int        `json:"offline"`
	Stale   bool       `json:"stale"`
	AsOf    *time.Time `json:"as_of"`
	rooms   []string
}

// registry asks the sensor service for its registry with timeouts and retries,
// caches the answer for a while and falls back to the last good one.
type registry struct {
	base    string
	client  *http.Client
	tries   int
	backoff time.Duration
	ttl     time.Duration
	now     func() time.Time

	mu      sync.Mutex // serialises refreshes
	last    Sensors
	lastAt  time.Time
	hasLast bool
}

type sensorsPage struct {
	Sensors []struct {
		RoomID string `json:"room_id"`
		Status string `json:"status"`
	} `json:"sensors"`
	NextCursor string `json:"next_cursor"`
}

// errPermanent marks an answer a retry will not change.
var errPermanent = errors.New("permanent")

// get returns the registry counts: cached while fresh, else fetched; when the fetch
// fails, the last good answer marked stale.
func (r *registry) get(ctx context.Context) (Sensors, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if r.hasLast && now.Sub(r.lastAt) < r.ttl {
		return r.last, nil
	}
	s, err := r.fetch(ctx)
	if err != nil {
		if r.hasLast {
			st := r.last
			st.Stale = true
			return st, err
		}
		return Sensors{Stale: true}, err
	}
	asOf := now.UTC()
	s.AsOf = &asOf
	r.last, r.lastAt, r.hasLast = s, now, true
	return s, nil
}

func (r *registry) fetch(ctx context.Context) (Sensors, error) {
	var s Sensors
	rooms := map[string]struct{}{}
	cursor := ""
	for page := 0; page < 10000; page++ {
		q := url.Values{"limit": {"1000"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p sensorsPage
		if err := r.getJSON(ctx, r.base+"/sensors?"+q.Encode(), &p); err != nil {
			return s, err
		}
		for _, sn := range p.Sensors {
			s.Total++
			if sn.Status == "online" {
				s.Online++
			} else {
				s.Offline++
			}
			if sn.RoomID != "" {
				rooms[sn.RoomID] = struct{}{}
			}
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	for room := range rooms {
		s.rooms = append(s.rooms, room)
	}
	sort.Strings(s.rooms)
	return s, nil
}

// getJSON GETs u into v, retrying network errors and 5xx answers with backoff.
func (r *registry) getJSON(ctx context.Context, u string, v any) error {
	var err error
	wait := r.backoff
	for attempt := 0; attempt < r.tries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(wait):
			}
			wait *= 2
		}
		err = r.getOnce(ctx, u, v)
		if err == nil || errors.Is(err, errPermanent) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (r *registry) getOnce(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("registry: %w: %w", errPermanent, err)
	}
	req.Header.Set("Accept", "application/json")
	if id := httpx.RequestID(ctx); id != "" {
		req.Header.Set(httpx.RequestIDHeader, id)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("registry: get sensors: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("registry: read sensors: %w", err)
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("registry: get sensors: status %d", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("registry: get sensors: %w: status %d", errPermanent, resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("registry: decode sensors: %w: %w", errPermanent, err)
	}
	return nil
}
