package paging

import (
	"errors"
	"testing"

	"github.com/atrium-iot/atrium/internal/apperr"
)

func TestSize(t *testing.T) {
	for _, tt := range []struct{ limit, want int }{
		{-1, DefaultLimit}, {0, DefaultLimit}, {1, 1}, {MaxLimit, MaxLimit}, {MaxLimit + 1, MaxLimit},
	} {
		if got := Size(tt.limit); got != tt.want {
			t.Errorf("Size(%d) = %d, want %d", tt.limit, got, tt.want)
		}
	}
}

func TestCursor(t *testing.T) {
	type cur struct {
		TS   int64  `json:"t"`
		Type string `json:"y"`
	}
	in := cur{1764072000000, "co2"}
	var out cur
	if err := DecodeCursor(EncodeCursor(in), &out); err != nil || out != in {
		t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
	}
	for _, bad := range []string{"", "!!", EncodeCursor(map[string]int{"x": 1}), EncodeCursor("a string")} {
		if err := DecodeCursor(bad, &out); !errors.Is(err, apperr.ErrInvalid) {
			t.Errorf("DecodeCursor(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
