package cloud

import (
	"context"
	"fmt"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/mongostore"
	"github.com/atrium-iot/atrium/services/notification/sqlitestore"
)

// addNotification runs the notification service (:8004) on its store (events_db):
// SQLite under an sqlite:// -store (the default), MongoDB under mongodb://….
func (a *App) addNotification(ctx context.Context) error {
	log := a.log.With("service", "notification")
	var st notification.Store
	if mongox.IsURL(a.cfg.Store) {
		ms, err := mongostore.Open(ctx, a.cfg.Store, mongostore.Options{Logger: log})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = ms
	} else {
		path, err := sqlitePath(a.cfg.Store, "notification")
		if err != nil {
			return err
		}
		sq, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = sq
	}
	a.closers = append(a.closers, st.Close)
	svc := notification.New(st, a.bus, log, notification.Options{MaxBody: a.cfg.MaxBody})
	return a.serve("notification", a.cfg.NotifyAddr, svc.Handler(), log, svc.Run)
}
