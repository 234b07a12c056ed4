// Package version holds the build's version and commit, set with -ldflags -X.
package version

import "runtime/debug"

// Set at build time: -ldflags "-X github.com/atrium-iot/atrium/internal/version.Version=v1.2.3 -X ….Commit=abc123".
var (
	Version = "dev"
	Commit  = ""
)

// String is "VERSION (commit COMMIT)", falling back to the VCS info Go embeds.
func String() string {
	c := Commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return Version + " (commit " + c + ")"
}
