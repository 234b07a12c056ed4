package notification

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/atrium-iot/atrium/internal/httpx"
	"github.com/atrium-iot/atrium/internal/reading"
)

func (s *Service) handleRules() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := httpx.NewQuery(r)
		limit := q.Limit()
		after := ""
		if c := q.String("cursor"); c != "" {
			b, err := base64.RawURLEncoding.DecodeString(c)
			q.Check(err != nil || len(b) == 0, "cursor", "malformed cursor")
			after = string(b)
		}
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		rules, err := s.store.Rules(r.Context())
		if err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("list rules: %w", err))
			return
		}
		var page []Rule
		next := ""
		for _, rl := range rules {
			if after != "" && rl.ID <= after {
				continue
			}
			if len(page) == limit {
				next = base64.RawURLEncoding.EncodeToString([]byte(page[limit-1].ID))
				break
			}
			page = append(page, rl.Public())
		}
		httpx.List(w, "rules", page, next)
	}
}

func (s *Service) handleRule() http.HandlerFunc {
	return httpx.HandleGet(s.log, func(ctx context.Context, id string) (Rule, error) {
		rl, err := s.store.Rule(ctx, id)
		return rl.Public(), s.notFound("rule", id, err)
	})
}

// decodeRule reads and checks a rule body.
func (s *Service) decodeRule(w http.ResponseWriter, r *http.Request) (Rule, error) {
	rl, err := httpx.Decode[Rule](w, r, s.opts.MaxBody)
	if err != nil {
		return rl, err
	}
	rl.Normalize()
	if probs := rl.Valid(); len(probs) > 0 {
		p := httpx.NewProblem(http.StatusBadRequest, "the rule has invalid fields")
		p.Errors = probs
		return rl, p
	}
	return rl, nil
}

func (s *Service) handleCreateRule() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rl, err := s.decodeRule(w, r)
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		if rl.ID == "" {
			rl.ID = newID()
		}
		rl.CreatedAt, rl.UpdatedAt = s.now(), s.now()
		if err := s.store.CreateRule(r.Context(), rl); err != nil {
			if errors.Is(err, ErrConflict) {
				err = httpx.NewProblem(http.StatusConflict, fmt.Sprintf("rule %q exists; PUT /rules/%s replaces it", rl.ID, rl.ID))
			}
			httpx.Error(w, r, s.log, err)
			return
		}
		if err := s.rulesChanged(r.Context(), rl.ID, "rule created"); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		w.Header().Set("Location", "/rules/"+url.PathEscape(rl.ID))
		httpx.JSON(w, http.StatusCreated, rl.Public())
	}
}

func (s *Service) handleUpdateRule() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		rl, err := s.decodeRule(w, r)
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		if rl.ID != "" && rl.ID != id {
			httpx.Error(w, r, s.log, httpx.NewProblem(http.StatusBadRequest, fmt.Sprintf("body id %q differs from the path's %q", rl.ID, id)))
			return
		}
		old, err := s.store.Rule(r.Context(), id)
		if err != nil {
			httpx.Error(w, r, s.log, s.notFound("rule", id, err))
			return
		}
		rl.ID, rl.CreatedAt, rl.UpdatedAt = id, old.CreatedAt, s.now()
		if rl.WebhookSecret == old.Public().WebhookSecret && old.WebhookSecret != "" {
			rl.WebhookSecret = old.WebhookSecret // a GET-edit-PUT round trip keeps the secret
		}
		if err := s.ruleStored(r.Context(), id, "rule changed", s.store.UpdateRule(r.Context(), rl)); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		httpx.JSON(w, http.StatusOK, rl.Public())
	}
}

func (s *Service) handleDeleteRule() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if err := s.ruleStored(r.Context(), id, "rule deleted", s.store.DeleteRule(r.Context(), id)); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// ruleStored follows a change or deletion of rule id in the store, which
// answered err: a failed one is the error (a 404 when the rule does not exist),
// else the rules are reloaded (rulesChanged).
func (s *Service) ruleStored(ctx context.Context, id, reason string, err error) error {
	if err != nil {
		return s.notFound("rule", id, err)
	}
	return s.rulesChanged(ctx, id, reason)
}

// rulesChanged resolves the open alerts of a created, changed or deleted rule and
// installs the store's rules in the engines: a changed rule starts afresh.
func (s *Service) rulesChanged(ctx context.Context, id, reason string) error {
	rules, err := s.store.Rules(ctx)
	if err != nil {
		return fmt.Errorf("reload rules: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	trans := append(s.engine.Forget(id), s.tracker.forget(id, s.now())...)
	for i := range trans {
		trans[i].reason = reason
	}
	err = s.apply(ctx, trans)
	s.setRules(rules)
	if err != nil {
		return fmt.Errorf("resolve alerts of rule %s: %w", id, err)
	}
	return nil
}

// notFound words a store's error about the thing id: a 404 when it does not
// exist, nil when there is no error.
func (s *Service) notFound(what, id string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) {
		return httpx.NewProblem(http.StatusNotFound, fmt.Sprintf("%s %q does not exist", what, id))
	}
	return fmt.Errorf("%s %s: %w", what, id, err)
}

func (s *Service) handleAlerts() http.HandlerFunc {
	return httpx.HandleList(s.log, "alerts", func(q *httpx.Query) AlertQuery {
		return AlertQuery{
			State:    q.Enum("state", "", StateActive, StateAcknowledged, StateResolved),
			Severity: q.Enum("severity", "", Severities...),
			RuleID:   q.String("rule_id"),
			Limit:    q.Limit(),
			RoomID:   q.ID("room_id"),
			Cursor:   q.String("cursor"),
		}
	}, s.store.Alerts)
}

func (s *Service) handleAlert() http.HandlerFunc {
	return httpx.HandleGet(s.log, func(ctx context.Context, id string) (Alert, error) {
		a, err := s.store.Alert(ctx, id)
		return a, s.notFound("alert", id, err)
	})
}

func (s *Service) handleAck() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		a, err := s.store.Alert(r.Context(), id)
		if err != nil {
			httpx.Error(w, r, s.log, s.notFound("alert", id, err))
			return
		}
		now := s.now()
		ev := s.alertEvent(EventAlertAcknowledged, a, now, fmt.Sprintf("alert %s acknowledged", id))
		got, changed, err := s.store.AckAlert(r.Context(), id, now, ev)
		switch {
		case errors.Is(err, ErrConflict):
			httpx.Error(w, r, s.log, httpx.NewProblem(http.StatusConflict, fmt.Sprintf("alert %q is resolved; only open alerts can be acknowledged", id)))
			return
		case err != nil:
			httpx.Error(w, r, s.log, s.notFound("alert", id, err))
			return
		}
		if changed {
			s.alerts.WithLabelValues("acknowledged").Inc()
			s.hub.Broadcast(Push{Kind: EventAlertAcknowledged, Severity: got.Severity, RoomID: got.RoomID, Time: now, Alert: &got})
		}
		httpx.JSON(w, http.StatusOK, got)
	}
}

func (s *Service) handleEvents() http.HandlerFunc {
	return httpx.HandleList(s.log, "events", func(q *httpx.Query) EventQuery {
		return EventQuery{
			Type:     q.Enum("type", "", EventTypes...),
			Severity: q.Enum("severity", "", Severities...),
			Since:    q.Time("since"),
			Limit:    q.Limit(),
			RoomID:   q.ID("room_id"),
			Cursor:   q.String("cursor"),
		}
	}, s.store.Events)
}

// Notification channels.
const (
	ChannelWebSocket = "websocket"
	ChannelWebhook   = "webhook"
)

// Notification is a message sent by POST /notifications/send.
type Notification struct {
	ID            string    `json:"id"`
	Severity      string    `json:"severity"`
	Title         string    `json:"title"`
	Message       string    `json:"message"`
	RoomID        string    `json:"room_id,omitempty"`
	Channels      []string  `json:"channels"`
	WebhookURL    string    `json:"webhook_url,omitempty"`
	WebhookSecret string    `json:"webhook_secret,omitempty"`
	Time          time.Time `json:"time"`
}

// Limits of a notification's text.
const (
	MaxTitle   = 200
	MaxMessage = 8192
)

// Valid checks a notification request.
func (n Notification) Valid() []httpx.FieldProblem {
	var ps []httpx.FieldProblem
	add := func(field, reason string) { ps = append(ps, httpx.FieldProblem{Field: field, Reason: reason}) }
	if SeverityRank(n.Severity) == 0 {
		add("severity", "must be one of info, warning, critical")
	}
	if n.Title == "" || len(n.Title) > MaxTitle {
		add("title", fmt.Sprintf("is required, at most %d bytes", MaxTitle))
	}
	if len(n.Message) > MaxMessage {
		add("message", fmt.Sprintf("at most %d bytes", MaxMessage))
	}
	if n.RoomID != "" && !reading.ValidID(n.RoomID) {
		add("room_id", "1-128 characters of A-Z a-z 0-9 . _ : -")
	}
	if len(n.Channels) == 0 {
		add("channels", `name at least one of "websocket", "webhook"`)
	}
	for _, c := range n.Channels {
		if c != ChannelWebSocket && c != ChannelWebhook {
			add("channels", fmt.Sprintf("unknown channel %q: want websocket or webhook", c))
		}
	}
	if slices.Contains(n.Channels, ChannelWebhook) {
		u, err := url.Parse(n.WebhookURL)
		if n.WebhookURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add("webhook_url", "the webhook channel needs an absolute http or https webhook_url")
		}
	}
	return ps
}

func (s *Service) handleSend() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n, err := httpx.DecodeValid[Notification](w, r, s.opts.MaxBody)
		if err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		n.Channels = slices.Compact(slices.Sorted(slices.Values(n.Channels)))
		n.ID, n.Time = newID(), s.now()
		secret := n.WebhookSecret
		n.WebhookSecret = ""
		data, _ := json.Marshal(n)
		ev := Event{ID: newID(), Type: EventNotificationSent, Severity: n.Severity, RoomID: n.RoomID,
			Message: n.Title, Data: data, Time: n.Time, RecordedAt: n.Time}
		if err := s.store.AppendEvent(r.Context(), ev); err != nil {
			httpx.Error(w, r, s.log, fmt.Errorf("record notification: %w", err))
			return
		}
		p := Push{Kind: "notification", Severity: n.Severity, RoomID: n.RoomID, Time: n.Time, Notification: &n}
		if slices.Contains(n.Channels, ChannelWebSocket) {
			s.hub.Broadcast(p)
		}
		if slices.Contains(n.Channels, ChannelWebhook) {
			s.sendWebhook(n.WebhookURL, secret, "notification", p, Event{Severity: n.Severity, RoomID: n.RoomID})
		}
		httpx.JSON(w, http.StatusAccepted, map[string]string{"id": n.ID})
	}
}

func (s *Service) handleWebSocket() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := httpx.NewQuery(r)
		sev := q.Enum("severity", "", Severities...)
		room := q.ID("room_id")
		if err := q.Err(); err != nil {
			httpx.Error(w, r, s.log, err)
			return
		}
		s.hub.Serve(w, r, room, SeverityRank(sev))
	}
}
