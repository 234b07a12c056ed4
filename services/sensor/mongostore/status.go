package mongostore

import (
	"context"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/sensor"
)

// statusDoc is a sensor's status mark, in the collection sensor_status.
type statusDoc struct {
	SensorID string    `bson:"_id"`
	Status   string    `bson:"status"`
	At       time.Time `bson:"at"`
}

// MarkStatus records the status published for a sensor; see sensor.Store.
func (s *Store) MarkStatus(ctx context.Context, m sensor.StatusMark) error {
	if err := s.conn.Check("mongostore: mark status"); err != nil {
		return err
	}
	if m.SensorID == "" {
		return fmt.Errorf("mongostore: mark status: %w: empty sensor id", apperr.ErrInvalid)
	}
	doc := statusDoc{SensorID: m.SensorID, Status: m.Status, At: m.At.UTC()}
	_, err := s.conn.DB.Collection("sensor_status").ReplaceOne(ctx, bson.D{{Key: "_id", Value: m.SensorID}}, doc, options.Replace().SetUpsert(true))
	if err != nil {
		return mongox.Wrap("mongostore: mark status of "+m.SensorID, err)
	}
	return nil
}

// StatusMarks lists every sensor's status mark; see sensor.Store.
func (s *Store) StatusMarks(ctx context.Context) ([]sensor.StatusMark, error) {
	if err := s.conn.Check("mongostore: status marks"); err != nil {
		return nil, err
	}
	docs, err := mongox.FindAll[statusDoc](ctx, s.conn.DB.Collection("sensor_status"), "mongostore: status marks", bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	ms := make([]sensor.StatusMark, len(docs))
	for i, d := range docs {
		ms[i] = sensor.StatusMark{SensorID: d.SensorID, Status: d.Status, At: d.At.UTC()}
	}
	return ms, nil
}
