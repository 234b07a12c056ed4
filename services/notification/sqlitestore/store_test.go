package sqlitestore

import (
	"context"
	"io"
	"testing"

	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, sqlitetest.Opener(t, func(ctx context.Context, path string) (notification.Store, error) {
		return Open(ctx, path, Options{})
	}))
}

func TestOpen(t *testing.T) {
	sqlitetest.RunOpen(t, 2, func(ctx context.Context, path, sync string) (io.Closer, error) {
		return Open(ctx, path, Options{Settings: sqlitex.Settings{Synchronous: sync}})
	})
}
