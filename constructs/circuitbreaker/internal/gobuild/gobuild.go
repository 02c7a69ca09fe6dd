// Package gobuild compiles the project's Go programs for AWS Lambda with the
// local Go toolchain and computes a content hash of everything compiled into
// each program. It has no CDK imports; the construct wraps it in CDK's local
// bundling.
package gobuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/buildflags"
)

// ModulePath is the module that holds the programs this package builds.
const ModulePath = "github.com/circuitbreaked/lambda-circuit-breaker"

// Flags are the build flags of a Lambda function: static, stripped,
// reproducible binaries without the RPC mode of the Lambda Go runtime.
var Flags = buildflags.Common

// ExtensionFlags are the build flags of the extension: Flags plus its size
// savings (see package buildflags).
var ExtensionFlags = buildflags.Extension

// Target is one program to compile.
type Target struct {
	// Package is the import path of the main package, such as
	// github.com/circuitbreaked/lambda-circuit-breaker/functions/updater.
	Package string
	// GOARCH is the target architecture: arm64 or amd64.
	GOARCH string
	// Output is the path of the binary relative to the bundle's output
	// directory, such as "bootstrap" or "extensions/circuit-breaker".
	Output string
	// Extension selects ExtensionFlags instead of Flags.
	Extension bool
}

// flags returns the build flags of t.
func (t Target) flags() []string {
	if t.Extension {
		return ExtensionFlags
	}
	return Flags
}

// ErrNoToolchain is returned when no go command can be found.
var ErrNoToolchain = errors.New("gobuild: the Go toolchain was not found on PATH (install Go 1.26 or newer, or set the GO environment variable to the go binary); the Lambda assets are compiled locally, without Docker")

// GoCommand returns the go binary to use: $GO when set, else go on PATH.
func GoCommand() (string, error) {
	if g := os.Getenv("GO"); g != "" {
		if _, err := os.Stat(g); err != nil {
			return "", fmt.Errorf("gobuild: GO=%s: %w", g, err)
		}
		return g, nil
	}
	g, err := exec.LookPath("go")
	if err != nil {
		return "", ErrNoToolchain
	}
	return g, nil
}

var (
	moduleDirOnce sync.Once
	moduleDir     string
	moduleDirErr  error
)

// ModuleDir returns the directory holding the source of ModulePath as the
// current Go module sees it: the main module itself, a replace directive's
// directory, or the read-only module cache. This lets a CDK app in another
// module build the programs by import path.
func ModuleDir(ctx context.Context) (string, error) {
	moduleDirOnce.Do(func() {
		moduleDir, moduleDirErr = findModuleDir(ctx)
	})
	return moduleDir, moduleDirErr
}

func findModuleDir(ctx context.Context) (string, error) {
	goBin, err := GoCommand()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Dir}}", ModulePath)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if dir := strings.TrimSpace(string(out)); err == nil && dir != "" {
		return dir, nil
	}
	// Not resolvable from the working directory (for example a program run
	// outside any module): fall back to this source file's location.
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
		if _, statErr := os.Stat(filepath.Join(dir, "go.mod")); statErr == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("gobuild: locate module %s: %v: %s", ModulePath, err, strings.TrimSpace(stderr.String()))
}

// Build compiles t into outputDir/t.Output for linux with CGO disabled.
func Build(ctx context.Context, t Target, outputDir string) error {
	dir, err := ModuleDir(ctx)
	if err != nil {
		return err
	}
	return buildIn(ctx, dir, t, outputDir)
}

func buildIn(ctx context.Context, dir string, t Target, outputDir string) error {
	goBin, err := GoCommand()
	if err != nil {
		return err
	}
	out := filepath.Join(outputDir, filepath.FromSlash(t.Output))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("gobuild: create output directory: %w", err)
	}
	args := append([]string{"build"}, t.flags()...)
	args = append(args, "-o", out, t.Package)
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = buildEnv(t.GOARCH)
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gobuild: go build %s for linux/%s in %s: %w\n%s", t.Package, t.GOARCH, dir, err, stderr.String())
	}
	if err := os.Chmod(out, 0o755); err != nil {
		return fmt.Errorf("gobuild: make %s executable: %w", out, err)
	}
	return nil
}

func buildEnv(goarch string) []string {
	return append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
}

// listedPackage is the part of `go list -json` output the hash reads.
type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	GoFiles    []string
	EmbedFiles []string
	Module     *struct {
		Path    string
		Version string
		Sum     string
		Replace *struct {
			Path    string
			Version string
			Sum     string
		}
	}
}

// Hash returns a hex SHA-256 over everything compiled into t: the Go
// version, the build flags, the target, and for each non-standard package
// in its dependency graph either the module version and checksum (for
// modules from the module cache) or the content of every Go and embedded
// file (for local code). The hash changes when any of those changes and
// does not change otherwise.
func Hash(ctx context.Context, t Target) (string, error) {
	dir, err := ModuleDir(ctx)
	if err != nil {
		return "", err
	}
	return hashIn(ctx, dir, t)
}

func hashIn(ctx context.Context, dir string, t Target) (string, error) {
	goBin, err := GoCommand()
	if err != nil {
		return "", err
	}
	tags := "lambda.norpc"
	if t.Extension {
		tags = "lambda.norpc,nethttpomithttp2"
	}
	cmd := exec.CommandContext(ctx, goBin, "list", "-deps", "-json=ImportPath,Dir,Standard,GoFiles,EmbedFiles,Module", "-tags", tags, t.Package)
	cmd.Dir = dir
	cmd.Env = buildEnv(t.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("gobuild: go list %s: %w: %s", t.Package, err, strings.TrimSpace(stderr.String()))
	}
	version, err := exec.CommandContext(ctx, goBin, "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("gobuild: go env GOVERSION: %w", err)
	}

	h := sha256.New()
	fmt.Fprintf(h, "go=%s\nflags=%q\ntarget=%s linux/%s %s\n", strings.TrimSpace(string(version)), t.flags(), t.Package, t.GOARCH, t.Output)
	dec := json.NewDecoder(bytes.NewReader(out))
	var pkgs []listedPackage
	for {
		var p listedPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return "", fmt.Errorf("gobuild: parse go list output: %w", err)
		}
		if !p.Standard {
			pkgs = append(pkgs, p)
		}
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].ImportPath < pkgs[j].ImportPath })
	for _, p := range pkgs {
		fmt.Fprintf(h, "package %s\n", p.ImportPath)
		if m := p.Module; m != nil && m.Replace == nil && m.Sum != "" {
			// A module from the module cache is identified by its checksum.
			fmt.Fprintf(h, "module %s %s %s\n", m.Path, m.Version, m.Sum)
			continue
		}
		files := append(append([]string{}, p.GoFiles...), p.EmbedFiles...)
		sort.Strings(files)
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(p.Dir, f))
			if err != nil {
				return "", fmt.Errorf("gobuild: hash %s: %w", f, err)
			}
			sum := sha256.Sum256(data)
			fmt.Fprintf(h, "file %s %x\n", f, sum)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
