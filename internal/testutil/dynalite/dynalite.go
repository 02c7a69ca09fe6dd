// Package dynalite starts a local DynamoDB-compatible server (dynalite, from
// the repository's node_modules) on 127.0.0.1 for tests, and creates state
// tables in it.
//
// Outside CI a missing dynalite skips the test with a message saying how to
// install it; in CI (CI=true) it fails the test instead.
package dynalite

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Server is a running dynalite process.
type Server struct {
	// Endpoint is the server's URL, such as http://127.0.0.1:41234.
	Endpoint string
	cmd      *exec.Cmd
	opts     Options
	mu       sync.Mutex
	tables   atomic.Int64
}

// Options configure LaunchWith.
type Options struct {
	// Port is the loopback port; 0 picks a free one.
	Port int
	// Dir, when set, keeps the data in a LevelDB store in that directory,
	// so that it survives Stop and Restart; empty keeps it in memory.
	Dir string
	// Stderr receives dynalite's error output; nil means os.Stderr.
	Stderr io.Writer
}

// RepoRoot returns the directory of this repository's go.mod, searching up
// from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(data), "module github.com/circuitbreaked/lambda-circuit-breaker\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("dynalite: repository root not found above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of the dynalite command in node_modules.
func Binary() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "node_modules", ".bin", "dynalite")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("dynalite not installed at %s: run 'npm ci' in the repository root", bin)
	}
	return bin, nil
}

// Start launches dynalite on a free loopback port and stops it when the test
// ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Launch()
	if err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("skipping: %v", err)
		}
		tb.Fatalf("CI needs dynalite: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Launch starts dynalite without a testing.TB; call Stop when done. It
// suits TestMain and benchmark commands.
func Launch() (*Server, error) {
	return LaunchWith(Options{})
}

// StartWith is Start with options, such as a data directory that lets
// the test stop and restart the server.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := LaunchWith(opts)
	if err != nil {
		if os.Getenv("CI") == "" {
			tb.Skipf("skipping: %v", err)
		}
		tb.Fatalf("CI needs dynalite: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// LaunchWith is Launch with options.
func LaunchWith(opts Options) (*Server, error) {
	if opts.Port == 0 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		opts.Port = port
	}
	s := &Server{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", opts.Port), opts: opts}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the server again after Stop, on the same port and with
// the same data directory (data kept in memory is lost). The port must
// still be free.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

func (s *Server) start() error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	args := []string{"--host", "127.0.0.1", "--port", fmt.Sprint(s.opts.Port), "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"}
	if s.opts.Dir != "" {
		args = append(args, "--path", s.opts.Dir)
	}
	cmd := exec.Command(bin, args...)
	preload, err := abortPreload()
	if err != nil {
		return err
	}
	cmd.Env = append(os.Environ(), "NODE_OPTIONS="+strings.TrimSpace(os.Getenv("NODE_OPTIONS")+" --require "+preload))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if s.opts.Stderr != nil {
		cmd.Stderr = s.opts.Stderr
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start dynalite: %w", err)
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening") {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
		}
		ready <- fmt.Errorf("dynalite exited before listening")
	}()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("dynalite did not start within 20s")
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	return nil
}

// abortedRequestOK is loaded into dynalite's node process. dynalite throws
// from a request's 'error' event, so a client that gives up on a request
// mid-body (a context deadline, as the extension's flush budget does)
// would end the whole server; DynamoDB just drops such a request. This
// ignores exactly that error and lets every other one end the process.
const abortedRequestOK = `process.on('uncaughtException', function (err) {
  if (err && (err.code === 'ECONNRESET' || err.message === 'aborted')) return
  console.error(err)
  process.exit(1)
})
`

var (
	preloadOnce sync.Once
	preloadPath string
	preloadErr  error
)

// abortPreload writes abortedRequestOK to a file once and returns its path.
func abortPreload() (string, error) {
	preloadOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dynalite-preload-")
		if err != nil {
			preloadErr = err
			return
		}
		preloadPath = filepath.Join(dir, "aborted-request-ok.js")
		preloadErr = os.WriteFile(preloadPath, []byte(abortedRequestOK), 0o600)
	})
	return preloadPath, preloadErr
}

// Stop ends the dynalite process. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// Pid returns the process ID of the dynalite server.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Client returns a DynamoDB client for the server with dummy credentials.
func (s *Server) Client() *dynamodb.Client {
	return NewClient(s.Endpoint)
}

// NewClient returns a DynamoDB client for a local endpoint with dummy
// static credentials, region us-east-1 and no retries' jitter surprises.
func NewClient(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "local", SecretAccessKey: "local"}, nil
		}),
	})
}

// NewTable creates a fresh state table (partition key "id", string, TTL on
// "expiresAt") and returns its name.
func (s *Server) NewTable(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("circuits-%d", s.tables.Add(1))
	if err := CreateTable(context.Background(), s.Client(), name); err != nil {
		tb.Fatal(err)
	}
	return name
}

// CreateTable creates a state table with the same key schema as the
// construct's table.
func CreateTable(ctx context.Context, db *dynamodb.Client, name string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		return fmt.Errorf("create table %s: %w", name, err)
	}
	// dynalite answers CreateTable before the table is ACTIVE, even with
	// --createTableMs 0; writes before then fail with ResourceNotFound.
	waiter := dynamodb.NewTableExistsWaiter(db, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 100*time.Millisecond
	})
	if err := waiter.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 20*time.Second); err != nil {
		return fmt.Errorf("table %s did not become active: %w", name, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
