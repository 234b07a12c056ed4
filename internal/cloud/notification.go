package cloud

import (
	"context"
	"fmt"

	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/sqlitestore"
)

// addNotification runs the notification service (:8004) on its SQLite store
// (events_db).
func (a *App) addNotification(ctx context.Context) error {
	path, err := sqlitePath(a.cfg.Store, "notification")
	if err != nil {
		return err
	}
	log := a.log.With("service", "notification")
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.closers = append(a.closers, st.Close)
	svc := notification.New(st, a.bus, log, notification.Options{MaxBody: a.cfg.MaxBody, OfflineAfter: a.cfg.OfflineAfter})
	return a.serve("notification", a.cfg.NotifyAddr, svc.Handler(), log, svc.Run)
}
