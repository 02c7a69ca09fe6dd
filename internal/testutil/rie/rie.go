// Package rie runs Lambda functions and their external extensions under the
// AWS Lambda Runtime Interface Emulator (RIE) for end-to-end tests.
//
// The RIE starts every file in /opt/extensions as an external extension and
// sends it SHUTDOWN when the emulator gets SIGTERM. So that tests need no
// container, Start runs the emulator in a private mount namespace where a
// temporary directory is bind-mounted over /opt: as root with
// "unshare -m", as a user with "unshare -rm". When neither works the test
// is skipped, or fails when CI=true.
//
// Beside the on-demand model, Config gives the timing and environment of
// Lambda's other execution models: MaxConcurrency runs the emulator in
// Lambda Managed Instances mode, HoldInit holds the function's init until
// ReleaseInit (the gap of provisioned concurrency between INIT and the
// first invocation), and StartCredentialsEndpoint with
// CredentialsEndpoint.SnapStartEnv gives a SnapStart sandbox's
// credentials: a container endpoint on 127.0.0.1 instead of keys in the
// environment.
//
// Typical use:
//
//	fn := rie.Build(t, "./internal/testutil/rie/probefn")
//	ext := rie.Build(t, "./extension")
//	emu := rie.Start(t, rie.Config{
//		Function:   fn,
//		Extensions: map[string]string{"circuit-breaker": ext},
//		Env:        map[string]string{"CIRCUIT_BREAKER_TABLE": table},
//	})
//	out, err := emu.Invoke(ctx, []byte(`{}`))
//	emu.Stop(t) // SIGTERM: extensions get SHUTDOWN
package rie

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/buildflags"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// Module and Version identify the emulator built by Emulator.
const (
	Module  = "github.com/aws/aws-lambda-runtime-interface-emulator"
	Version = "v0.0.0-20261030222936-bef5c4ba774d"
	// Package is the emulator's main package.
	Package = Module + "/cmd/aws-lambda-rie"
)

var (
	rieOnce sync.Once
	riePath string
	rieErr  error
)

// unavailable skips the test outside CI and fails it in CI.
func unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		tb.Fatalf("CI needs the Lambda runtime interface emulator: %s", msg)
	}
	tb.Skipf("skipping: %s", msg)
}

// EmulatorBinary returns the path of the aws-lambda-rie binary, built for
// the host with "go install Package@Version" into the user cache directory
// on first use, outside this module so that the emulator's dependencies do
// not enter go.mod.
func EmulatorBinary(tb testing.TB) string {
	tb.Helper()
	p, err := EmulatorPath()
	if err != nil {
		unavailable(tb, "%v", err)
	}
	return p
}

// EmulatorPath is EmulatorBinary without a testing.TB: it returns the
// emulator's path, installing it on first use.
func EmulatorPath() (string, error) {
	rieOnce.Do(func() { riePath, rieErr = installEmulator() })
	if rieErr != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, rieErr)
	}
	return riePath, nil
}

func installEmulator() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "lambda-circuit-breaker", "aws-lambda-rie-"+Version+"-"+runtime.GOOS+"-"+runtime.GOARCH)
	bin := filepath.Join(dir, "aws-lambda-rie")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command("go", "install", Package+"@"+Version)
	cmd.Dir = tmp // outside any module: go install pkg@version ignores go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", Package, Version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "aws-lambda-rie"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// Build compiles a main package of this module (a path relative to the
// repository root, such as "./extension") for the host, as Lambda builds
// it (CGO_ENABLED=0, -tags lambda.norpc), and returns the binary's path.
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	out, err := BuildPackage(context.Background(), pkg, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// BuildPackage is Build without a testing.TB: it compiles pkg into dir and
// returns the binary's path.
func BuildPackage(ctx context.Context, pkg, dir string) (string, error) {
	root, err := dynalite.RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	return out, BuildTo(ctx, root, pkg, out)
}

// BuildTo builds the main package pkg (an import path or a path relative
// to the module root) for the host into the file out, as the construct
// ships it: static, stripped, and the extension with its own flags
// (internal/buildflags).
func BuildTo(ctx context.Context, root, pkg, out string) error {
	return BuildFor(ctx, root, pkg, out, "")
}

// BuildFor is BuildTo for linux on the architecture goarch, such as
// "arm64" (the layer's default); empty builds for the host.
func BuildFor(ctx context.Context, root, pkg, out, goarch string) error {
	flags := buildflags.Common
	if strings.HasSuffix(pkg, "/extension") {
		flags = buildflags.Extension
	}
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"build"}, flags...), "-o", out, pkg)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOOS=linux", "GOARCH="+goarch)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// ErrUnavailable marks errors that mean the emulator cannot run on this
// machine (not Linux, no unshare, no private mount namespace, the
// emulator cannot be installed). Start skips the test on it outside CI.
var ErrUnavailable = errors.New("lambda runtime interface emulator unavailable")

// Config describes one emulated function.
type Config struct {
	// Function is the path of the function's executable (the bootstrap of
	// a provided.al2023 function), built for the host.
	Function string
	// Extensions maps a file name under /opt/extensions to the
	// executable placed there. The name is the one the extension must
	// register with.
	Extensions map[string]string
	// Layers are directories whose contents are copied into /opt before
	// the extensions, as Lambda extracts a function's layers there (for
	// example python/ and nodejs/node_modules/ of a layer).
	Layers []string
	// Env is the function's environment; the emulator passes it to the
	// function and to the extensions. AWS_LAMBDA_FUNCTION_TIMEOUT defaults
	// to 30 (seconds).
	Env map[string]string
	// Output, when set, also receives everything the emulator, the
	// function and the extensions write (Logs keeps its copy too).
	Output io.Writer
	// MaxConcurrency, when above 0, runs the emulator in Lambda Managed
	// Instances mode with that many runtime workers (it sets
	// AWS_LAMBDA_MAX_CONCURRENCY, which the emulator dispatches on). In
	// that mode the emulator initialises at start rather than on the first
	// Invoke, sets AWS_LAMBDA_INITIALIZATION_TYPE=lambda-managed-instances,
	// refuses an external extension's registration for INVOKE (403
	// Extension.InvalidEventType), runs up to MaxConcurrency invocations at
	// once and never freezes anything.
	MaxConcurrency int
	// HoldInit, when set, holds the function's init until ReleaseInit: the
	// extensions start, prefetch and wait for their first event, while
	// the runtime has not asked for its first invocation yet. It gives the
	// timing of provisioned concurrency, where INIT runs long before the
	// first invocation. An Invoke sent meanwhile waits.
	HoldInit bool
}

// Emulator is a running emulator.
type Emulator struct {
	// URL is the emulator's invoke endpoint base, such as
	// http://127.0.0.1:41234.
	URL  string
	cmd  *exec.Cmd
	opt  string
	logs *logBuffer
	done chan struct{}
	err  error
	// gate is the write end of the init gate (Config.HoldInit), and
	// workers the number of runtime processes that may wait on it.
	gate    *os.File
	workers int
}

// logBuffer collects output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	b   bytes.Buffer
	tee io.Writer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tee != nil {
		_, _ = l.tee.Write(p)
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// namespaceArgs returns the unshare arguments that give a private mount
// namespace where /opt can be bind-mounted, or an error when none works.
func namespaceArgs() ([]string, error) {
	if _, err := exec.LookPath("unshare"); err != nil {
		return nil, errors.New("unshare (util-linux) not found")
	}
	probe, err := os.MkdirTemp("", "rie-probe-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(probe)
	var tried []string
	for _, args := range [][]string{{"-m", "--propagation", "private"}, {"-r", "-m", "--propagation", "private"}} {
		cmd := exec.Command("unshare", append(args, "mount", "--bind", probe, "/opt")...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			return args, nil
		}
		tried = append(tried, fmt.Sprintf("unshare %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out)))
	}
	return nil, fmt.Errorf("no private mount namespace for /opt/extensions (%s)", strings.Join(tried, "; "))
}

// Start starts the emulator for cfg and stops it when the test ends. The
// function is initialised (and the extensions started) on the first
// Invoke, as in Lambda, or at start in Managed Instances mode
// (Config.MaxConcurrency). When the test fails, the emulator's output (its
// own logs, the function's and the extensions') goes to t.Log.
func Start(tb testing.TB, cfg Config) *Emulator {
	tb.Helper()
	e, err := Launch(cfg)
	if errors.Is(err, ErrUnavailable) {
		unavailable(tb, "%v", err)
	}
	if err != nil {
		tb.Fatalf("emulator: %v", err)
	}
	tb.Cleanup(func() {
		e.Close()
		if tb.Failed() {
			tb.Logf("emulator output:\n%s", e.Logs())
		}
	})
	return e
}

// Launch is Start without a testing.TB, for commands such as the local
// stack: it starts the emulator and waits until it listens. Call Stop or
// Close when done. Errors that mean the emulator cannot run on this
// machine wrap ErrUnavailable.
func Launch(cfg Config) (*Emulator, error) {
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("%w: the emulator runs on Linux only", ErrUnavailable)
	}
	nsArgs, err := namespaceArgs()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	rieBin, err := EmulatorPath()
	if err != nil {
		return nil, err
	}
	opt, err := os.MkdirTemp("", "rie-opt-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Emulator, error) {
		_ = os.RemoveAll(opt)
		return nil, err
	}
	for _, layer := range cfg.Layers {
		if err := os.CopyFS(opt, os.DirFS(layer)); err != nil {
			return fail(fmt.Errorf("install layer %s: %w", layer, err))
		}
	}
	extDir := filepath.Join(opt, "extensions")
	if err := os.MkdirAll(extDir, 0o755); err != nil {
		return fail(err)
	}
	for name, bin := range cfg.Extensions {
		if err := copyFile(bin, filepath.Join(extDir, name)); err != nil {
			return fail(fmt.Errorf("install extension %s: %w", name, err))
		}
	}
	function, workDir := cfg.Function, filepath.Dir(cfg.Function)
	mount := `mount --bind "$0" /opt && exec "$@"`
	if cfg.MaxConcurrency > 0 {
		// In this mode the emulator runs the function and the extensions
		// as uid 993, gid 990, as Lambda does, so /opt and the function
		// must be readable by them; and it runs the bootstrap it finds at
		// /var/task/bootstrap (or /var/runtime, /opt), from /var/task,
		// whatever it is told. A directory of the test's is mounted over
		// /var in the emulator's private namespace, with the function as
		// task/bootstrap.
		if slices.Contains(nsArgs, "-r") {
			return fail(fmt.Errorf("%w: Managed Instances mode runs the function as uid 993, which needs root", ErrUnavailable))
		}
		if err := os.Chmod(opt, 0o755); err != nil {
			return fail(err)
		}
		workDir = filepath.Join(opt, ".var", "task")
		if err := os.MkdirAll(workDir, 0o755); err != nil {
			return fail(err)
		}
		if err := os.Chmod(filepath.Join(opt, ".var"), 0o755); err != nil {
			return fail(err)
		}
		function = filepath.Join(workDir, "bootstrap")
		if cfg.HoldInit {
			function = filepath.Join(workDir, "function") // behind the gate's bootstrap
		}
		if err := copyFile(cfg.Function, function); err != nil {
			return fail(fmt.Errorf("install function: %w", err))
		}
		mount = `mount --bind "$0" /opt && mount --bind "$0/.var" /var && exec "$@"`
	}
	var gate *os.File
	if cfg.HoldInit {
		bootstrap := filepath.Join(opt, ".init-gate", "bootstrap")
		if cfg.MaxConcurrency > 0 {
			bootstrap = filepath.Join(workDir, "bootstrap")
		}
		if gate, err = holdInit(filepath.Join(opt, ".init-gate"), bootstrap, function); err != nil {
			return fail(fmt.Errorf("init gate: %w", err))
		}
		function = bootstrap
	}
	invokePort, err := freePortErr()
	if err != nil {
		return fail(err)
	}
	apiPort, err := freePortErr()
	if err != nil {
		return fail(err)
	}

	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"AWS_LAMBDA_FUNCTION_TIMEOUT=30",
		"LOG_LEVEL=info",
	}
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	if cfg.MaxConcurrency > 0 {
		env = append(env, "AWS_LAMBDA_MAX_CONCURRENCY="+strconv.Itoa(cfg.MaxConcurrency))
	}
	args := append(nsArgs, "sh", "-c", mount, opt,
		rieBin,
		"--runtime-interface-emulator-address", "127.0.0.1:"+strconv.Itoa(invokePort),
		"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(apiPort),
		function)
	cmd := exec.Command("unshare", args...)
	cmd.Dir = workDir // the function's working directory
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	e := &Emulator{URL: "http://127.0.0.1:" + strconv.Itoa(invokePort), cmd: cmd, opt: opt, logs: &logBuffer{tee: cfg.Output}, done: make(chan struct{}),
		gate: gate, workers: max(1, cfg.MaxConcurrency)}
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		if gate != nil {
			gate.Close()
		}
		return fail(fmt.Errorf("start emulator: %w", err))
	}
	go func() {
		e.err = cmd.Wait()
		close(e.done)
	}()
	if err := e.waitListening(10 * time.Second); err != nil {
		e.Close()
		return nil, fmt.Errorf("%w\n%s", err, e.Logs())
	}
	return e, nil
}

func (e *Emulator) waitListening(d time.Duration) error {
	addr := strings.TrimPrefix(e.URL, "http://")
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-e.done:
			return fmt.Errorf("exited before listening: %v", e.err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s after %s", addr, d)
}

// Invoke invokes the function with payload and returns the response body.
// A non-200 status is an error that includes the body.
func (e *Emulator) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+"/2015-03-31/functions/function/invocations", bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("invoke: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("invoke: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("invoke: status %d: %s", resp.StatusCode, body)
	}
	return body, nil
}

// Logs returns everything the emulator, the function and the extensions
// wrote so far.
func (e *Emulator) Logs() string { return e.logs.String() }

// Done is closed when the emulator process has exited.
func (e *Emulator) Done() <-chan struct{} { return e.done }

// Stop sends SIGTERM: the emulator sends SHUTDOWN to the extensions,
// waits for them up to its deadline (2 s) and exits. Stop waits for that,
// up to 10 s.
func (e *Emulator) Stop(tb testing.TB) {
	tb.Helper()
	if _, err := e.Shutdown(10 * time.Second); err != nil {
		tb.Errorf("%v", err)
	}
}

// Shutdown is Stop without a testing.TB: it sends SIGTERM and waits up to
// limit for the emulator to exit, then kills what is left. It returns the
// time from the signal to the emulator's exit (zero if it had already
// exited) and an error when it did not exit within limit.
func (e *Emulator) Shutdown(limit time.Duration) (time.Duration, error) {
	select {
	case <-e.done:
		return 0, nil
	default:
	}
	start := time.Now()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
		return time.Since(start), nil
	case <-time.After(limit):
		e.kill()
		return time.Since(start), fmt.Errorf("emulator did not exit %s after SIGTERM", limit)
	}
}

// Close kills the emulator and everything it started, and removes its
// temporary /opt directory. It is safe to call more than once.
func (e *Emulator) Close() {
	e.kill()
	if e.gate != nil {
		_ = e.gate.Close()
	}
	_ = os.RemoveAll(e.opt)
}

// kill ends the emulator's process group (the emulator, the function and
// the extensions it started).
func (e *Emulator) kill() {
	select {
	case <-e.done:
	default:
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.done
	}
	// Children that outlived the emulator in the same group.
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func freePort(tb testing.TB) int {
	tb.Helper()
	p, err := freePortErr()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func freePortErr() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePort returns a free loopback TCP port, for settings such as
// CIRCUIT_BREAKER_PORT.
func FreePort(tb testing.TB) int { return freePort(tb) }
