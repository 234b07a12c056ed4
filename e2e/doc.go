// Package e2e holds Atrium's end-to-end tests: the real programs (atrium
// -target=sensor, atrium-agent, atrium-sim), built once by TestMain and run as
// processes on free 127.0.0.1 ports, talking MQTT and HTTP as in production.
//
// The tests check that what the simulated firmware publishes, or replays from a
// recorded data set, is what the sensor service stores; that faults end up where
// the contract says (dead letters, duplicates); and that every program drains and
// exits cleanly on SIGINT. They need the Go toolchain to build the programs and
// take well under a minute; `go test -short` skips them. ATRIUM_E2E_RACE=1 builds
// the programs with the race detector.
//
//	go test ./e2e
//	go test -race -count=1 -v ./e2e
//	ATRIUM_E2E_RACE=1 go test -count=1 ./e2e
package e2e
