package test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
)

// The README and the topic pages under docs/ are checked against the code:
// every environment variable, prop, accessor, input key and endpoint the
// code has is documented, every one the pages document exists, and every
// page keeps the sections users look for.

// docPages are the topic pages and the sections each must keep.
var docPages = map[string][]string{
	"README.md": {
		"## Quick start",
		"### Deploy and destroy",
		"## Use the construct in your own CDK app",
		"### Attach the layer to a function",
		"## Run the stack locally",
		"## Documentation",
	},
	"docs/construct.md": {
		"## Use the construct in your own CDK app",
		"## Construct properties",
		"## Accessors",
		"## Grants",
		"## Metrics",
		"## Attach the layer to a function",
		"## Execution models",
		"## Add a monitored service",
	},
	"docs/clients.md": {
		"## Which errors count",
		"## Kill switch",
		"## What the clients do",
		"## Python",
		"## Node.js",
		"## Migrating from the original sample",
		"## Tests and measurements",
	},
	"docs/extension.md": {
		"## Extension API",
		"## When something fails",
		"## Extension configuration",
	},
	"docs/state-model.md": {
		"## Transitions",
		"## Operator overrides",
		"## Race-safe writes",
		"## Item layout",
		"## Go API",
		"## Costs",
	},
	"docs/updater.md": {
		"## Input",
		"## The check",
		"## How fast a failure opens the circuit",
	},
	"docs/passive-detection.md": {
		"## Outcomes to counts",
		"## Counts to a trip",
		"## HALF_OPEN probe lease",
		"## Permissions",
		"## Cost",
		"## Measured: failure to refusal",
	},
	"docs/operations.md": {
		"## State-change events",
		"## Metrics",
		"## Alarms and dashboard",
		"## Force a circuit open or closed: `circuitctl`",
	},
	"docs/local-and-tests.md": {
		"## Run the stack locally",
		"## Tests",
	},
	"docs/benchmarks.md": {
		"## Run",
		"## Results",
		"## Notes on the results",
	},
}

// page returns one page of the documentation, by its path from the
// repository root.
func page(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// allDocs returns the README and every page under docs/, joined.
func allDocs(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(page(t, "README.md"))
	names, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b.WriteString("\n")
		b.WriteString(page(t, filepath.ToSlash(strings.TrimPrefix(n, ".."+string(filepath.Separator)))))
	}
	return b.String()
}

// missingSections lists the sections of want that doc lacks.
func missingSections(doc string, want []string) []string {
	var missing []string
	for _, h := range want {
		if !strings.Contains(doc, "\n"+h+"\n") {
			missing = append(missing, h)
		}
	}
	return missing
}

// Every page keeps its sections, the README links every topic page, and
// every relative link between pages points at a file that exists.
func TestDocsSections(t *testing.T) {
	readme := page(t, "README.md")
	for name, sections := range docPages {
		doc := page(t, name)
		for _, h := range missingSections(doc, sections) {
			t.Errorf("%s has no section %q", name, h)
		}
		if strings.HasPrefix(name, "docs/") && !strings.Contains(readme, "]("+name+")") {
			t.Errorf("README.md does not link %s", name)
		}
		link := regexp.MustCompile(`\]\(([^)#:]+\.md)(#[^)]*)?\)`)
		for _, m := range link.FindAllStringSubmatch(doc, -1) {
			target := filepath.Join("..", filepath.Dir(name), m[1])
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s links %s, which does not exist", name, m[1])
			}
		}
	}
	pages, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil || len(pages) < len(docPages)-1 {
		t.Fatalf("docs/ holds %d pages (%v), want at least %d", len(pages), err, len(docPages)-1)
	}
	for _, p := range pages {
		if name := "docs/" + filepath.Base(p); !strings.Contains(readme, "]("+name+")") {
			t.Errorf("README.md does not link %s: every topic page is in its table of links", name)
		}
	}
	if n := strings.Count(readme, "\n"); n > 300 {
		t.Errorf("README.md has %d lines, want at most 300: move the detail to docs/", n)
	}
}

// The section check itself fails when a section goes missing.
func TestDocsSectionCheckCatchesMissingSection(t *testing.T) {
	doc := page(t, "docs/extension.md")
	cut := strings.Replace(doc, "\n## Extension configuration\n", "\n", 1)
	if got := missingSections(cut, docPages["docs/extension.md"]); !slices.Equal(got, []string{"## Extension configuration"}) {
		t.Errorf("missing sections of a page without its configuration section = %q", got)
	}
}

// goFiles parses every non-test Go file of the module outside node_modules,
// testdata and the test helpers.
func goFiles(t *testing.T) map[string]*ast.File {
	t.Helper()
	files := map[string]*ast.File{}
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case strings.HasPrefix(d.Name(), ".") && rel != ".", d.Name() == "node_modules", d.Name() == "testdata",
				d.Name() == "cdk.out", rel == "internal/testutil", rel == "test":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		files[rel] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

var envName = regexp.MustCompile(`^CIRCUIT_BREAKER_[A-Z_]+$`)

// codeEnvVars returns the environment variables the code reads or sets:
// every CIRCUIT_BREAKER_* string, and every string literal passed to a
// function named Getenv, getenv or LookupEnv.
func codeEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	for _, f := range goFiles(t) {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if v := unquote(n); envName.MatchString(v) {
					vars[v] = true
				}
			case *ast.CallExpr:
				var name string
				switch fn := n.Fun.(type) {
				case *ast.Ident:
					name = fn.Name
				case *ast.SelectorExpr:
					name = fn.Sel.Name
				}
				if (name == "Getenv" || name == "getenv" || name == "LookupEnv") && len(n.Args) == 1 {
					if lit, ok := n.Args[0].(*ast.BasicLit); ok {
						vars[unquote(lit)] = true
					}
				}
			}
			return true
		})
	}
	return vars
}

func unquote(lit *ast.BasicLit) string {
	if lit.Kind != token.STRING {
		return ""
	}
	v, _ := strconv.Unquote(lit.Value)
	return v
}

// Every environment variable the code reads is documented, the extension's
// each with a row in its configuration table, and every CIRCUIT_BREAKER_*
// variable the pages name exists in the code.
func TestDocsEnvironmentVariables(t *testing.T) {
	docs := allDocs(t)
	code := codeEnvVars(t)
	if len(code) < 15 {
		t.Fatalf("found %d environment variables in the code, want at least 15: %v", len(code), code)
	}
	for v := range code {
		if !strings.Contains(docs, "`"+v+"`") && !strings.Contains(docs, "`"+v+"=") {
			t.Errorf("environment variable %s is read by the code but documented nowhere", v)
		}
	}
	for _, v := range regexp.MustCompile(`CIRCUIT_BREAKER_[A-Z_]+`).FindAllString(docs, -1) {
		if !code[v] {
			t.Errorf("the docs name %s, which the code does not read", v)
		}
	}
	ext := page(t, "docs/extension.md")
	extVars := constStrings(t, "extension/api/env.go")
	if len(extVars) < 10 {
		t.Fatalf("found %d variables in extension/api/env.go, want at least 10", len(extVars))
	}
	documented := firstColumn(t, ext, "| Variable | Default | Meaning |")
	for _, v := range extVars {
		if !slices.Contains(documented, v) {
			t.Errorf("docs/extension.md's configuration table has no row for %s", v)
		}
	}
}

// constStrings returns the string constants declared in one file.
func constStrings(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				for _, v := range s.(*ast.ValueSpec).Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						out = append(out, unquote(lit))
					}
				}
			}
		}
	}
	return out
}

var backticked = regexp.MustCompile("`([^`]+)`")

// firstColumn returns the backticked names in the first column of the
// table whose header row is header. A name without a dot that follows a
// dotted one in the same cell takes its prefix: "`Breaker.A` / `B`" is
// Breaker.A and Breaker.B.
func firstColumn(t *testing.T, doc, header string) []string {
	t.Helper()
	i := strings.Index(doc, "\n"+header+"\n")
	if i < 0 {
		t.Fatalf("no table with the header %q", header)
		return nil
	}
	var names []string
	rows := strings.Split(doc[i+len(header)+2:], "\n")
	for _, row := range rows[1:] { // rows[0] is the |---| line
		if !strings.HasPrefix(row, "|") {
			break
		}
		cell := strings.Split(row, "|")[1]
		prefix := ""
		for _, m := range backticked.FindAllStringSubmatch(cell, -1) {
			name := m[1]
			if j := strings.LastIndex(name, "."); j >= 0 {
				prefix = name[:j+1]
			} else {
				name = prefix + name
			}
			names = append(names, name)
		}
	}
	return names
}

// structFields returns the fields of a struct type declared in file: their
// JSON names when json is true, else their Go names; with expand, fields
// whose type is another struct of the same file are expanded as Field.Sub.
func structFields(t *testing.T, file, typeName string, json, expand bool) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	structs := map[string]*ast.StructType{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
			for _, s := range g.Specs {
				if st, ok := s.(*ast.TypeSpec).Type.(*ast.StructType); ok {
					structs[s.(*ast.TypeSpec).Name.Name] = st
				}
			}
		}
	}
	var fields func(string, string) []string
	fields = func(name, prefix string) []string {
		st := structs[name]
		if st == nil {
			t.Fatalf("%s declares no struct %s", file, name)
		}
		var out []string
		for _, fld := range st.Fields.List {
			for _, id := range fld.Names {
				if !id.IsExported() {
					continue
				}
				n := id.Name
				if json && fld.Tag != nil {
					tag := reflect.StructTag(unquoteTag(fld.Tag.Value)).Get("json")
					if tag == "-" {
						continue
					}
					if s, _, _ := strings.Cut(tag, ","); s != "" {
						n = s
					}
				}
				if typ, ok := fld.Type.(*ast.Ident); ok && structs[typ.Name] != nil && expand {
					out = append(out, fields(typ.Name, prefix+n+".")...)
					continue
				}
				out = append(out, prefix+n)
			}
		}
		return out
	}
	return fields(typeName, "")
}

// goFields returns the exported fields of struct type typ by Go name; with
// expand, fields whose type is a struct (the groups of settings, declared
// in other packages) are expanded as Field.Sub.
func goFields(typ reflect.Type, expand bool) []string {
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		if expand && f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			for _, sub := range goFields(f.Type, false) {
				out = append(out, f.Name+"."+sub)
			}
			continue
		}
		out = append(out, f.Name)
	}
	return out
}

func unquoteTag(s string) string {
	v, err := strconv.Unquote(s)
	if err != nil {
		return ""
	}
	return v
}

// sameNames reports the names only in code and only in the docs.
func sameNames(t *testing.T, what string, code, docs []string) {
	t.Helper()
	if len(code) == 0 {
		t.Fatalf("%s: found nothing in the code", what)
	}
	for _, c := range code {
		if !slices.Contains(docs, c) {
			t.Errorf("%s: %s is in the code but not documented", what, c)
		}
	}
	for _, d := range docs {
		if !slices.Contains(code, d) {
			t.Errorf("%s: the docs list %s, which the code does not have", what, d)
		}
	}
}

// Every prop, setting and input key is documented, and every documented
// one exists.
func TestDocsProps(t *testing.T) {
	construct := page(t, "docs/construct.md")
	props := "constructs/circuitbreaker/props.go"
	sameNames(t, "CircuitBreakedServiceProps", structFields(t, props, "CircuitBreakedServiceProps", false, false),
		firstColumn(t, construct, "| property | type | default |"))
	sameNames(t, "MonitoredService", goFields(reflect.TypeFor[circuitbreaker.MonitoredService](), true),
		firstColumn(t, construct, "| field | default | rule |"))
	sameNames(t, "ExtensionSettings", goFields(reflect.TypeFor[circuitbreaker.ExtensionSettings](), false),
		firstColumn(t, construct, "| field | variable | default |"))

	keys := regexp.MustCompile("(?s)\nKeys: (.*?)\\s\\(durations")
	m := keys.FindStringSubmatch(construct)
	if m == nil {
		t.Fatal("docs/construct.md lists no keys of infra/services.json")
	}
	var listed []string
	for _, k := range backticked.FindAllStringSubmatch(m[1], -1) {
		listed = append(listed, k[1])
	}
	sameNames(t, "infra/services.json keys", policy.FlatKeys(appconfig.Service{}), listed)

	sameNames(t, "updater input", structFields(t, "internal/updater/input.go", "Input", true, false),
		firstColumn(t, page(t, "docs/updater.md"), "| Key | Type | Required | Default | Accepted |"))
	sameNames(t, "CIRCUIT_BREAKER_POLICIES", policy.FlatKeys(policy.Policy{}),
		firstColumn(t, page(t, "docs/extension.md"), "| Key | Default | Range |"))
}

// Every method of CircuitBreakedService is in the accessor, grant or
// metric table, and every row there is a method.
func TestDocsAccessors(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "constructs", "circuitbreaker", "service.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var methods []string
	ast.Inspect(f, func(n ast.Node) bool {
		if ts, ok := n.(*ast.TypeSpec); ok && ts.Name.Name == "CircuitBreakedService" {
			for _, m := range ts.Type.(*ast.InterfaceType).Methods.List {
				for _, id := range m.Names {
					methods = append(methods, id.Name)
				}
			}
		}
		return true
	})
	construct := page(t, "docs/construct.md")
	var documented []string
	for _, header := range []string{"| accessor | returns |", "| method | grants |", "| method | metric | statistic |"} {
		for _, name := range firstColumn(t, construct, header) {
			documented = append(documented, strings.SplitN(name, "(", 2)[0])
		}
	}
	sameNames(t, "CircuitBreakedService methods", methods, documented)
}

// routes returns the patterns registered with HandleFunc in file, with the
// method left out and constants of the same file resolved.
func routes(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", file), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]string{}
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok {
						consts[vs.Names[i].Name] = unquote(lit)
					}
				}
			}
		}
	}
	var eval func(ast.Expr) string
	eval = func(e ast.Expr) string {
		switch e := e.(type) {
		case *ast.BasicLit:
			return unquote(e)
		case *ast.Ident:
			return consts[e.Name]
		case *ast.BinaryExpr:
			return eval(e.X) + eval(e.Y)
		}
		return ""
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "HandleFunc" && len(c.Args) == 2 {
				p := eval(c.Args[0])
				if i := strings.Index(p, " "); i >= 0 {
					p = p[i+1:]
				}
				if p != "/" && p != "" && !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
		return true
	})
	return out
}

// Every endpoint of the extension and of the local mock API is documented,
// and every documented one is served.
func TestDocsEndpoints(t *testing.T) {
	var documented []string
	for _, req := range firstColumn(t, page(t, "docs/extension.md"), "| Request | Answer |") {
		_, path, _ := strings.Cut(req, " ")
		path, _, _ = strings.Cut(path, "?")
		documented = append(documented, path)
	}
	sameNames(t, "extension API", routes(t, "extension/internal/server/server.go"), documented)

	local := page(t, "docs/local-and-tests.md")
	mock := routes(t, "internal/testutil/mockapi/mockapi.go")
	var mentioned []string
	for _, m := range regexp.MustCompile("(?:127\\.0\\.0\\.1:4280|`)(/(?:api|control)[a-z/]*)").FindAllStringSubmatch(local, -1) {
		if !slices.Contains(mentioned, m[1]) {
			mentioned = append(mentioned, m[1])
		}
	}
	sameNames(t, "local mock API", mock, mentioned)
}
