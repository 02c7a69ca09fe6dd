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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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
	rieOnce.Do(func() { riePath, rieErr = installEmulator() })
	if rieErr != nil {
		unavailable(tb, "%v", rieErr)
	}
	return riePath
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
	root, err := dynalite.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-trimpath", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// Config describes one emulated function.
type Config struct {
	// Function is the path of the function's executable (the bootstrap of
	// a provided.al2023 function), built for the host.
	Function string
	// Extensions maps a file name under /opt/extensions to the
	// executable placed there. The name is the one the extension must
	// register with.
	Extensions map[string]string
	// Env is the function's environment; the emulator passes it to the
	// function and to the extensions. AWS_LAMBDA_FUNCTION_TIMEOUT defaults
	// to 30 (seconds).
	Env map[string]string
}

// Emulator is a running emulator.
type Emulator struct {
	// URL is the emulator's invoke endpoint base, such as
	// http://127.0.0.1:41234.
	URL  string
	cmd  *exec.Cmd
	logs *logBuffer
	done chan struct{}
	err  error
}

// logBuffer collects output from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
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
// Invoke, as in Lambda. When the test fails, the emulator's output (its
// own logs, the function's and the extensions') goes to t.Log.
func Start(tb testing.TB, cfg Config) *Emulator {
	tb.Helper()
	if runtime.GOOS != "linux" {
		unavailable(tb, "the emulator runs on Linux only")
	}
	nsArgs, err := namespaceArgs()
	if err != nil {
		unavailable(tb, "%v", err)
	}
	rieBin := EmulatorBinary(tb)

	opt := tb.TempDir()
	extDir := filepath.Join(opt, "extensions")
	if err := os.MkdirAll(extDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, bin := range cfg.Extensions {
		if err := copyFile(bin, filepath.Join(extDir, name)); err != nil {
			tb.Fatal(err)
		}
	}
	invokePort, apiPort := freePort(tb), freePort(tb)

	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"AWS_LAMBDA_FUNCTION_TIMEOUT=30",
		"LOG_LEVEL=info",
	}
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	args := append(nsArgs, "sh", "-c", `mount --bind "$0" /opt && exec "$@"`, opt,
		rieBin,
		"--runtime-interface-emulator-address", "127.0.0.1:"+strconv.Itoa(invokePort),
		"--runtime-api-address", "127.0.0.1:"+strconv.Itoa(apiPort),
		cfg.Function)
	cmd := exec.Command("unshare", args...)
	cmd.Dir = filepath.Dir(cfg.Function)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	e := &Emulator{URL: "http://127.0.0.1:" + strconv.Itoa(invokePort), cmd: cmd, logs: &logBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start emulator: %v", err)
	}
	go func() {
		e.err = cmd.Wait()
		close(e.done)
	}()
	tb.Cleanup(func() {
		e.kill()
		if tb.Failed() {
			tb.Logf("emulator output:\n%s", e.Logs())
		}
	})
	if err := e.waitListening(10 * time.Second); err != nil {
		tb.Fatalf("emulator: %v\n%s", err, e.Logs())
	}
	return e
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

// Stop sends SIGTERM: the emulator sends SHUTDOWN to the extensions,
// waits for them up to its deadline (2 s) and exits. Stop waits for that,
// up to 10 s.
func (e *Emulator) Stop(tb testing.TB) {
	tb.Helper()
	select {
	case <-e.done:
		return
	default:
	}
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		tb.Errorf("emulator did not exit 10s after SIGTERM")
		e.kill()
	}
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreePort returns a free loopback TCP port, for settings such as
// CIRCUIT_BREAKER_PORT.
func FreePort(tb testing.TB) int { return freePort(tb) }
