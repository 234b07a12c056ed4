package cloud

import (
	"context"
	"fmt"

	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// addSensor runs the sensor service (:8001) on its SQLite store.
func (a *App) addSensor(ctx context.Context) error {
	path, err := sqlitePath(a.cfg.Store, "sensor")
	if err != nil {
		return err
	}
	log := a.log.With("service", "sensor")
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.closers = append(a.closers, st.Close)
	svc := sensor.New(st, a.bus, log, sensor.Options{MaxBody: a.cfg.MaxBody, OfflineAfter: a.cfg.OfflineAfter})
	return a.serve("sensor", a.cfg.SensorAddr, svc.Handler(), log, svc.Run)
}
