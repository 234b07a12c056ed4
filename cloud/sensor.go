package cloud

import (
	"context"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/sensor"
	"github.com/atrium-iot/atrium/services/sensor/mongostore"
	"github.com/atrium-iot/atrium/services/sensor/sqlitestore"
)

// addSensor runs the sensor service (:8001) on its store: SQLite under an
// sqlite:// -store (the default), MongoDB database sensor_db under mongodb://….
func (a *App) addSensor(ctx context.Context) error {
	log := a.log.With("service", "sensor")
	st, err := openStore(a, "-store", a.cfg.Store, "sensor", mongox.IsURL(a.cfg.Store),
		func(url string) (sensor.Store, error) {
			return mongostore.Open(ctx, url, mongostore.Options{Logger: log, Tiered: a.cfg.keep()})
		},
		func(path string) (sensor.Store, error) {
			return sqlitestore.Open(ctx, path, sqlitestore.Options{Settings: sqlitex.Settings{Logger: log}, Policy: a.cfg.keep().Policy})
		})
	if err != nil {
		return err
	}
	svc := sensor.New(st, a.bus, log, sensor.Options{MaxBody: a.cfg.MaxBody, OfflineAfter: a.cfg.OfflineAfter})
	return a.serve("sensor", a.cfg.SensorAddr, svc.Handler(), log, svc.Run)
}
