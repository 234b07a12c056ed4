package sqlitetest

import (
	"context"
	"errors"
	"io"
	"slices"
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

func TestModes(t *testing.T) {
	var ran []string
	Modes(t, func(t *testing.T, settings sqlitex.Settings) {
		s := Open(t, Paths(t)("mode"), func(ctx context.Context, path string) (*store, error) {
			return openStore(ctx, path, settings.Synchronous)
		})
		defer s.Close()
		ran = append(ran, t.Name()+"="+settings.Synchronous)
	})
	if want := []string{"TestModes/FULL=FULL", "TestModes/NORMAL=NORMAL"}; !slices.Equal(ran, want) {
		t.Errorf("Modes ran %q, want %q", ran, want)
	}
}

func TestRunPlans(t *testing.T) {
	s := Open(t, Paths(t)("plan"), func(ctx context.Context, path string) (*store, error) { return openStore(ctx, path, "") })
	defer s.Close()
	if _, err := s.st.Writer.Exec("CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	RunPlans(t, s.st.Readers,
		Plan{Name: "by key", Query: "SELECT v FROM k WHERE id = ?", Want: []string{"SEARCH k USING INTEGER PRIMARY KEY"}, Avoid: []string{"SCAN k"}, Steps: 1},
		Plan{Name: "given args", Query: "SELECT v FROM k WHERE id > ? ORDER BY id", Args: []any{7}, Avoid: []string{"TEMP B-TREE"}},
	)
}

func TestPlanProblems(t *testing.T) {
	scan := []string{"SCAN k", "USE TEMP B-TREE FOR ORDER BY"}
	tests := []struct {
		name string
		p    Plan
		want int
	}{
		{"met", Plan{Want: []string{"SCAN k"}, Avoid: []string{"SEARCH"}, Steps: 2}, 0},
		{"lacks", Plan{Want: []string{"SEARCH k"}}, 1},
		{"has", Plan{Avoid: []string{"SCAN k", "TEMP B-TREE"}}, 2},
		{"steps", Plan{Steps: 1}, 1},
	}
	for _, tc := range tests {
		if got := tc.p.problems(scan); len(got) != tc.want {
			t.Errorf("%s: problems %q, want %d", tc.name, got, tc.want)
		}
	}
}
