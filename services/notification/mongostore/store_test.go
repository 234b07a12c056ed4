package mongostore

import (
	"sync"
	"testing"

	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/services/notification"
	"github.com/atrium-iot/atrium/services/notification/storetest"
)

func TestContract(t *testing.T) {
	c := mongotest.Client(t)
	var mu sync.Mutex
	dbs := map[string]string{}
	storetest.Run(t, func(t *testing.T, name string) notification.Store {
		mu.Lock()
		db, ok := dbs[name]
		if !ok {
			db = mongotest.Database(t, c, "events_"+name)
			dbs[name] = db
		}
		mu.Unlock()
		s, err := Open(t.Context(), mongotest.URL(t), Options{Database: db})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}
