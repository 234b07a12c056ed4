package mongostore

import (
	"testing"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/storetest"
)

func TestContract(t *testing.T) {
	database := mongotest.Databases(t, "events_")
	storetest.Run(t, func(t *testing.T, name string) notification.Store {
		s, err := Open(t.Context(), mongotest.URL(t), Options{Database: database(t, name)})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
