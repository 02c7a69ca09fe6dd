package clients

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
)

func TestFilesLayout(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for p := range files {
		names = append(names, p)
	}
	slices.Sort(names)
	want := []string{
		"nodejs/node_modules/lambda-circuit-breaker/index.d.ts",
		"nodejs/node_modules/lambda-circuit-breaker/index.js",
		"nodejs/node_modules/lambda-circuit-breaker/middy.d.ts",
		"nodejs/node_modules/lambda-circuit-breaker/middy.js",
		"nodejs/node_modules/lambda-circuit-breaker/package.json",
		"python/lambda_circuit_breaker/__init__.py",
		"python/lambda_circuit_breaker/py.typed",
	}
	if !slices.Equal(names, want) {
		t.Errorf("layer files = %v, want %v", names, want)
	}
	var pkg struct{ Name, Main, Types string }
	if err := json.Unmarshal(files["nodejs/node_modules/lambda-circuit-breaker/package.json"], &pkg); err != nil {
		t.Fatal(err)
	}
	if pkg.Name != NodePackage || pkg.Main != "index.js" || pkg.Types != "index.d.ts" {
		t.Errorf("package.json = %+v", pkg)
	}
	dir := t.TempDir()
	if err := Write(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if info, err := os.Stat(filepath.Join(dir, p)); err != nil || info.Mode().Perm() != 0o644 {
			t.Errorf("%s after Write: %v, %v", p, info, err)
		}
	}
	h1, err := Hash()
	if err != nil || len(h1) != 64 {
		t.Fatalf("Hash = %q, %v", h1, err)
	}
	if h2, _ := Hash(); h2 != h1 {
		t.Errorf("Hash is not stable: %s then %s", h1, h2)
	}
}

// The clients speak the same API and read the same environment as the Go
// client: the constants they hard-code must match package api's.
func TestClientsMatchTheAPI(t *testing.T) {
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"python/lambda_circuit_breaker/__init__.py", "nodejs/node_modules/lambda-circuit-breaker/index.js"} {
		src := string(files[p])
		for _, want := range []string{
			"X-Circuit-Breaker-Token", "CIRCUIT_BREAKER_PORT", "AWS_SESSION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
			"CIRCUIT_BREAKER_FAIL_MODE", "CIRCUIT_BREAKER_MISS_TIMEOUT", "4243", "/outcomes", "/circuits?ids=",
		} {
			if !strings.Contains(src, want) {
				t.Errorf("%s does not mention %s", p, want)
			}
		}
	}
}

// harness runs the real extension binary beside dynalite and the fake
// Extensions API, with a control API the language suites use to set up
// circuits in the table and to read what the extension wrote.
type harness struct {
	port    int
	token   string
	control string
	layer   string
	proxy   *closingProxy
}

const testToken = "client-suite-token"

func startHarness(t *testing.T) *harness {
	t.Helper()
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	st := store.New(db, table)

	bin := rie.Build(t, "./extension")
	fake := extapitest.Start()
	t.Cleanup(fake.Close)
	port := rie.FreePort(t)
	ext := exec.Command(bin)
	ext.Env = []string{
		"AWS_LAMBDA_RUNTIME_API=" + fake.Addr,
		"CIRCUIT_BREAKER_TABLE=" + table,
		"CIRCUIT_BREAKER_PORT=" + strconv.Itoa(port),
		"CIRCUIT_BREAKER_MISS_TIMEOUT=1s", // dynalite on a loaded machine
		"CIRCUIT_BREAKER_LOG_LEVEL=warn",
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_SESSION_TOKEN=" + testToken,
		"AWS_ENDPOINT_URL_DYNAMODB=" + srv.Endpoint,
	}
	var logs strings.Builder
	var logMu sync.Mutex
	ext.Stderr = writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	})
	if err := ext.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = ext.Wait(); close(exited) }()
	t.Cleanup(func() {
		fake.SendShutdown(2 * time.Second)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = ext.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("extension logs:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	select {
	case <-fake.FirstNext():
	case <-time.After(20 * time.Second):
		t.Fatal("the extension did not call event/next")
	}

	var flushMu sync.Mutex
	flushes := 0
	mux := http.NewServeMux()
	// PUT /circuits/{id} {"state":"HALF_OPEN","version":3,"successes":1,"retryInMs":-1}
	mux.HandleFunc("PUT /circuits/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			State     string `json:"state"`
			Version   int64  `json:"version"`
			Successes int    `json:"successes"`
			OpenCount int    `json:"openCount"`
			RetryInMs *int64 `json:"retryInMs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s, err := circuit.ParseState(in.State)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c := circuit.Circuit{ID: r.PathValue("id"), State: s, Version: in.Version, UpdatedAt: time.Now(),
			ConsecutiveSuccesses: in.Successes, OpenCount: in.OpenCount, Reason: "set by the client suite"}
		if in.RetryInMs != nil {
			c.RetryAt = time.Now().Add(time.Duration(*in.RetryInMs) * time.Millisecond)
		}
		item, err := store.Encode(c)
		if err == nil {
			_, err = db.PutItem(r.Context(), &dynamodb.PutItemInput{TableName: &table, Item: item})
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /circuits/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, found, err := st.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"found": found, "state": string(c.EffectiveState(time.Now())), "version": c.Version, "successes": c.ConsecutiveSuccesses})
	})
	// flush sends an INVOKE event and returns once the extension has
	// finished it (it flushes its counts before its next event/next call).
	flush := func() error {
		flushMu.Lock()
		defer flushMu.Unlock()
		flushes++
		before := fake.NextCalls()
		fake.SendInvoke("flush-" + strconv.Itoa(flushes))
		deadline := time.Now().Add(10 * time.Second)
		for fake.NextCalls() <= before {
			if time.Now().After(deadline) {
				return fmt.Errorf("the extension did not finish the INVOKE")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}
	// GET /buckets/{id}?failures=N sums the counts of the last two minutes'
	// buckets once they hold at least N failures, sending INVOKE events
	// (which flush the extension's counts) until then, for at most 20 s: the
	// extension may write a bucket only once it has ended.
	mux.HandleFunc("GET /buckets/{id}", func(w http.ResponseWriter, r *http.Request) {
		want, _ := strconv.ParseInt(r.URL.Query().Get("failures"), 10, 64)
		deadline := time.Now().Add(20 * time.Second)
		for {
			if err := flush(); err != nil {
				http.Error(w, err.Error(), http.StatusGatewayTimeout)
				return
			}
			now := time.Now().Truncate(5 * time.Second)
			var starts []time.Time
			for i := range 24 {
				starts = append(starts, now.Add(-time.Duration(i)*5*time.Second))
			}
			bs, err := st.GetBuckets(r.Context(), r.PathValue("id"), starts)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			var sum circuit.Counts
			for _, b := range bs {
				sum.Calls += b.Calls
				sum.Failures += b.Failures
			}
			if sum.Failures >= want || time.Now().After(deadline) {
				writeJSON(w, map[string]int64{"calls": sum.Calls, "failures": sum.Failures})
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	prx := startClosingProxy(t, port)
	// POST /proxy/close closes every connection the proxy holds from a
	// client, as the extension's server closes keep-alive connections idle
	// past its idle timeout.
	mux.HandleFunc("POST /proxy/close", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]int{"closed": prx.closeAll()})
	})
	// POST /proxy/drop-next-answer: the next answer the extension sends
	// through the proxy is dropped and its connection closed, as when a
	// connection breaks after the request reached the extension.
	mux.HandleFunc("POST /proxy/drop-next-answer", func(w http.ResponseWriter, r *http.Request) {
		prx.dropNext.Store(true)
		w.WriteHeader(http.StatusNoContent)
	})
	ctl := httptest.NewServer(mux)
	t.Cleanup(ctl.Close)

	layer := t.TempDir()
	if err := Write(layer); err != nil {
		t.Fatal(err)
	}
	return &harness{port: port, token: testToken, control: ctl.URL, layer: layer, proxy: prx}
}

// closingProxy relays TCP connections to the extension on 127.0.0.1, so
// that a suite can have the connections it keeps alive closed from the
// extension's side, as the extension's server does when they stay idle past
// its idle timeout.
type closingProxy struct {
	port     int
	mu       sync.Mutex
	conns    map[net.Conn]bool // client-side connections
	dropNext atomic.Bool
}

func startClosingProxy(t *testing.T, target int) *closingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &closingProxy{port: ln.Addr().(*net.TCPAddr).Port, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { _ = ln.Close(); p.closeAll() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(c, target)
		}
	}()
	return p
}

func (p *closingProxy) relay(c net.Conn, target int) {
	up, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(target))
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c] = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
	}()
	go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
	buf := make([]byte, 32<<10)
	for {
		n, err := up.Read(buf)
		if n > 0 {
			if p.dropNext.CompareAndSwap(true, false) {
				return
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// closeAll closes every client-side connection and returns how many.
func (p *closingProxy) closeAll() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
	return len(p.conns)
}

// env is the environment of a language suite: the extension's port, token
// and miss timeout as the construct sets them on a function, and the
// control API.
func (h *harness) env() []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"CIRCUIT_BREAKER_PORT=" + strconv.Itoa(h.port),
		"CIRCUIT_BREAKER_MISS_TIMEOUT=1s",
		"AWS_SESSION_TOKEN=" + h.token,
		"CB_TEST_CONTROL_URL=" + h.control,
		"CB_TEST_PROXY_PORT=" + strconv.Itoa(h.proxy.port),
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONPATH=" + filepath.Join(h.layer, "python"),
		"NODE_PATH=" + filepath.Join(h.layer, "nodejs", "node_modules"),
	}
}

// interpreter returns the path of a language's command; without it the
// test is skipped, or fails in CI.
func interpreter(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s on PATH: %v", name, err)
		}
		t.Skipf("skipping: %s not on PATH", name)
	}
	return p
}

// tscPath returns the repository's root and the pinned TypeScript
// compiler that npm ci installs there, skipping the test without it
// (failing it in CI).
func tscPath(t *testing.T) (root, tsc string) {
	t.Helper()
	root, err := dynalite.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tsc = filepath.Join(root, "node_modules", "typescript", "bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs typescript from npm ci: %v", err)
		}
		t.Skipf("skipping: %v (run npm ci)", err)
	}
	return root, tsc
}

func (h *harness) run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, h.env()
	out, err := cmd.CombinedOutput()
	t.Logf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("%s suite failed: %v", filepath.Base(name), err)
	}
	return string(out)
}

// minTests is the least number of tests each suite must have run.
const minTests = 10

func TestPythonClientSuite(t *testing.T) {
	py := interpreter(t, "python3")
	h := startHarness(t)
	abs, _ := filepath.Abs("python")
	out := h.run(t, abs, py, "-W", "ignore::ResourceWarning", "-m", "unittest", "-v", "test_lambda_circuit_breaker")
	m := regexp.MustCompile(`(?m)^Ran (\d+) tests? in .*\n\nOK\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no \"Ran N tests ... OK\" without skips in the output")
	}
	if n, _ := strconv.Atoi(m[1]); n < minTests {
		t.Errorf("the Python suite ran %d tests, want at least %d", n, minTests)
	}
}

func TestNodeClientSuite(t *testing.T) {
	node := interpreter(t, "node")
	h := startHarness(t)
	abs, _ := filepath.Abs("nodejs")
	out := h.run(t, abs, node, "--test", "test/")
	pass := regexp.MustCompile(`(?m)^# pass (\d+)$`).FindStringSubmatch(out)
	if pass == nil {
		t.Fatal("no \"# pass N\" in the output")
	}
	if n, _ := strconv.Atoi(pass[1]); n < minTests {
		t.Errorf("the Node suite passed %d tests, want at least %d", n, minTests)
	}
	for _, zero := range []string{"# fail 0", "# skipped 0", "# todo 0", "# cancelled 0"} {
		if !strings.Contains(out, "\n"+zero+"\n") {
			t.Errorf("the Node suite's summary lacks %q", zero)
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A Python and a Node.js handler run under the Lambda Runtime Interface
// Emulator with the layer's files under /opt, as Lambda extracts them, beside
// the real extension. The official runtime interface clients cannot be
// installed here (PyPI is out of reach; npm's aws-lambda-ric compiles a
// native addon), so each handler runs under a small standard-library
// bootstrap (testdata/*/bootstrap) that speaks the Runtime API.
func TestHandlersUnderEmulator(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	ext := rie.Build(t, "./extension")
	layer := t.TempDir()
	if err := Write(layer); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		lang, interpreter, module string
	}{
		{"python", "python3", "/opt/python/lambda_circuit_breaker/__init__.py"},
		{"nodejs", "node", "/opt/nodejs/node_modules/lambda-circuit-breaker/index.js"},
	}
	for _, tt := range tests {
		t.Run(tt.lang, func(t *testing.T) {
			interpreter(t, tt.interpreter)
			table := srv.NewTable(t)
			st := store.New(db, table)
			id := "payments"
			put := func(c circuit.Circuit) {
				t.Helper()
				c.ID = id
				item, err := store.Encode(c)
				if err == nil {
					_, err = db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &table, Item: item})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			put(circuit.Circuit{State: circuit.Closed, Version: 1, UpdatedAt: time.Now()})
			fnDir := t.TempDir()
			if err := os.CopyFS(fnDir, os.DirFS(filepath.Join("testdata", tt.lang))); err != nil {
				t.Fatal(err)
			}
			emu := rie.Start(t, rie.Config{
				Function:   filepath.Join(fnDir, "bootstrap"),
				Extensions: map[string]string{"circuit-breaker": ext},
				Layers:     []string{layer},
				Env: map[string]string{
					"CIRCUIT_BREAKER_TABLE":            table,
					"CIRCUIT_BREAKER_SERVICES":         id,
					"CIRCUIT_BREAKER_PORT":             strconv.Itoa(rie.FreePort(t)),
					"CIRCUIT_BREAKER_REFRESH_INTERVAL": "100ms",
					"AWS_REGION":                       "us-east-1",
					"AWS_ACCESS_KEY_ID":                "local",
					"AWS_SECRET_ACCESS_KEY":            "local",
					"AWS_SESSION_TOKEN":                "emulator-session-token",
					"AWS_ENDPOINT_URL_DYNAMODB":        srv.Endpoint,
					"NODE_PATH":                        "/opt/nodejs/node_modules",
				},
			})
			type answer struct {
				Result, Module, State, Error string
			}
			invoke := func(payload string) answer {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out, err := emu.Invoke(ctx, []byte(payload))
				if err != nil {
					t.Fatal(err)
				}
				var a answer
				if err := json.Unmarshal(out, &a); err != nil {
					t.Fatalf("handler output %s: %v", out, err)
				}
				return a
			}

			if a := invoke(`{}`); a.Result != "called" || a.Module != tt.module {
				t.Fatalf("CLOSED circuit: %+v, want the call, with the client from %s", a, tt.module)
			}
			if a := invoke(`{"fail":true}`); a.Result != "fallback" || a.Error != "downstream answered 503" {
				t.Fatalf("failed call: %+v, want the fallback with the call's error", a)
			}
			// The next INVOKE flushes the reported outcomes to the table.
			deadline := time.Now().Add(15 * time.Second)
			for {
				invoke(`{}`)
				now := time.Now().Truncate(5 * time.Second)
				bs, err := st.GetBuckets(context.Background(), id, []time.Time{now, now.Add(-5 * time.Second), now.Add(-10 * time.Second)})
				if err != nil {
					t.Fatal(err)
				}
				var sum circuit.Counts
				for _, b := range bs {
					sum.Calls += b.Calls
					sum.Failures += b.Failures
				}
				if sum.Failures >= 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the reported failure never reached the table: %+v", sum)
				}
				time.Sleep(100 * time.Millisecond)
			}
			// The circuit opens in the table: the handler falls back.
			put(circuit.Circuit{State: circuit.Open, Version: 2, UpdatedAt: time.Now(), OpenCount: 1, RetryAt: time.Now().Add(10 * time.Minute)})
			deadline = time.Now().Add(15 * time.Second)
			for {
				time.Sleep(150 * time.Millisecond)
				a := invoke(`{}`)
				if a.Result == "fallback" && a.State == "OPEN" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("OPEN circuit: %+v, want the fallback", a)
				}
			}
			emu.Stop(t)
		})
	}
}

// The Node.js client's type declarations compile under tsc --strict for
// the documented uses, and reject a misuse (so the check can fail).
func TestTypeDeclarations(t *testing.T) {
	interpreter(t, "node")
	_, tsc := tscPath(t)
	layer := t.TempDir()
	if err := Write(layer); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(layer, "nodejs") // resolves lambda-circuit-breaker from node_modules/
	check := func(name, src string) ([]byte, error) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := `{"compilerOptions":{"strict":true,"noEmit":true,"target":"es2022","module":"commonjs",` +
			`"moduleResolution":"node10","types":[],"lib":["es2022"]},"files":["` + name + `"]}`
		if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("node", tsc, "-p", "tsconfig.json")
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	good := `import { allowed, state, report, wrap, call, Client, CircuitOpenError, ExtensionError, type Circuit, type Accepted } from "lambda-circuit-breaker";

export const handler = wrap("payments",
  async (event: { amount: number }) => ({ statusCode: 200, body: String(event.amount) }),
  (err, event) => ({ statusCode: 503, body: err instanceof CircuitOpenError ? err.circuit.state : String(event.amount) }));

async function lowLevel(): Promise<void> {
  const ok: boolean = await allowed("payments");
  const st: Circuit = await state("payments");
  const acc: Accepted | null = await report("payments", ok, 12, st.probeToken);
  const n: number = await call("payments", async (x: number) => x * 2, () => 0, 21);
  const c = new Client({ baseUrl: "http://127.0.0.1:4243", token: "t", timeoutMs: 250, failMode: "deny" });
  const many: Circuit[] = await c.states("a", "b");
  try { await c.stateOrThrow("a"); } catch (e) { if (e instanceof ExtensionError) { const s: number | undefined = e.status; void s; } }
  c.close();
  void acc; void n; void many;
}
void lowLevel;
`
	if out, err := check("good.ts", good); err != nil {
		t.Fatalf("tsc rejected the documented uses: %v\n%s", err, out)
	}
	bad := `import { allowed, report } from "lambda-circuit-breaker";
allowed(42);
report("payments", "yes", 12);
`
	out, err := check("bad.ts", bad)
	if err == nil {
		t.Fatal("tsc accepted allowed(42) and a string success")
	}
	if !strings.Contains(string(out), "bad.ts(2,") || !strings.Contains(string(out), "bad.ts(3,") {
		t.Errorf("tsc did not flag both misuses:\n%s", out)
	}
}

// The Node.js client loads by name from an ES module and from CommonJS, as
// a named and as a default import, and its Middy middleware too; run in the
// layer's nodejs/ directory (where node_modules/ resolves it), against the
// real extension.
func TestNodeModuleImports(t *testing.T) {
	node := interpreter(t, "node")
	h := startHarness(t)
	dir := filepath.Join(h.layer, "nodejs")
	check := `const h = wrap("imports-check", async (x) => x * 2, () => -1);
const st = await cb.defaultClient().state("imports-check");
console.log(JSON.stringify({ v: await h(21), wrap: typeof cb.wrap, execute: typeof execute,
  middy: typeof circuitBreaker, middyDefault: typeof mw, failMode: st.failMode ?? false }));`
	tests := []struct {
		name string
		args []string
		src  string
	}{
		{"ESM", []string{"--input-type=module", "-e"}, `import { wrap, execute } from "lambda-circuit-breaker";
import cb from "lambda-circuit-breaker";
import { circuitBreaker } from "lambda-circuit-breaker/middy";
import mw from "lambda-circuit-breaker/middy";
` + check},
		{"CommonJS", []string{"-e"}, `const { wrap, execute } = require("lambda-circuit-breaker");
const cb = require("lambda-circuit-breaker").default;
const { circuitBreaker } = require("lambda-circuit-breaker/middy");
const mw = require("lambda-circuit-breaker/middy").default;
(async () => {
` + check + `
})();`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(node, append(tt.args, tt.src)...)
			cmd.Dir, cmd.Env = dir, h.env()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("node: %v\n%s", err, out)
			}
			want := `{"v":42,"wrap":"function","execute":"function","middy":"function","middyDefault":"function","failMode":false}`
			if got := strings.TrimSpace(string(out)); got != want {
				t.Errorf("got %s, want %s", got, want)
			}
		})
	}
}

// A TypeScript project installs the Node.js client as docs/clients.md says,
// from a packed tarball or from the repository's directory, and compiles
// with the pinned tsc, as an ES module and as CommonJS; the compiled ES
// module runs.
func TestTypeScriptProjectInstall(t *testing.T) {
	node := interpreter(t, "node")
	npm := interpreter(t, "npm")
	root, tsc := tscPath(t)
	pkgDir, err := filepath.Abs(filepath.Join("nodejs", "lambda-circuit-breaker"))
	if err != nil {
		t.Fatal(err)
	}
	tarballs := t.TempDir()
	run := func(dir string, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "CIRCUIT_BREAKER_PORT=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(tarballs, npm, "pack", "--pack-destination", tarballs, pkgDir)
	tgz := filepath.Join(tarballs, "lambda-circuit-breaker-1.0.0.tgz")
	esm := `import { wrap, execute, Client, CircuitOpenError, CallTimeoutError, type Circuit } from "lambda-circuit-breaker";
import cb from "lambda-circuit-breaker";
import middy from "@middy/core";
import { circuitBreaker } from "lambda-circuit-breaker/middy";

const double = wrap("svc", async (x: number) => x * 2, {
  fallback: (err, x) => (err instanceof CircuitOpenError || err instanceof CallTimeoutError ? -x : 0),
  isFailure: (err) => !(err instanceof RangeError),
  timeoutMs: 500,
  onStateChange: (id: string, from: string, to: string) => void [id, from, to],
  onFallback: (id: string, err: unknown) => void [id, err],
});
const n: number = await double(21);
const s: string = await execute("svc", async (signal: AbortSignal) => (signal.aborted ? "aborted" : "ok"), { timeoutMs: 100, fallback: () => "fb" });
const d: number = await cb.wrap("svc", async () => 1)();
const c: Circuit = await new Client({ timeoutMs: 100 }).state("svc");
export const handler = middy(async (event: { n: number }) => ({ statusCode: 200, body: String(event.n) }))
  .use(circuitBreaker("svc", { fallback: (err, request) => ({ statusCode: 503, body: String(request.event.n) }) }));
console.log(JSON.stringify({ n, s, d, failMode: c.failMode }));
`
	cjs := `import { wrap, type Fallback } from "lambda-circuit-breaker";
import cb from "lambda-circuit-breaker";
import circuitBreaker from "lambda-circuit-breaker/middy";
const fb: Fallback<[number], number> = () => 0;
export const handler = wrap("svc", async (x: number) => x + 1, fb);
export const viaDefault = cb.execute("svc", async () => 2);
export const mw = circuitBreaker("svc");
`
	bad := `import { wrap } from "lambda-circuit-breaker";
wrap("svc", async (x: number) => x, { isFailure: "yes" });
`
	for _, source := range []struct{ name, spec string }{{"tarball", tgz}, {"directory", pkgDir}} {
		for _, mod := range []struct {
			name, typ, src string
			runs           bool
		}{{"esm", `"type":"module",`, esm, true}, {"cjs", "", cjs, false}} {
			t.Run(source.name+"/"+mod.name, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"app","private":true,`+mod.typ+`"version":"1.0.0"}`), 0o644); err != nil {
					t.Fatal(err)
				}
				run(dir, npm, "install", "--offline", "--no-audit", "--no-fund", "--save-dev", source.spec)
				if err := os.Symlink(filepath.Join(root, "node_modules", "@middy"), filepath.Join(dir, "node_modules", "@middy")); err != nil {
					t.Fatal(err)
				}
				cfg := `{"compilerOptions":{"strict":true,"target":"es2022","module":"nodenext","moduleResolution":"nodenext",` +
					`"skipLibCheck":true,"types":[],"lib":["es2022","dom"],"outDir":"out"},"files":["app.ts"]}`
				for name, data := range map[string]string{"tsconfig.json": cfg, "app.ts": mod.src} {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				run(dir, node, tsc, "-p", "tsconfig.json")
				if mod.runs {
					// No extension listens on port 1: the failure policy (allow) lets the calls through.
					out := run(dir, node, filepath.Join("out", "app.js"))
					if !strings.Contains(out, `{"n":42,"s":"ok","d":1,"failMode":true}`) {
						t.Errorf("compiled module printed %s", out)
					}
				}
				if err := os.WriteFile(filepath.Join(dir, "app.ts"), []byte(bad), 0o644); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(node, tsc, "-p", "tsconfig.json")
				cmd.Dir = dir
				if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "app.ts(2,") {
					t.Errorf("tsc accepted isFailure: \"yes\": %v\n%s", err, out)
				}
			})
		}
	}
}

// docs/clients.md says which errors count before its reference: the
// operations table and the per-language sections.
func TestDocsWhichErrorsCountComesFirst(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	order := []string{"\n## Which errors count\n", "\n## What the clients do\n", "\n| Operation | Python | Node.js (async) |", "\n## Python\n", "\n## Node.js\n"}
	last := -1
	for _, h := range order {
		i := strings.Index(doc, h)
		if i <= last {
			t.Errorf("%q is missing or out of order (at %d, after %d)", strings.TrimSpace(h), i, last)
		}
		last = i
	}
}

// The Go client's Execute against the real extension: the value comes
// back, an error IsFailure rejects and a cancelled caller are not counted,
// a timed-out call is, and a wrong token is one warning, not silence.
func TestGoClientAgainstExtension(t *testing.T) {
	h := startHarness(t)
	ctx := context.Background()
	getJSON := func(path string, out any) {
		t.Helper()
		resp, err := http.Get(h.control + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	cb := client.New(client.WithBaseURL("http://127.0.0.1:"+strconv.Itoa(h.port)), client.WithToken(h.token), client.WithTimeout(3*time.Second))
	id := fmt.Sprintf("go-execute-%d", time.Now().UnixNano())
	errBadInput := errors.New("bad input")
	notBadInput := client.IsFailure(func(err error) bool { return !errors.Is(err, errBadInput) })

	v, err := client.Execute(ctx, cb, id, func(context.Context) (int, error) { return 42, nil }, nil, notBadInput)
	if v != 42 || err != nil {
		t.Fatalf("Execute = %d, %v; want 42", v, err)
	}
	for range 12 { // past the fast trip's run of consecutive failures
		if _, err := client.Execute(ctx, cb, id, func(context.Context) (int, error) { return 0, errBadInput }, nil, notBadInput); !errors.Is(err, errBadInput) {
			t.Fatalf("ignored error came back as %v", err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	_, err = client.Execute(cctx, cb, id, func(ctx context.Context) (int, error) { cancel(); <-ctx.Done(); return 0, ctx.Err() }, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}
	v, err = client.Execute(ctx, cb, id, func(ctx context.Context) (int, error) { <-ctx.Done(); return 0, ctx.Err() },
		func(_ context.Context, err error) (int, error) { return -1, nil }, client.WithCallTimeout(100*time.Millisecond))
	if v != -1 || err != nil {
		t.Fatalf("timed-out call = %d, %v; want the fallback's -1", v, err)
	}
	var counts struct{ Calls, Failures int64 }
	getJSON("/buckets/"+id+"?failures=1", &counts)
	if counts.Failures != 1 {
		t.Errorf("failures counted = %d, want only the timeout's 1", counts.Failures)
	}
	var got struct{ State string }
	getJSON("/circuits/"+id, &got)
	if got.State != "" && got.State != "CLOSED" {
		t.Errorf("circuit %s after ignored errors, want CLOSED", got.State)
	}

	var logs strings.Builder
	wrong := client.New(client.WithBaseURL("http://127.0.0.1:"+strconv.Itoa(h.port)), client.WithToken("wrong"),
		client.WithTimeout(3*time.Second), client.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	for range 5 {
		if ok, err := wrong.Allow(ctx, id); !ok || err == nil {
			t.Fatalf("wrong token: Allow = %v, %v; want the failure policy's allow and the error", ok, err)
		}
	}
	if n := strings.Count(logs.String(), "wrong token"); n != 1 {
		t.Errorf("%d warnings for 5 refused lookups, want 1 (then one a minute):\n%s", n, logs.String())
	}
}
