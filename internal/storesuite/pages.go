package storesuite

import (
	"fmt"
	"testing"
)

// maxPages bounds the pages Pages reads before it calls a listing endless.
const maxPages = 10000

// Pages reads every page of a listing by cursor and returns their items in
// order. page is one call of the store: the cursor ("" for the first page) in,
// the page's items and the next cursor ("" after the last page) out. what
// names the call in the messages. Pages fails t when a call fails, when a page
// after a cursor is empty, when the listing does not end, and, with a limit
// (> 0), when a page holds more than limit items or a short page has a cursor.
func Pages[T any](t testing.TB, what string, limit int, page func(cursor string) ([]T, string, error)) []T {
	t.Helper()
	all, err := pages(limit, page)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return all
}

// pages is Pages returning what it finds wrong.
func pages[T any](limit int, page func(cursor string) ([]T, string, error)) ([]T, error) {
	var all []T
	cursor := ""
	for n := 0; n <= maxPages; n++ {
		items, next, err := page(cursor)
		if err != nil {
			return nil, err
		}
		if limit > 0 && len(items) > limit {
			return nil, fmt.Errorf("page of %d, limit %d", len(items), limit)
		}
		if len(items) == 0 && n > 0 {
			return nil, fmt.Errorf("empty page %d after a cursor", n)
		}
		all = append(all, items...)
		if next == "" {
			return all, nil
		}
		if limit > 0 && len(items) < limit {
			return nil, fmt.Errorf("short page %d (%d) has a cursor", n, len(items))
		}
		cursor = next
	}
	return nil, fmt.Errorf("pagination does not end")
}
