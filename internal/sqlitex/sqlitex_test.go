package sqlitex

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/atrium-iot/atrium/internal/apperr"
	"github.com/atrium-iot/atrium/internal/testwait"
)

func openWriter(t *testing.T, path string, o Options) *sql.DB {
	t.Helper()
	w, r, err := Open(context.Background(), path, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return w
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatalf("user_version: %v", err)
	}
	return v
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	base := fstest.MapFS{
		// 0002 needs the table of 0001 and 0010 the row of 0002: order is by number, not by name.
		"m/0001_create.sql": {Data: []byte("CREATE TABLE t (n INTEGER PRIMARY KEY);")},
		"m/0002_seed.sql":   {Data: []byte("INSERT INTO t (n) VALUES (2);")},
		"m/0010_more.sql":   {Data: []byte("INSERT INTO t (n) SELECT n * 5 FROM t WHERE n = 2;")},
		"m/README.txt":      {Data: []byte("not a migration")},
	}
	withAll := func(extra map[string]string) fstest.MapFS {
		fsys := fstest.MapFS{}
		for k, v := range base {
			fsys[k] = v
		}
		for k, v := range extra {
			fsys[k] = &fstest.MapFile{Data: []byte(v)}
		}
		return fsys
	}
	tests := []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
		wantVer int
		wantSum int // sum of t.n after migrating twice
	}{
		{name: "applied once and in order", fsys: base, wantVer: 10, wantSum: 12},
		{name: "bad name without number", fsys: withAll(map[string]string{"m/init.sql": "SELECT 1;"}), wantErr: "name must start"},
		{name: "bad name zero", fsys: withAll(map[string]string{"m/0000_zero.sql": "SELECT 1;"}), wantErr: "name must start"},
		{name: "bad name not a number", fsys: withAll(map[string]string{"m/x1_a.sql": "SELECT 1;"}), wantErr: "name must start"},
		{name: "number used twice", fsys: withAll(map[string]string{"m/0002_again.sql": "SELECT 1;"}), wantErr: "already used"},
		{name: "failing script rolls back", fsys: withAll(map[string]string{"m/0011_bad.sql": "CREATE TABLE t (n INTEGER);"}), wantErr: "0011_bad.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openWriter(t, filepath.Join(t.TempDir(), "m.db"), Options{ImmediateWrites: true})
			for range 2 {
				err := Migrate(ctx, db, tt.fsys, "m")
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("migrate: got %v, want an error containing %q", err, tt.wantErr)
					}
					if v := userVersion(t, db); v != 0 {
						t.Fatalf("user_version after a failed migration = %d, want 0", v)
					}
					var n int
					if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name = 't'").Scan(&n); err != nil || n != 0 {
						t.Fatalf("table t after a failed migration: n=%d err=%v, want none", n, err)
					}
					return
				}
				if err != nil {
					t.Fatalf("migrate: %v", err)
				}
			}
			if v := userVersion(t, db); v != tt.wantVer {
				t.Fatalf("user_version = %d, want %d", v, tt.wantVer)
			}
			var sum int
			if err := db.QueryRow("SELECT sum(n) FROM t").Scan(&sum); err != nil {
				t.Fatal(err)
			}
			if sum != tt.wantSum {
				t.Fatalf("sum(n) = %d, want %d (each script applied once)", sum, tt.wantSum)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	mig := fstest.MapFS{"migrations/0001_init.sql": {Data: []byte("CREATE TABLE t (n INTEGER);")}}
	tests := []struct {
		name     string
		path     string // "" means a fresh file
		o        Options
		wantErr  string
		wantSync int // PRAGMA synchronous: 1 NORMAL, 2 FULL
		wantFK   int
	}{
		{name: "defaults", o: Options{Migrations: mig, MigrationsDir: "migrations"}, wantSync: 2},
		{name: "normal with foreign keys", o: Options{Synchronous: "normal", ForeignKeys: true, CacheSizeKiB: 1024, MmapBytes: 1 << 20, JournalSizeLimit: 1 << 20, WriterPragmas: []string{"wal_autocheckpoint(0)"}}, wantSync: 1, wantFK: 1},
		{name: "unknown synchronous mode", o: Options{Synchronous: "sometimes"}, wantErr: "unknown synchronous mode"},
		{name: "path with a query", path: "x.db?mode=ro", wantErr: "invalid path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "o.db")
			if tt.path != "" {
				p = tt.path
			}
			w, r, err := Open(ctx, p, tt.o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("open: got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer w.Close()
			defer r.Close()
			for _, db := range []*sql.DB{w, r} {
				var mode string
				var sync, fk int
				if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
					t.Fatalf("journal_mode = %q (%v), want wal", mode, err)
				}
				if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != tt.wantSync {
					t.Fatalf("synchronous = %d (%v), want %d", sync, err, tt.wantSync)
				}
				if err := db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil || fk != tt.wantFK {
					t.Fatalf("foreign_keys = %d (%v), want %d", fk, err, tt.wantFK)
				}
			}
			if _, err := r.Exec("CREATE TABLE u (n INTEGER)"); err == nil {
				t.Fatal("the read pool accepted a write")
			}
			if _, err := w.Exec("CREATE TABLE u (n INTEGER)"); err != nil {
				t.Fatalf("writer: %v", err)
			}
		})
	}
}

func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	holder := openWriter(t, path, Options{ImmediateWrites: true})
	if _, err := holder.Exec("CREATE TABLE t (n INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	other := openWriter(t, path, Options{ImmediateWrites: true, BusyTimeout: time.Millisecond})
	tx, err := holder.BeginTx(ctx, nil) // BEGIN IMMEDIATE: holds the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, lockedErr := other.Exec("INSERT INTO t (n) VALUES (1)")
	if lockedErr == nil {
		t.Fatal("a write succeeded while another connection held the write lock")
	}
	if _, err := tx.Exec("INSERT INTO t (n) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	_, constraintErr := tx.Exec("INSERT INTO t (n) VALUES (1)")
	if constraintErr == nil {
		t.Fatal("duplicate key accepted")
	}
	closed, _, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	closedErr := closed.PingContext(ctx)

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"locked database", lockedErr, true},
		{"closed database", closedErr, true},
		{"constraint violation", constraintErr, false},
		{"plain error", errors.New("boom"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unavailable(tt.err); got != tt.want {
				t.Fatalf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
			wrapped := Wrap("op", tt.err)
			if tt.err == nil {
				if wrapped != nil {
					t.Fatalf("Wrap(nil) = %v, want nil", wrapped)
				}
				return
			}
			if !strings.HasPrefix(wrapped.Error(), "op: ") || !errors.Is(wrapped, tt.err) {
				t.Fatalf("Wrap = %v, want it prefixed with op and wrapping %v", wrapped, tt.err)
			}
			if got := errors.Is(wrapped, apperr.ErrUnavailable); got != tt.want {
				t.Fatalf("errors.Is(Wrap(...), ErrUnavailable) = %v, want %v", got, tt.want)
			}
			if tt.want && strings.Count(Wrap("outer", wrapped).Error(), apperr.ErrUnavailable.Error()) != 1 {
				t.Fatalf("wrapping twice repeats the mark: %v", Wrap("outer", wrapped))
			}
		})
	}
}

func TestOpenStore(t *testing.T) {
	mig := fstest.MapFS{"m/0001_init.sql": {Data: []byte("CREATE TABLE t (n INTEGER);")}}
	own := Options{Synchronous: "NORMAL", BusyTimeout: time.Second, Readers: 3, Migrations: mig, MigrationsDir: "m"}
	tests := []struct {
		name        string
		s           Settings
		wantSync    string
		wantBusy    time.Duration
		wantReaders int
		wantErr     bool
	}{
		{name: "store defaults", wantSync: "NORMAL", wantBusy: time.Second, wantReaders: 3},
		{name: "settings over them", s: Settings{Synchronous: "full", BusyTimeout: 2 * time.Second, Readers: 1}, wantSync: "FULL", wantBusy: 2 * time.Second, wantReaders: 1},
		{name: "unknown synchronous mode", s: Settings{Synchronous: "sometimes"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := OpenStore(t.Context(), filepath.Join(t.TempDir(), "s.db"), tt.s, own, "extra", 1)
			if tt.wantErr {
				if err == nil {
					st.Writer.Close()
					st.Readers.Close()
					t.Fatal("OpenStore succeeded")
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenStore: %v", err)
			}
			defer st.Readers.Close()
			defer st.Writer.Close()
			if st.Sync != tt.wantSync || st.Options.BusyTimeout != tt.wantBusy || st.Options.Readers != tt.wantReaders {
				t.Errorf("sync %q, busy %v, readers %d; want %q, %v, %d", st.Sync, st.Options.BusyTimeout, st.Options.Readers, tt.wantSync, tt.wantBusy, tt.wantReaders)
			}
			if st.Log == nil {
				t.Error("Log is nil")
			}
			if v := userVersion(t, st.Writer); v != 1 {
				t.Errorf("user_version = %d, want 1", v)
			}
			if got := st.Readers.Stats().MaxOpenConnections; got != tt.wantReaders {
				t.Errorf("read pool of %d, want %d", got, tt.wantReaders)
			}
		})
	}
}

func TestStoreClose(t *testing.T) {
	st, err := OpenStore(t.Context(), filepath.Join(t.TempDir(), "s.db"), Settings{}, Options{})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	if err := st.Check("op"); err != nil {
		t.Fatalf("Check while open: %v", err)
	}
	if err := st.Ping(t.Context(), "op"); err != nil {
		t.Fatalf("Ping while open: %v", err)
	}
	if !st.Enter() {
		t.Fatal("Enter while open = false")
	}

	// Close waits for the call in flight before it stops and closes anything.
	stopped := 0
	closed := make(chan error, 1)
	go func() { closed <- st.Close("op", func() error { stopped++; return nil }) }()
	testwait.For(t, "Close to begin", st.Closed)
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v with a call in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := st.Writer.PingContext(t.Context()); err != nil {
		t.Fatalf("the writer is closed with a call in flight: %v", err)
	}
	st.Leave()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close("op", func() error { stopped++; return errors.New("again") }); err != nil || stopped != 1 {
		t.Fatalf("second Close: %v, stop ran %d times; want nil and once", err, stopped)
	}
	if st.Enter() {
		t.Error("Enter after Close = true")
	}
	for name, err := range map[string]error{"Check": st.Check("op"), "Ping": st.Ping(t.Context(), "op")} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, apperr.ErrUnavailable) || err.Error() != "op: "+ErrClosed.Error() {
			t.Errorf("%s after Close = %v, want op: %v", name, err, ErrClosed)
		}
	}
	if err := st.Readers.PingContext(t.Context()); err == nil {
		t.Error("the read pool is open after Close")
	}
}

func TestStoreCloseError(t *testing.T) {
	st, err := OpenStore(t.Context(), filepath.Join(t.TempDir(), "s.db"), Settings{}, Options{})
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	stop := errors.New("stop failed")
	err = st.Close("op", func() error { return stop })
	if !errors.Is(err, stop) || !strings.HasPrefix(err.Error(), "op: ") {
		t.Fatalf("Close = %v, want op: %v", err, stop)
	}
	if again := st.Close("op", nil); again != err {
		t.Fatalf("second Close = %v, want the first result %v", again, err)
	}
}
