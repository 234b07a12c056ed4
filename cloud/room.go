package cloud

import (
	"context"
	"fmt"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/mongostore"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

// addRoom runs the room service (:8002) on its store: SQLite under an sqlite://
// -store (the default), MongoDB database room_db under mongodb://….
func (a *App) addRoom(ctx context.Context) error {
	log := a.log.With("service", "room")
	var st room.Store
	if mongox.IsURL(a.cfg.Store) {
		ms, err := mongostore.Open(ctx, a.cfg.Store, mongostore.Options{Logger: log, Retention: a.cfg.Retention, RollupRetention: a.cfg.RollupRetention})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = ms
	} else {
		path, err := sqlitePath(a.cfg.Store, "room")
		if err != nil {
			return err
		}
		sq, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log, Retention: a.cfg.Retention, RollupRetention: a.cfg.RollupRetention})
		if err != nil {
			return fmt.Errorf("open store: %w", err)
		}
		st = sq
	}
	a.closers = append(a.closers, st.Close)
	svc := room.New(st, a.bus, log, room.Options{MaxBody: a.cfg.MaxBody})
	return a.serve("room", a.cfg.RoomAddr, svc.Handler(), log, svc.Run)
}
