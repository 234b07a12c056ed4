package paging

// Cut returns the page of a list read with one item more than limit: at most
// limit items and, when there were more, the cursor that cursor makes of the
// last item kept ("" when the list ends on this page).
func Cut[T any](items []T, limit int, cursor func(last T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, cursor(items[limit-1])
}
