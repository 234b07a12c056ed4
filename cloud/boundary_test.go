package cloud_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/atrium-iot/atrium/"

// TestImportBoundaries keeps the tree's shape: code under internal/ is for every part
// and knows none of them, and a service never imports another service (tests
// included in both). Only this package, the composition root, and the mains wire
// parts together.
func TestImportBoundaries(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} | {{join .TestImports " "}} {{join .XTestImports " "}}`, module+"...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	parts := []string{"services/", "gateway", "agent", "broker", "firmware-sim", "cloud"}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		code, tests, _ := strings.Cut(line, " | ")
		fields := strings.Fields(code)
		if len(fields) == 0 {
			continue
		}
		pkg := strings.TrimPrefix(fields[0], module)
		checked++
		if strings.HasPrefix(pkg, "internal/") {
			for _, imp := range append(fields[1:], strings.Fields(tests)...) {
				for _, part := range parts {
					if p := strings.TrimPrefix(imp, module); p != imp && (p == strings.TrimSuffix(part, "/") || strings.HasPrefix(p, part)) {
						t.Errorf("%s imports %s: internal/ is shared code and knows no part", pkg, imp)
					}
				}
			}
		}
		if svc, ok := serviceOf(pkg); ok {
			for _, imp := range append(fields[1:], strings.Fields(tests)...) {
				if other, ok := serviceOf(strings.TrimPrefix(imp, module)); ok && other != svc {
					t.Errorf("%s (or its tests) imports %s: a service never imports another", pkg, imp)
				}
			}
		}
	}
	if checked < 20 {
		t.Fatalf("go list named %d packages: not the whole module?", checked)
	}
}

// serviceOf names the service a package path (relative to the module) belongs to.
func serviceOf(pkg string) (string, bool) {
	rest, ok := strings.CutPrefix(pkg, "services/")
	if !ok {
		return "", false
	}
	name, _, _ := strings.Cut(rest, "/")
	return name, name != "" && !strings.HasSuffix(name, ".go")
}
