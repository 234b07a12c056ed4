package analytics

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ReportCursor is the opaque cursor of a report list page: the creation time and id
// of the last report of the page. Every adapter uses it.
func ReportCursor(created time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created.UnixMilli(), 10) + "|" + id))
}

// ParseReportCursor reads a ReportCursor; anything else is ErrBadCursor.
func ParseReportCursor(s string) (created time.Time, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: cursor %q", ErrBadCursor, s)
	}
	ms, id, ok := strings.Cut(string(b), "|")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return time.Time{}, "", fmt.Errorf("%w: cursor %q", ErrBadCursor, s)
	}
	return time.UnixMilli(n).UTC(), id, nil
}

// Minute is t's Unix minute (rounded down).
func Minute(t time.Time) int64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return -((-ms + 59999) / 60000)
	}
	return ms / 60000
}
