package cloud_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/atrium-iot/atrium/cloud/cloudtest"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/sensor"
)

// TestRoomOnMongoStore runs the sensor and room services on -store=mongodb://…:
// readings posted to the sensor service become room metrics and history read
// from the room service, kept in room_db. It writes only under a sensor, room
// and batch id of its own, and deletes them afterwards.
func TestRoomOnMongoStore(t *testing.T) {
	c, prefix, store := mongoStore(t)
	args := []string{"-target=sensor,room", "-sensor-addr=127.0.0.1:0", "-room-addr=127.0.0.1:0",
		"-data-dir=" + t.TempDir(), "-store=" + store}
	app := cloudtest.Run(t, nil, args...)

	sensorID, roomID, batch := prefix+"sensor", prefix+"room", prefix+"batch"
	key := sensor.BatchKey(sensor.DirectPrincipal, batch) // what the stores and the event call the batch
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		dropSensorDocs(ctx, c.Database(mongox.SensorDB), sensorID, key)
		rdb := c.Database(mongox.RoomDB)
		rdb.Collection("rooms").DeleteOne(ctx, bson.D{{Key: "_id", Value: roomID}})
		rdb.Collection("sensors").DeleteOne(ctx, bson.D{{Key: "_id", Value: sensorID}})
		rdb.Collection("applied").DeleteOne(ctx, bson.D{{Key: "_id", Value: key}})
		for _, coll := range []string{"latest", "rollups_1m", "rollups_5m", "rollups_1h"} {
			rdb.Collection(coll).DeleteMany(ctx, bson.D{{Key: "r", Value: roomID}})
		}
	})
	t.Cleanup(app.Stop) // runs first: stop the program, then clean up
	sensorURL, roomURL := "http://"+app.Addr("sensor"), "http://"+app.Addr("room")

	now := time.Now().UTC().Truncate(time.Millisecond)
	body := fmt.Sprintf(`{"batch_id":%q,"readings":[
		{"sensor_id":%[2]q,"room_id":%[3]q,"type":"co2","value":600,"timestamp":%[4]q},
		{"sensor_id":%[2]q,"room_id":%[3]q,"type":"co2","value":700,"timestamp":%[5]q},
		{"sensor_id":%[2]q,"room_id":%[3]q,"type":"temperature","value":21.5,"timestamp":%[5]q}]}`,
		batch, sensorID, roomID, ts(now.Add(-90*time.Second)), ts(now.Add(-10*time.Second)))
	if a := do(t, "POST", sensorURL+"/sensors/data", []byte(body)); a.Code != 200 || num(a.Body["accepted"]) != 3 {
		t.Fatalf("POST /sensors/data = %d %s", a.Code, a.Raw)
	}

	// The room service applies the event from the bus: poll until the batch is
	// recorded as applied (the store's last step; latest values and rollups
	// show up before it), then read the metrics.
	var metrics map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := do(t, "GET", roomURL+"/rooms/"+roomID+"/metrics", nil)
		n, err := c.Database(mongox.RoomDB).Collection("applied").CountDocuments(t.Context(),
			bson.D{{Key: "_id", Value: key}, {Key: "st", Value: "done"}})
		if err == nil && n == 1 && a.Code == 200 {
			a = do(t, "GET", roomURL+"/rooms/"+roomID+"/metrics", nil)
			metrics = a.Body
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room metrics never showed the co2 reading: last answer %d %s", a.Code, a.Raw)
		}
		time.Sleep(50 * time.Millisecond)
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"current metrics", func(t *testing.T) {
			m := metrics["metrics"].(map[string]any)
			co2 := m["co2"].(map[string]any)
			if num(co2["count_5m"]) != 2 || co2["mean_5m"] != 650.0 || co2["min_5m"] != 600.0 || co2["max_5m"] != 700.0 {
				t.Errorf("co2 = %v, want 2 readings in the window, mean 650", co2)
			}
			if temp, _ := m["temperature"].(map[string]any); temp["value"] != 21.5 {
				t.Errorf("temperature = %v, want 21.5", temp)
			}
			if metrics["air_quality"] != "good" {
				t.Errorf("air_quality = %v, want good", metrics["air_quality"])
			}
		}},
		{"room created with its sensor", func(t *testing.T) {
			a := do(t, "GET", roomURL+"/rooms/"+roomID, nil)
			ss, _ := a.Body["sensors"].([]any)
			if a.Code != 200 || num(a.Body["sensor_count"]) != 1 || len(ss) != 1 || ss[0] != sensorID {
				t.Errorf("GET room = %d %s, want 1 sensor %s", a.Code, a.Raw, sensorID)
			}
		}},
		{"history", func(t *testing.T) {
			from := now.Add(-time.Hour).Truncate(time.Hour)
			a := do(t, "GET", roomURL+"/rooms/"+roomID+"/history?type=co2&bucket=1m&from="+ts(from)+"&to="+ts(now.Add(time.Minute)), nil)
			bs, _ := a.Body["buckets"].([]any)
			total, sum := 0, 0.0
			for _, b := range bs {
				m := b.(map[string]any)
				total += num(m["count"])
				sum += m["mean"].(float64) * m["count"].(float64)
			}
			if a.Code != 200 || total != 2 || sum != 1300 {
				t.Errorf("history = %d %s, want 2 co2 readings summing to 1300", a.Code, a.Raw)
			}
		}},
		{"kept in room_db", func(t *testing.T) {
			rdb := c.Database(mongox.RoomDB)
			var applied struct {
				State string   `bson:"st"`
				Rooms []string `bson:"rooms"`
			}
			if err := rdb.Collection("applied").FindOne(t.Context(), bson.D{{Key: "_id", Value: key}}).Decode(&applied); err != nil ||
				applied.State != "done" || len(applied.Rooms) != 1 || applied.Rooms[0] != roomID {
				t.Errorf("%s.applied[%s] = %+v (%v), want done in %s", mongox.RoomDB, batch, applied, err, roomID)
			}
			n, err := rdb.Collection("latest").CountDocuments(t.Context(), bson.D{{Key: "r", Value: roomID}})
			if err != nil || n != 2 {
				t.Errorf("%s.latest holds %d values of %s (%v), want 2 (co2, temperature)", mongox.RoomDB, n, roomID, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.check)
	}
}
