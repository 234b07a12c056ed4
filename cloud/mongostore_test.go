package cloud_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/atrium-iot/atrium/cloud/cloudtest"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/internal/mongox/mongotest"
	"github.com/atrium-iot/atrium/internal/servicetest"
	"github.com/atrium-iot/atrium/services/sensor"
)

// mongoStore returns a client of the test's MongoDB server, a prefix for the ids
// this run writes, and the -store URL of the server with the program named by
// that prefix (appName).
func mongoStore(t *testing.T) (c *mongo.Client, prefix, store string) {
	t.Helper()
	c = mongotest.Client(t)
	prefix = mongotest.Prefix()
	u, err := url.Parse(mongotest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("appName", prefix+"atrium")
	u.RawQuery = q.Encode()
	return c, prefix, u.String()
}

// dropSensorDocs deletes what a test wrote in sensor_db for one sensor and one
// batch, which the store records under its key (caller and id: sensor.BatchKey).
func dropSensorDocs(ctx context.Context, db *mongo.Database, sensorID, batchKey string) {
	db.Collection("readings").DeleteMany(ctx, bson.D{{Key: "s", Value: sensorID}})
	db.Collection("rollups_1h").DeleteMany(ctx, bson.D{{Key: "s", Value: sensorID}})
	db.Collection("sensors").DeleteOne(ctx, bson.D{{Key: "_id", Value: sensorID}})
	db.Collection("sensor_status").DeleteOne(ctx, bson.D{{Key: "_id", Value: sensorID}})
	db.Collection("batches").DeleteOne(ctx, bson.D{{Key: "_id", Value: batchKey}})
	db.Collection("outbox").DeleteOne(ctx, bson.D{{Key: "_id", Value: batchKey}})
}

// TestMongoStore runs the sensor and notification services on -store=mongodb://…
// and checks that their data lands in the fixed databases sensor_db and events_db.
// It writes only under a sensor id of its own, and deletes it afterwards.
func TestMongoStore(t *testing.T) {
	c, prefix, store := mongoStore(t)
	args := []string{"-target=sensor,notification", "-sensor-addr=127.0.0.1:0", "-notification-addr=127.0.0.1:0",
		"-data-dir=" + t.TempDir(), "-store=" + store}
	app := cloudtest.Start(t, args...)
	sensorURL, notifyURL := "http://"+app.Addr("sensor"), "http://"+app.Addr("notification")

	id := prefix + "sensor"
	batch := prefix + "batch"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		dropSensorDocs(ctx, c.Database(mongox.SensorDB), id, sensor.BatchKey(sensor.DirectPrincipal, batch))
	})

	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	body := fmt.Sprintf(`{"batch_id":%q,"readings":[{"sensor_id":%q,"room_id":"r1","type":"co2","value":612,"timestamp":%q}]}`, batch, id, ts(at))
	tests := []struct {
		name     string
		accepted int
	}{
		{"first", 1},
		{"resent batch id", 1}, // the first answer again
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, "POST", sensorURL+"/sensors/data", []byte(body))
			if a.Code != 200 || num(a.Body["accepted"]) != tc.accepted {
				t.Fatalf("POST /sensors/data = %d %s", a.Code, a.Raw)
			}
		})
	}
	t.Run("read back over HTTP", func(t *testing.T) {
		a := do(t, "GET", sensorURL+"/sensors/"+id+"/data", nil)
		rs, _ := a.Body["readings"].([]any)
		if a.Code != 200 || len(rs) != 1 {
			t.Fatalf("GET data = %d %s", a.Code, a.Raw)
		}
	})
	t.Run("stored in sensor_db", func(t *testing.T) {
		n, err := c.Database(mongox.SensorDB).Collection("readings").CountDocuments(t.Context(), bson.D{{Key: "s", Value: id}})
		if err != nil || n != 1 {
			t.Fatalf("%s.readings holds %d readings of %s (%v), want 1", mongox.SensorDB, n, id, err)
		}
	})
	t.Run("notification seeded events_db", func(t *testing.T) {
		servicetest.WaitReady(t, notifyURL)
		a := do(t, "GET", notifyURL+"/rules", nil)
		if a.Code != 200 {
			t.Fatalf("GET /rules = %d %s", a.Code, a.Raw)
		}
		n, err := c.Database(mongox.NotificationDB).Collection("rules").CountDocuments(t.Context(), bson.D{{Key: "_id", Value: "default-co2-warning"}})
		if err != nil || n != 1 {
			t.Fatalf("%s.rules has %d default-co2-warning rules (%v), want 1", mongox.NotificationDB, n, err)
		}
	})
}
