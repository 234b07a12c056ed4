package cloud

import (
	"context"
	"fmt"

	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

// addRoom runs the room service (:8002) on its SQLite store.
func (a *App) addRoom(ctx context.Context) error {
	path, err := sqlitePath(a.cfg.Store, "room")
	if err != nil {
		return err
	}
	log := a.log.With("service", "room")
	st, err := sqlitestore.Open(ctx, path, sqlitestore.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	a.closers = append(a.closers, st.Close)
	svc := room.New(st, a.bus, log, room.Options{MaxBody: a.cfg.MaxBody})
	return a.serve("room", a.cfg.RoomAddr, svc.Handler(), log, svc.Run)
}
