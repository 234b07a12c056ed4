package sqlitestore

import (
	"context"
	"fmt"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/rowscan"
	"github.com/atrium-iot/atrium/services/sensor"
)

// MarkStatus records the status published for a sensor; see sensor.Store.
func (s *Store) MarkStatus(ctx context.Context, m sensor.StatusMark) error {
	if m.SensorID == "" {
		return fmt.Errorf("sqlitestore: mark status: %w: empty sensor id", apperr.ErrInvalid)
	}
	if _, err := s.write(ctx, &writeReq{mark: &m}, false); err != nil {
		return wrapErr("sqlitestore: mark status of "+m.SensorID, err)
	}
	return nil
}

// StatusMarks lists every sensor's status mark; see sensor.Store.
func (s *Store) StatusMarks(ctx context.Context) ([]sensor.StatusMark, error) {
	if err := s.db.Check("sqlitestore: status marks"); err != nil {
		return nil, err
	}
	rows, err := s.db.Readers.QueryContext(ctx, "SELECT sensor_id, status, at_ms FROM sensor_status ORDER BY sensor_id")
	if err != nil {
		return nil, wrapErr("sqlitestore: status marks", err)
	}
	ms, err := rowscan.Append([]sensor.StatusMark{}, rows, func(r rowscan.Row) (sensor.StatusMark, error) {
		var m sensor.StatusMark
		var at int64
		err := r.Scan(&m.SensorID, &m.Status, &at)
		m.At = time.UnixMilli(at).UTC()
		return m, err
	})
	if err != nil {
		return nil, wrapErr("sqlitestore: status marks", err)
	}
	return ms, nil
}
