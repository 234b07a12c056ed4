package storesuite

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// served serves items in pages of sizes, by a cursor that is the index of the
// page to serve; the page after the last has cursor "".
func served(items []int, sizes ...int) func(string) ([]int, string, error) {
	return func(cursor string) ([]int, string, error) {
		n := 0
		if cursor != "" {
			var err error
			if n, err = strconv.Atoi(cursor); err != nil {
				return nil, "", err
			}
		}
		start := 0
		for _, s := range sizes[:n] {
			start += s
		}
		page := items[start : start+sizes[n]]
		if n+1 == len(sizes) {
			return page, "", nil
		}
		return page, strconv.Itoa(n + 1), nil
	}
}

func TestPages(t *testing.T) {
	items := []int{1, 2, 3, 4, 5}
	tests := []struct {
		name  string
		limit int
		page  func(string) ([]int, string, error)
		err   string // "" when pages returns items
	}{
		{"full pages", 2, served(items, 2, 2, 1), ""},
		{"one page", 0, served(items, 5), ""},
		{"no limit, any sizes", 0, served(items, 1, 3, 1), ""},
		{"page over the limit", 2, served(items, 3, 2), "page of 3, limit 2"},
		{"short page with a cursor", 2, served(items, 2, 1, 2), "short page 1 (1) has a cursor"},
		{"empty page after a cursor", 0, served(items, 5, 0), "empty page 1 after a cursor"},
		{"failing call", 0, func(string) ([]int, string, error) { return nil, "", errors.New("down") }, "down"},
		{"endless", 0, func(string) ([]int, string, error) { return []int{1}, "again", nil }, "pagination does not end"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pages(tc.limit, tc.page)
			if fmt.Sprint(err) != cmp.Or(tc.err, "<nil>") {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if tc.err == "" && !slices.Equal(got, items) {
				t.Errorf("items %v, want %v", got, items)
			}
		})
	}
	if got := Pages(t, "list", 2, served(items, 2, 2, 1)); !slices.Equal(got, items) {
		t.Errorf("Pages = %v, want %v", got, items)
	}
}
