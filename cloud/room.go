package cloud

import (
	"context"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/services/room"
	"github.com/atrium-iot/atrium/services/room/mongostore"
	"github.com/atrium-iot/atrium/services/room/sqlitestore"
)

// addRoom runs the room service (:8002) on its store: SQLite under an sqlite://
// -store (the default), MongoDB database room_db under mongodb://….
func (a *App) addRoom(ctx context.Context) error {
	log := a.log.With("service", "room")
	st, err := openStore(a, "-store", a.cfg.Store, "room", mongox.IsURL(a.cfg.Store),
		func(url string) (room.Store, error) {
			return mongostore.Open(ctx, url, mongostore.Options{Logger: log, Tiered: a.cfg.keep()})
		},
		func(path string) (room.Store, error) {
			return sqlitestore.Open(ctx, path, sqlitestore.Options{Settings: sqlitex.Settings{Logger: log}, Tiered: a.cfg.keep()})
		})
	if err != nil {
		return err
	}
	svc := room.New(st, a.bus, log, room.Options{MaxBody: a.cfg.MaxBody})
	return a.serve("room", a.cfg.RoomAddr, svc.Handler(), log, svc.Run)
}
