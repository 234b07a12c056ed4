package sqlitestore

import (
	"context"
	"time"

	"github.com/atrium-iot/atrium/services/analytics"
)

// SummaryFigures returns the summary's figures for now. SQLite answers in
// process, so the figures are the store's own queries run one after another.
func (s *Store) SummaryFigures(ctx context.Context, now time.Time) (analytics.Figures, error) {
	hourAgo, dayAgo, end := analytics.SummaryWindow(now)
	var f analytics.Figures
	var err error
	if f.LastHour, err = s.CountReadings(ctx, hourAgo, end); err != nil {
		return f, err
	}
	if f.LastDay, err = s.CountReadings(ctx, dayAgo, end); err != nil {
		return f, err
	}
	if f.Types, err = s.TypeStats(ctx, hourAgo, end); err != nil {
		return f, err
	}
	if f.Rooms, err = s.Rooms(ctx); err != nil {
		return f, err
	}
	if f.Latest, err = s.Latest(ctx, hourAgo); err != nil {
		return f, err
	}
	if f.ActiveAlerts, err = s.ActiveAlerts(ctx); err != nil {
		return f, err
	}
	err = s.db.Readers.QueryRowContext(ctx, `SELECT count(*) FROM alerts WHERE raised_at >= ? AND raised_at < ?`, ms(dayAgo), ms(end)).Scan(&f.AlertsLastDay)
	return f, wrapErr("analytics sqlitestore: alerts of the last day", err)
}
