package cloud

import (
	"context"
	"fmt"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/mongostore"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// addSensor runs the sensor service (:8001) on its store: SQLite under an
// sqlite:// -store (the default), MongoDB database sensor_db under mongodb://….
func (a *App) addSensor(ctx context.Context) error {
	log := a.log.With("service", "sensor")
	var st sensor.Store
	if mongox.IsURL(a.cfg.Store) {
		ms, err := mongostore.Open(ctx, a.cfg.Store, mongostore.Options{Logger: log, Retention: a.cfg.Retention, RollupRetention: a.cfg.RollupRetention})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = ms
	} else {
		path, err := sqlitePath(a.cfg.Store, "sensor")
		if err != nil {
			return err
		}
		sq, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log, Retention: a.cfg.Retention})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = sq
	}
	a.closers = append(a.closers, st.Close)
	svc := sensor.New(st, a.bus, log, sensor.Options{MaxBody: a.cfg.MaxBody, OfflineAfter: a.cfg.OfflineAfter})
	return a.serve("sensor", a.cfg.SensorAddr, svc.Handler(), log, svc.Run)
}
