package mongostore

import (
	"context"
	"testing"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, mongotest.Opener(t, "events_", func(ctx context.Context, url, db string) (notification.Store, error) {
		return Open(ctx, url, Options{Database: db})
	}))
}
