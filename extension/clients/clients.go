// Package clients holds the extension's Python and Node.js clients and
// places them in a layer directory as Lambda expects them:
//
//	python/lambda_circuit_breaker/__init__.py            (and py.typed; Lambda adds /opt/python to sys.path)
//	nodejs/node_modules/lambda-circuit-breaker/index.js  (and index.d.ts, middy.js, middy.d.ts, package.json)
//
// The clients use only their language's standard library. Their tests
// (python/test_lambda_circuit_breaker.py and nodejs/test/) run from this
// package's Go tests against the real extension binary.
package clients

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

//go:embed python/lambda_circuit_breaker/__init__.py python/lambda_circuit_breaker/py.typed
//go:embed nodejs/lambda-circuit-breaker/index.js nodejs/lambda-circuit-breaker/index.d.ts nodejs/lambda-circuit-breaker/package.json
//go:embed nodejs/lambda-circuit-breaker/middy.js nodejs/lambda-circuit-breaker/middy.d.ts
var sources embed.FS

// PythonModule and NodePackage are the names functions import.
const (
	PythonModule = "lambda_circuit_breaker"
	NodePackage  = "lambda-circuit-breaker"
)

// Files maps each client file's path inside the layer (slash-separated,
// such as "python/lambda_circuit_breaker/__init__.py") to its content.
func Files() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(sources, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := sources.ReadFile(p)
		if err != nil {
			return err
		}
		out[layerPath(p)] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("clients: read embedded files: %w", err)
	}
	return out, nil
}

// layerPath maps a source path to its place in the layer: the Node.js
// package goes under nodejs/node_modules/.
func layerPath(src string) string {
	if rest, ok := cutDir(src, "nodejs"); ok {
		return path.Join("nodejs", "node_modules", rest)
	}
	return src
}

func cutDir(p, dir string) (string, bool) {
	if len(p) > len(dir) && p[:len(dir)+1] == dir+"/" {
		return p[len(dir)+1:], true
	}
	return "", false
}

// Write places the clients in dir (a layer's root, or /opt), creating
// directories as needed. Files are readable by all, not executable.
func Write(dir string) error {
	files, err := Files()
	if err != nil {
		return err
	}
	for p, data := range files {
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("clients: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("clients: %w", err)
		}
	}
	return nil
}

// Hash returns a hex SHA-256 over every client file's layer path and
// content: it changes exactly when what Write writes changes.
func Hash() (string, error) {
	files, err := Files()
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, p := range names {
		sum := sha256.Sum256(files[p])
		fmt.Fprintf(h, "%s %x\n", p, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
