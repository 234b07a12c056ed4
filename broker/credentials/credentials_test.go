package credentials

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	// bcrypt at the production cost takes seconds per hash under the race detector;
	// BenchmarkVerify measures the real cost.
	hashCost = bcrypt.MinCost
	os.Exit(m.Run())
}

// mustAdd adds device id to the credentials file at path and returns its password.
func mustAdd(tb testing.TB, path, id string) string {
	tb.Helper()
	pw, err := Add(path, id)
	if err != nil {
		tb.Fatal(err)
	}
	return pw
}

// mustLoad loads the credentials file at path.
func mustLoad(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestAddLoadVerify(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	pw1 := mustAdd(t, path, "sensor_001")
	pw2 := mustAdd(t, path, "room-101:co2.a")
	if pw1 == pw2 || len(pw1) < 32 {
		t.Fatalf("passwords %q, %q: want distinct, at least 32 characters", pw1, pw2)
	}

	s := mustLoad(t, path)
	if s.Len() != 2 || !s.Has("sensor_001") || s.Has("sensor_002") {
		t.Fatalf("store has %d devices", s.Len())
	}
	tests := []struct {
		name, id, password string
		want               bool
	}{
		{"right password", "sensor_001", pw1, true},
		{"right password again (cached)", "sensor_001", pw1, true},
		{"second device", "room-101:co2.a", pw2, true},
		{"other device's password", "sensor_001", pw2, false},
		{"wrong password after a cached success", "sensor_001", pw1 + "x", false},
		{"empty password", "sensor_001", "", false},
		{"unknown device", "sensor_002", pw1, false},
		{"empty id", "", pw1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Verify(tt.id, tt.password); got != tt.want {
				t.Errorf("Verify(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestFileFormatAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	pw := mustAdd(t, path, "sensor_001")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), pw) {
		t.Fatal("file contains the plain password")
	}
	var doc struct {
		Devices []struct {
			ID   string `json:"id"`
			Hash string `json:"hash"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Devices) != 1 || doc.Devices[0].ID != "sensor_001" {
		t.Fatalf("devices %+v", doc.Devices)
	}
	if cost, err := bcrypt.Cost([]byte(doc.Devices[0].Hash)); err != nil || cost != hashCost {
		t.Errorf("hash cost %d, %v; want %d", cost, err, hashCost)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(doc.Devices[0].Hash), []byte(pw)); err != nil {
		t.Errorf("stored hash does not match the password: %v", err)
	}
	// No temporary files left behind.
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the credentials file", len(entries))
	}
}

func TestAddErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	if _, err := Add(path, "sensor_001"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id string
		want     error
	}{
		{"duplicate", "sensor_001", ErrExists},
		{"empty", "", ErrInvalidID},
		{"slash", "a/b", ErrInvalidID},
		{"wildcard", "sensor+", ErrInvalidID},
		{"space", "sensor 1", ErrInvalidID},
		{"too long", strings.Repeat("s", 129), ErrInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Add(path, tt.id); !errors.Is(err, tt.want) {
				t.Errorf("Add(%q) error %v, want %v", tt.id, err, tt.want)
			}
		})
	}
	devs, err := List(path)
	if err != nil || len(devs) != 1 {
		t.Fatalf("after refused adds: %d devices, %v", len(devs), err)
	}
}

func TestRemove(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	for _, id := range []string{"b", "a", "c"} {
		if _, err := Add(path, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := Remove(path, "b"); err != nil {
		t.Fatal(err)
	}
	if err := Remove(path, "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second remove: %v, want ErrNotFound", err)
	}
	if err := Remove(filepath.Join(t.TempDir(), "missing.json"), "a"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("remove from missing file: %v, want not exist", err)
	}
	devs, err := List(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].ID != "a" || devs[1].ID != "c" {
		t.Errorf("devices after remove: %+v", devs)
	}
}

func TestLoadRejects(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := string(hash)
	tests := []struct {
		name, body string
	}{
		{"not json", "devices: []"},
		{"unknown field", `{"devices":[],"users":[]}`},
		{"invalid id", `{"devices":[{"id":"a/b","hash":"` + h + `"}]}`},
		{"empty id", `{"devices":[{"id":"","hash":"` + h + `"}]}`},
		{"duplicate id", `{"devices":[{"id":"a","hash":"` + h + `"},{"id":"a","hash":"` + h + `"}]}`},
		{"plain password as hash", `{"devices":[{"id":"a","hash":"secret"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "credentials.json")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(path); err == nil {
				t.Error("Load accepted it")
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		if _, err := Load(filepath.Join(t.TempDir(), "nope.json")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v, want not exist", err)
		}
	})
	t.Run("hand-written file with an empty list", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "credentials.json")
		if err := os.WriteFile(path, []byte(`{"devices":[]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Load(path)
		if err != nil || s.Len() != 0 {
			t.Fatalf("Load: %v, %d devices", err, s.Len())
		}
	})
}

func TestReloadIfChanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	pw1 := mustAdd(t, path, "sensor_001")
	s := mustLoad(t, path)
	if !s.Verify("sensor_001", pw1) {
		t.Fatal("first device refused")
	}
	if changed, err := s.ReloadIfChanged(); err != nil || changed {
		t.Fatalf("unchanged file: changed=%v err=%v", changed, err)
	}

	pw2 := mustAdd(t, path, "sensor_002")
	if s.Verify("sensor_002", pw2) {
		t.Fatal("new device verified before reload")
	}
	if changed, err := s.ReloadIfChanged(); err != nil || !changed {
		t.Fatalf("after add: changed=%v err=%v", changed, err)
	}
	if !s.Verify("sensor_002", pw2) {
		t.Error("new device refused after reload")
	}

	if err := Remove(path, "sensor_001"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReloadIfChanged(); err != nil {
		t.Fatal(err)
	}
	if s.Verify("sensor_001", pw1) {
		t.Error("removed device still verified (stale cache)")
	}

	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReloadIfChanged(); err == nil {
		t.Error("broken file reloaded without error")
	}
	if !s.Verify("sensor_002", pw2) {
		t.Error("a broken file must leave the previous devices in place")
	}
}

func TestVerifyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "credentials.json")
	pw := mustAdd(t, path, "sensor_001")
	s := mustLoad(t, path)
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for i := range 32 {
		wg.Go(func() {
			p := pw
			if i%2 == 1 {
				p = "wrong"
			}
			if got := s.Verify("sensor_001", p); got != (i%2 == 0) {
				errs <- p
			}
		})
	}
	wg.Wait()
	close(errs)
	for p := range errs {
		t.Errorf("wrong verdict for password %q", p)
	}
}

// BenchmarkVerify shows what the cache saves: a reconnecting device costs a keyed hash,
// not a bcrypt comparison.
func BenchmarkVerify(b *testing.B) {
	hashCost = Cost
	defer func() { hashCost = bcrypt.MinCost }()
	path := filepath.Join(b.TempDir(), "credentials.json")
	pw := mustAdd(b, path, "sensor_001")
	b.Run("cached", func(b *testing.B) {
		s := mustLoad(b, path)
		s.Verify("sensor_001", pw)
		for b.Loop() {
			if !s.Verify("sensor_001", pw) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("bcrypt", func(b *testing.B) {
		s := mustLoad(b, path)
		for b.Loop() {
			if s.Verify("sensor_001", pw+"x") { // wrong passwords are never cached
				b.Fatal("accepted")
			}
		}
	})
}

// TestUnknownIDCostsAComparison: refusing an unknown id runs the same bcrypt comparison
// as refusing a wrong password, against a hash of the cost most devices have, so that
// the time of a refusal does not tell which ids exist.
func TestUnknownIDCostsAComparison(t *testing.T) {
	hashAt := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	cheap, dear := hashAt(bcrypt.MinCost), hashAt(bcrypt.MinCost+1)
	path := filepath.Join(t.TempDir(), "credentials.json")
	body := `{"devices":[{"id":"a","hash":"` + dear + `"},{"id":"b","hash":"` + cheap + `"},{"id":"c","hash":"` + cheap + `"}]}`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustLoad(t, path)
	if cost, _ := bcrypt.Cost([]byte(s.decoy)); cost != bcrypt.MinCost {
		t.Errorf("decoy cost %d, want the most common cost %d", cost, bcrypt.MinCost)
	}
	tests := []struct {
		name, id, password string
		want               bool
		compares           int64
	}{
		{"wrong password", "b", "guess", false, 1},
		{"unknown id", "zz", "guess", false, 1},
		{"unknown id with a known device's password", "zz", "pw", false, 1},
		{"empty id", "", "pw", false, 1},
		{"right password", "b", "pw", true, 1},
		{"right password again", "b", "pw", true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.compares.Load()
			if got := s.Verify(tt.id, tt.password); got != tt.want {
				t.Errorf("Verify = %v, want %v", got, tt.want)
			}
			if n := s.compares.Load() - before; n != tt.compares {
				t.Errorf("%d bcrypt comparisons, want %d", n, tt.compares)
			}
		})
	}
	if !s.Cached("b", "pw") || s.Cached("b", "guess") || s.Cached("a", "pw") || s.Cached("zz", "pw") {
		t.Error("Cached answers for something Verify has not accepted")
	}
}
