package sqlitetest

import (
	"context"
	"errors"
	"io"
	"testing"
	"testing/fstest"

	"github.com/atrium-iot/atrium/internal/sqlitex"
)

// store is the smallest store OpenStore makes: it only closes, twice without error.
type store struct{ st *sqlitex.Store }

func (s *store) Close() error {
	if s.st == nil {
		return nil
	}
	err := errors.Join(s.st.Readers.Close(), s.st.Writer.Close())
	s.st = nil
	return err
}

var mig = fstest.MapFS{
	"m/0001_a.sql": {Data: []byte("CREATE TABLE a (n INTEGER);")},
	"m/0003_b.sql": {Data: []byte("CREATE TABLE b (n INTEGER);")},
}

func openStore(ctx context.Context, path, sync string) (*store, error) {
	st, err := sqlitex.OpenStore(ctx, path, sqlitex.Settings{Synchronous: sync}, sqlitex.Options{Migrations: mig, MigrationsDir: "m"})
	if err != nil {
		return nil, err
	}
	return &store{st}, nil
}

func TestRunOpen(t *testing.T) {
	RunOpen(t, 3, func(ctx context.Context, path, sync string) (io.Closer, error) { return openStore(ctx, path, sync) })
}

func TestOpener(t *testing.T) {
	open := Opener(t, func(ctx context.Context, path string) (*store, error) { return openStore(ctx, path, "") })
	a := open(t, "a")
	if _, err := a.st.Writer.Exec("INSERT INTO a (n) VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	again, other := open(t, "a"), open(t, "b")
	defer again.Close()
	defer other.Close()
	var n int
	if err := again.st.Readers.QueryRow("SELECT count(*) FROM a").Scan(&n); err != nil || n != 1 {
		t.Errorf("reopened store has %d rows (%v), want 1", n, err)
	}
	if err := other.st.Readers.QueryRow("SELECT count(*) FROM a").Scan(&n); err != nil || n != 0 {
		t.Errorf("another name's store has %d rows (%v), want 0", n, err)
	}
}
