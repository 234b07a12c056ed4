package sqlitestore_test

import (
	"context"
	"io"
	"testing"

	"github.com/atrium-iot/atrium/internal/sqlitex"
	"github.com/atrium-iot/atrium/internal/sqlitex/sqlitetest"
	"github.com/atrium-iot/atrium/services/analytics/sqlitestore"
	"github.com/atrium-iot/atrium/services/analytics/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, sqlitetest.Opener(t, func(ctx context.Context, path string) (storetest.Store, error) {
		return sqlitestore.Open(ctx, path, sqlitestore.Options{})
	}))
}

func TestOpen(t *testing.T) {
	sqlitetest.RunOpen(t, 1, func(ctx context.Context, path, sync string) (io.Closer, error) {
		return sqlitestore.Open(ctx, path, sqlitestore.Options{Settings: sqlitex.Settings{Synchronous: sync}})
	})
}
