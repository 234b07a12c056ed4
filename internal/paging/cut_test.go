package paging

import (
	"slices"
	"strconv"
	"testing"
)

func TestCut(t *testing.T) {
	cursor := func(last int) string { return "after " + strconv.Itoa(last) }
	for _, tt := range []struct {
		items    []int
		limit    int
		want     []int
		wantNext string
	}{
		{nil, 2, nil, ""},
		{[]int{1, 2}, 2, []int{1, 2}, ""},
		{[]int{1, 2, 3}, 2, []int{1, 2}, "after 2"},
		{[]int{1, 2, 3}, 1, []int{1}, "after 1"},
	} {
		got, next := Cut(tt.items, tt.limit, cursor)
		if !slices.Equal(got, tt.want) || next != tt.wantNext {
			t.Errorf("Cut(%v, %d) = %v, %q; want %v, %q", tt.items, tt.limit, got, next, tt.want, tt.wantNext)
		}
	}
}
