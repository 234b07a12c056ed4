package cloud_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestWhereThingsAre keeps the walk-through in docs/design.md ("Where things are")
// true: every file or folder it names exists, every name it lists with a step
// stands in one of that step's files, and the README links to it.
func TestWhereThingsAre(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "design.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Where things are\n")
	if !ok {
		t.Fatal(`docs/design.md has no "## Where things are" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	steps := walkthroughSteps(section)
	if len(steps) < 14 {
		t.Fatalf("%d steps in the walk-through, want at least 14", len(steps))
	}
	code := regexp.MustCompile("`([^`]+)`")
	repoPath := regexp.MustCompile(`^(agent|broker|cloud|cmd|deploy|docs|e2e|firmware-sim|gateway|internal|services|tools)/`)
	name := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*|[a-z]+\.[A-Z][A-Za-z0-9_]*)$`)
	for _, step := range steps {
		var files, names []string
		for _, m := range code.FindAllStringSubmatch(step, -1) {
			switch tok := m[1]; {
			case repoPath.MatchString(tok):
				files = append(files, tok)
			case name.MatchString(tok):
				names = append(names, tok)
			}
		}
		var text strings.Builder
		for _, f := range files {
			fi, err := os.Stat(filepath.Join("..", f))
			if err != nil {
				t.Errorf("the walk-through names %s: %v", f, err)
				continue
			}
			if fi.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join("..", f))
			if err != nil {
				t.Fatal(err)
			}
			text.Write(b)
		}
		for _, n := range names {
			if !regexp.MustCompile(`\b` + regexp.QuoteMeta(n) + `\b`).MatchString(text.String()) {
				t.Errorf("the walk-through names %s with %v, where it does not stand", n, files)
			}
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "docs/design.md#where-things-are") {
		t.Error("README.md does not link to docs/design.md#where-things-are")
	}
}

// walkthroughSteps splits a Markdown section into its list items ("1. …", "- …"),
// each with its continuation lines.
func walkthroughSteps(section string) []string {
	item := regexp.MustCompile(`^(\d+\.|-) `)
	var steps []string
	for _, line := range strings.Split(section, "\n") {
		switch {
		case item.MatchString(line):
			steps = append(steps, line)
		case len(steps) > 0 && strings.HasPrefix(line, "  "):
			steps[len(steps)-1] += "\n" + line
		}
	}
	return steps
}
