package test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readme returns the repository's README.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The README keeps the sections users look for.
func TestReadmeSections(t *testing.T) {
	doc := readme(t)
	for _, h := range []string{
		"## Quick start",
		"## Use the construct in your own CDK app",
		"### Attach the layer to a function",
		"### Add a monitored service",
		"## Operate the breaker",
		"## Run the stack locally",
		"## Tests",
		"## State model and table layout",
		"## Updater",
		"## Extension API",
		"### When something fails",
		"## Extension configuration",
		"## Benchmarks",
	} {
		if !strings.Contains(doc, "\n"+h+"\n") {
			t.Errorf("README has no section %q", h)
		}
	}
}

// Every environment variable the extension reads has a row in the
// README's configuration table.
func TestReadmeDocumentsEveryExtensionVariable(t *testing.T) {
	doc := readme(t)
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "extension", "api", "env.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			if v, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(v, "CIRCUIT_BREAKER_") {
				names = append(names, v)
			}
		}
		return true
	})
	if len(names) < 10 {
		t.Fatalf("found %d variables in extension/api/env.go, want at least 10: %v", len(names), names)
	}
	for _, name := range names {
		if !strings.Contains(doc, "\n| `"+name+"` |") {
			t.Errorf("README's extension configuration table has no row for %s", name)
		}
	}
}
