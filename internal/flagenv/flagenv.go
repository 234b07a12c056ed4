// Package flagenv parses a flag set whose every flag -x-y also reads the environment
// variable ATRIUM_X_Y. A flag given on the command line wins over the environment.
package flagenv

import (
	"flag"
	"fmt"
	"strings"
)

// Prefix is the prefix of Atrium's environment variables.
const Prefix = "ATRIUM_"

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return Prefix + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(name))
}

// Strip returns env (as os.Environ gives it) without Atrium's variables: the
// environment of a child program that is given every setting as a flag.
func Strip(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, Prefix) {
			out = append(out, kv)
		}
	}
	return out
}

// Parse parses args into fs, then fills every flag not given on the command line from
// its environment variable. It also makes -h list each flag with its variable.
func Parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	setUsage(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return err
}

func setUsage(fs *flag.FlagSet) {
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  -%s", f.Name)
			if name != "" {
				fmt.Fprintf(out, " %s", name)
			}
			fmt.Fprintf(out, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" {
				fmt.Fprintf(out, " (default %q)", f.DefValue)
			}
			fmt.Fprintf(out, " [$%s]\n", EnvName(f.Name))
		})
	}
}
