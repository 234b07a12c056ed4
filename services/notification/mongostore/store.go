// Package mongostore keeps the notification service's rules, alerts, event log
// and sensor last-seen times in MongoDB (database events_db), with
// go.mongodb.org/mongo-driver/v2. It relies only on single-document atomicity
// and unique indexes, so it also runs on FerretDB 1.24 (no transactions).
//
// Collections (docs/storage.md has the schema and the guarantees):
//
//	rules     one document per rule: its JSON, keyed by id
//	alerts    one document per alert; "open" is the alert's key while it is open
//	          and "resolved:<id>" after, so a unique index on it allows one open
//	          alert per key
//	events    the system event log, ordered by seq
//	sensors   last-seen time, room and offline flag per sensor
//	counters  the alert and event sequences
//	meta      facts about the store (the default rules were seeded)
package mongostore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/atrium-iot/atrium/internal/mongox"
	"github.com/atrium-iot/atrium/services/notification"
)

var _ notification.Store = (*Store)(nil)

// Options tune a Store. The zero value is ready to use.
type Options struct {
	// Logger receives the store's logs; nil discards them.
	Logger *slog.Logger
	// Database is the database the store uses; "" means events_db.
	Database string
}

// Store is the MongoDB implementation of notification.Store.
type Store struct {
	conn *mongox.Store
	log  *slog.Logger
	// serial orders every write on servers without atomic document updates
	// (FerretDB): sequences, alert transitions and sensor upserts are
	// read-modify-write there.
	serial *mongox.Serializer

	rules, alerts, events, sensors, counters, meta *mongo.Collection
}

// Open connects to the server of a mongodb:// URL and creates the store's indexes.
func Open(ctx context.Context, uri string, opts Options) (*Store, error) {
	ms, err := mongox.OpenStore(ctx, uri, mongox.StoreOptions{
		AppName: "atrium-notification", Database: cmp.Or(opts.Database, mongox.NotificationDB), Logger: opts.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("mongostore: open: %w", err)
	}
	db := ms.DB
	s := &Store{conn: ms, log: ms.Log, serial: mongox.NewSerializer(ms.Server),
		rules: db.Collection("rules"), alerts: db.Collection("alerts"), events: db.Collection("events"),
		sensors: db.Collection("sensors"), counters: db.Collection("counters"), meta: db.Collection("meta")}
	if err := mongox.EnsureAll(ctx,
		mongox.Indexes{Coll: s.alerts, Ixs: []mongox.Index{
			{Name: "open", Keys: []string{"open"}, Unique: true},
			{Name: "seq", Keys: []string{"seq"}},
			{Name: "state_seq", Keys: []string{"state", "seq"}},
		}},
		mongox.Indexes{Coll: s.events, Ixs: []mongox.Index{
			{Name: "seq", Keys: []string{"seq"}},
			{Name: "type_seq", Keys: []string{"type", "seq"}},
			{Name: "room_seq", Keys: []string{"room", "seq"}},
		}},
	); err != nil {
		_ = ms.Close("", nil)
		return nil, fmt.Errorf("mongostore: open: %w", err)
	}
	return s, nil
}

// check returns mongox.ErrClosed, wrapped with op, once the store is closed.
func (s *Store) check(op string) error { return s.conn.Check("mongostore: " + op) }

func wrap(op string, err error) error { return mongox.Wrap("mongostore: "+op, err) }

// byID decodes the document of coll with the _id id into d, for a call named
// op on an open store; none is notification.ErrNotFound.
func (s *Store) byID(ctx context.Context, coll *mongo.Collection, op, id string, d any) error {
	if err := s.check(op); err != nil {
		return err
	}
	found, err := mongox.FindOne(ctx, coll, "mongostore: "+op, bson.D{{Key: "_id", Value: id}}, d)
	if err == nil && !found {
		return fmt.Errorf("mongostore: %s %q: %w", op, id, notification.ErrNotFound)
	}
	return err
}

// Ping runs the ping command.
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx, "mongostore: ping") }

// Close disconnects. Calling it again returns the first result.
func (s *Store) Close() error { return s.conn.Close("mongostore: close", nil) }

// next returns the next number of a sequence (alerts, events).
func (s *Store) next(ctx context.Context, name string) (int64, error) {
	return mongox.Next(ctx, s.counters, name)
}

// ---- rules ----

type ruleDoc struct {
	ID   string `bson:"_id"`
	Body string `bson:"body"`
}

func decodeRule(d ruleDoc) (notification.Rule, error) {
	var r notification.Rule
	if err := json.Unmarshal([]byte(d.Body), &r); err != nil {
		return r, fmt.Errorf("decode rule %q: %w", d.ID, err)
	}
	return r, nil
}

// SeedRules stores rules the first time it is called on a store. The rules go
// in before the "seeded" mark, so a crash in between seeds them again later
// (inserting only those missing), never loses them.
func (s *Store) SeedRules(ctx context.Context, rules []notification.Rule) error {
	if err := s.check("seed rules"); err != nil {
		return err
	}
	seeded, err := mongox.FindOne(ctx, s.meta, "mongostore: seed rules", bson.D{{Key: "_id", Value: "rules_seeded"}}, nil)
	if seeded || err != nil {
		return err
	}
	if len(rules) > 0 {
		docs := make([]any, len(rules))
		for i, r := range rules {
			b, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("mongostore: seed rules: %w", err)
			}
			docs[i] = ruleDoc{ID: r.ID, Body: string(b)}
		}
		_, err := s.rules.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
		if _, err := mongox.Duplicates(err); err != nil {
			return wrap("seed rules", err)
		}
	}
	_, err = s.meta.InsertOne(ctx, bson.D{{Key: "_id", Value: "rules_seeded"}, {Key: "at", Value: time.Now().UTC()}})
	if err != nil && !mongox.IsDuplicate(err) {
		return wrap("seed rules", err)
	}
	return nil
}

// Rules lists every rule by id.
func (s *Store) Rules(ctx context.Context) ([]notification.Rule, error) {
	if err := s.check("rules"); err != nil {
		return nil, err
	}
	docs, err := mongox.FindAll[ruleDoc](ctx, s.rules, "mongostore: rules", bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	out := make([]notification.Rule, 0, len(docs))
	for _, d := range docs {
		r, err := decodeRule(d)
		if err != nil {
			return nil, fmt.Errorf("mongostore: rules: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Rule returns one rule.
func (s *Store) Rule(ctx context.Context, id string) (notification.Rule, error) {
	var d ruleDoc
	if err := s.byID(ctx, s.rules, "rule", id, &d); err != nil {
		return notification.Rule{}, err
	}
	r, err := decodeRule(d)
	if err != nil {
		return r, fmt.Errorf("mongostore: %w", err)
	}
	return r, nil
}

// ruleBody is the stored body of r, for a call named op on an open store.
func (s *Store) ruleBody(op string, r notification.Rule) (string, error) {
	if err := s.check(op); err != nil {
		return "", err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("mongostore: %s: %w", op, err)
	}
	return string(b), nil
}

// CreateRule adds a rule; ErrConflict when its id exists.
func (s *Store) CreateRule(ctx context.Context, r notification.Rule) error {
	body, err := s.ruleBody("create rule", r)
	if err != nil {
		return err
	}
	_, err = s.rules.InsertOne(ctx, ruleDoc{ID: r.ID, Body: body})
	if mongox.IsDuplicate(err) {
		return fmt.Errorf("mongostore: create rule %q: %w", r.ID, notification.ErrConflict)
	}
	return wrap("create rule", err)
}

// UpdateRule replaces a rule; ErrNotFound when there is none.
func (s *Store) UpdateRule(ctx context.Context, r notification.Rule) error {
	body, err := s.ruleBody("update rule", r)
	if err != nil {
		return err
	}
	res, err := s.rules.UpdateOne(ctx, bson.D{{Key: "_id", Value: r.ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "body", Value: body}}}})
	if err != nil {
		return wrap("update rule", err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("mongostore: update rule %q: %w", r.ID, notification.ErrNotFound)
	}
	return nil
}

// DeleteRule removes a rule; ErrNotFound when there is none.
func (s *Store) DeleteRule(ctx context.Context, id string) error {
	if err := s.check("delete rule"); err != nil {
		return err
	}
	res, err := s.rules.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return wrap("delete rule", err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("mongostore: delete rule %q: %w", id, notification.ErrNotFound)
	}
	return nil
}

// ---- cursors ----
