package notification

// Series and Repeat make readings for the service's tests (package
// notification_test) as they do for the engine's.
var (
	Series = series
	Repeat = repeat
)
