package gobuild

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// writeModule creates a throwaway module with one main package that imports
// a local library package.
func writeModule(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod":          "module example.com/probe\n\ngo 1.22\n",
		"cmd/app/main.go": "package main\n\nimport \"example.com/probe/lib\"\n\nfunc main() { println(lib.Greeting) }\n",
		"lib/lib.go":      "package lib\n\n// Greeting is printed.\nconst Greeting = \"hello\"\n",
		"other/other.go":  "package other\n\nconst Unused = 1\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestHashTracksCompiledSources(t *testing.T) {
	if _, err := GoCommand(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := writeModule(t)
	target := Target{Package: "example.com/probe/cmd/app", GOARCH: "arm64", Output: "bootstrap"}

	first, err := hashIn(ctx, dir, target)
	if err != nil {
		t.Fatal(err)
	}
	again, err := hashIn(ctx, dir, target)
	if err != nil {
		t.Fatal(err)
	}
	if first != again {
		t.Fatalf("hash is not stable: %s then %s", first, again)
	}

	// A file outside the dependency graph does not change the hash.
	if err := os.WriteFile(filepath.Join(dir, "other/other.go"), []byte("package other\n\nconst Unused = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h, _ := hashIn(ctx, dir, target); h != first {
		t.Errorf("hash changed after editing a package the program does not import")
	}

	// A dependency's source does.
	if err := os.WriteFile(filepath.Join(dir, "lib/lib.go"), []byte("package lib\n\n// Greeting is printed.\nconst Greeting = \"hi\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := hashIn(ctx, dir, target)
	if err != nil {
		t.Fatal(err)
	}
	if changed == first {
		t.Errorf("hash did not change after editing an imported package")
	}

	// So does the architecture.
	amd := target
	amd.GOARCH = "amd64"
	if h, _ := hashIn(ctx, dir, amd); h == changed {
		t.Errorf("arm64 and amd64 targets share a hash")
	}
}

func TestBuildIsStaticReproducibleAndForTheArchitecture(t *testing.T) {
	ctx := context.Background()
	dir := writeModule(t)
	for _, tt := range []struct {
		goarch  string
		machine elf.Machine
	}{{"arm64", elf.EM_AARCH64}, {"amd64", elf.EM_X86_64}} {
		t.Run(tt.goarch, func(t *testing.T) {
			target := Target{Package: "example.com/probe/cmd/app", GOARCH: tt.goarch, Output: "extensions/probe"}
			var bins [][]byte
			for i := 0; i < 2; i++ {
				out := t.TempDir()
				if err := buildIn(ctx, dir, target, out); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(out, "extensions", "probe")
				info, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if info.Mode().Perm()&0o111 != 0o111 {
					t.Errorf("binary mode %v is not executable by all", info.Mode())
				}
				f, err := elf.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				if f.Machine != tt.machine {
					t.Errorf("machine = %v, want %v", f.Machine, tt.machine)
				}
				for _, p := range f.Progs {
					if p.Type == elf.PT_INTERP {
						t.Errorf("binary has a dynamic interpreter; want a static binary")
					}
				}
				if f.Section(".symtab") != nil {
					t.Errorf("binary has a symbol table; want it stripped")
				}
				f.Close()
				data, _ := os.ReadFile(path)
				bins = append(bins, data)
			}
			if !bytes.Equal(bins[0], bins[1]) {
				t.Errorf("two builds of the same source differ: the build is not reproducible")
			}
		})
	}
}

func TestBuildReportsCompileErrors(t *testing.T) {
	dir := writeModule(t)
	if err := os.WriteFile(filepath.Join(dir, "lib/lib.go"), []byte("package lib\n\nconst Greeting = \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := buildIn(context.Background(), dir, Target{Package: "example.com/probe/cmd/app", GOARCH: "arm64", Output: "bootstrap"}, t.TempDir())
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("lib.go")) {
		t.Fatalf("err = %v, want the compiler's message naming lib.go", err)
	}
}

func TestMissingToolchain(t *testing.T) {
	t.Setenv("GO", "")
	t.Setenv("PATH", t.TempDir())
	if _, err := GoCommand(); !errors.Is(err, ErrNoToolchain) {
		t.Fatalf("GoCommand() err = %v, want ErrNoToolchain", err)
	}
}

func TestModuleDirFindsThisModule(t *testing.T) {
	dir, err := ModuleDir(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("module "+ModulePath+"\n")) {
		t.Errorf("ModuleDir() = %s, whose go.mod is not %s", dir, ModulePath)
	}
}
