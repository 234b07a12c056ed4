package events

import "time"

// Alert is the body of alert.raised and alert.resolved: the alert as the
// notification service's API shows it.
type Alert struct {
	ID             string     `json:"id"`
	RuleID         string     `json:"rule_id"`
	RoomID         string     `json:"room_id"`
	SensorID       string     `json:"sensor_id"`
	Type           string     `json:"type"`
	Severity       string     `json:"severity"`
	State          string     `json:"state"`
	Value          float64    `json:"value"`
	Message        string     `json:"message,omitempty"`
	RaisedAt       time.Time  `json:"raised_at"`
	AcknowledgedAt *time.Time `json:"acknowledged_at"`
	ResolvedAt     *time.Time `json:"resolved_at"`
}

// EncodeAlert returns the body of alert.raised or alert.resolved.
func EncodeAlert(a Alert) ([]byte, error) {
	return encodeJSON(AlertSubject, a)
}

// DecodeAlert reads an alert.raised or alert.resolved body. A body that is not
// one (not JSON, no id, no raised_at) fails with an error wrapping ErrMalformed.
func DecodeAlert(body []byte) (Alert, error) {
	return decodeValid(AlertSubject, body, func(a *Alert) string {
		switch {
		case a.ID == "":
			return "id is required"
		case a.RaisedAt.IsZero():
			return "raised_at is required"
		}
		return ""
	})
}
