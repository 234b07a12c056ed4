package cloud

import (
	"context"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/mongostore"
	"github.com/atrium-iot/atrium/services/notification/sqlitestore"
)

// addNotification runs the notification service (:8004) on its store (events_db):
// SQLite under an sqlite:// -store (the default), MongoDB under mongodb://….
func (a *App) addNotification(ctx context.Context) error {
	log := a.log.With("service", "notification")
	st, err := openStore(a, "-store", a.cfg.Store, "notification", mongox.IsURL(a.cfg.Store),
		func(url string) (notification.Store, error) {
			return mongostore.Open(ctx, url, mongostore.Options{Logger: log})
		},
		func(path string) (notification.Store, error) {
			return sqlitestore.Open(ctx, path, sqlitestore.Options{Settings: sqlitex.Settings{Logger: log}})
		})
	if err != nil {
		return err
	}
	svc := notification.New(st, a.bus, log, notification.Options{MaxBody: a.cfg.MaxBody})
	return a.serve("notification", a.cfg.NotifyAddr, svc.Handler(), log, svc.Run)
}
