package notification

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Webhook headers. The signature is HMAC-SHA256 over "<timestamp>.<body>" with the
// webhook's secret, so a captured request cannot be replayed with a new timestamp.
const (
	HeaderSignature = "X-Atrium-Signature" // "sha256=<hex>"
	HeaderTimestamp = "X-Atrium-Timestamp" // Unix seconds
	HeaderEvent     = "X-Atrium-Event"     // alert.raised, alert.resolved, notification
	HeaderDelivery  = "X-Atrium-Delivery"  // one id per delivery, the same on every attempt
)

// Sign is the X-Atrium-Signature value of body sent at timestamp ts (Unix seconds).
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a webhook request's signature and that its timestamp is
// within tolerance of now: what a receiver should do.
func VerifySignature(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	ts := h.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook: missing or malformed timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errors.New("webhook: timestamp outside tolerance")
	}
	if !hmac.Equal([]byte(h.Get(HeaderSignature)), []byte(Sign(secret, ts, body))) {
		return errors.New("webhook: bad signature")
	}
	return nil
}

// webhookJob is one delivery: a JSON body to POST to a URL until it succeeds or the
// attempts run out.
type webhookJob struct {
	id     string
	url    string
	secret string
	event  string
	body   []byte
	// ref says what the delivery is about, copied into its attempt events.
	ref Event
}

// attempt is the outcome of one POST of a delivery.
type attempt struct {
	Delivery string `json:"delivery"`
	URL      string `json:"url"`
	Event    string `json:"event"`
	Attempt  int    `json:"attempt"`
	Status   int    `json:"status,omitempty"`
	Error    string `json:"error,omitempty"`
	OK       bool   `json:"ok"`
	Final    bool   `json:"final"`
}

// webhooks delivers jobs from a bounded queue with a few workers, retrying failures
// (network errors, 408, 429, 5xx) with exponential backoff.
type webhooks struct {
	client   *http.Client
	queue    chan webhookJob
	attempts int
	backoff  time.Duration
	now      func() time.Time
	log      *slog.Logger
	record   func(ctx context.Context, j webhookJob, a attempt)
}

// enqueue queues a job; false when the queue is full.
func (w *webhooks) enqueue(j webhookJob) bool {
	select {
	case w.queue <- j:
		return true
	default:
		return false
	}
}

// run is one worker; it returns when ctx ends.
func (w *webhooks) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-w.queue:
			w.deliver(ctx, j)
		}
	}
}

func (w *webhooks) deliver(ctx context.Context, j webhookJob) {
	wait := w.backoff
	for n := 1; ; n++ {
		a := w.post(ctx, j, n)
		a.Final = a.OK || n >= w.attempts || !a.retryable()
		w.record(ctx, j, a)
		if a.Final {
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, time.Minute)
	}
}

func (a attempt) retryable() bool {
	return a.Status == 0 || a.Status == http.StatusRequestTimeout || a.Status == http.StatusTooManyRequests || a.Status >= 500
}

func (w *webhooks) post(ctx context.Context, j webhookJob, n int) attempt {
	a := attempt{Delivery: j.id, URL: j.url, Event: j.event, Attempt: n}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		a.Error = err.Error()
		a.Status = -1 // not retryable
		return a
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "atrium-notification")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderEvent, j.event)
	req.Header.Set(HeaderDelivery, j.id)
	if j.secret != "" {
		req.Header.Set(HeaderSignature, Sign(j.secret, ts, j.body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		a.Error = strings.TrimSpace(err.Error())
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.Status = resp.StatusCode
	a.OK = resp.StatusCode >= 200 && resp.StatusCode < 300
	if !a.OK {
		a.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	return a
}
