package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/mockapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// The stack's programs, built once for the package (see TestMain).
const (
	extensionPkg      = "./extension"
	microservicePkg   = "./functions/mymicroservice"
	updaterPkg        = "./functions/updater"
	probePkg          = "./internal/testutil/rie/probefn"
	extensionName     = "circuit-breaker"
	sessionToken      = "e2e-session-token"
	guardedService    = "mock-api"
	invokeLimit       = 30 * time.Second
	functionTimeoutS  = 6 // AWS_LAMBDA_FUNCTION_TIMEOUT of the business function
	shutdownDeadline  = 2 * time.Second
	refreshInterval   = "100ms"
	defaultStaleLimit = "1s"
)

var (
	buildDir   string
	buildMu    sync.Mutex
	buildCache = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// binary builds pkg once for the whole package run.
func binary(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := buildCache[pkg]; ok {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := rie.BuildPackage(ctx, pkg, buildDir)
	if err != nil {
		t.Fatal(err)
	}
	buildCache[pkg] = p
	return p
}

// stack is dynalite with a state table and the mock API stand-in.
type stack struct {
	db    *dynalite.Server
	table string
	mock  *mockapi.Server
	api   *httptest.Server
}

// newStack starts dynalite (with its data on disk, so that it can be
// restarted) and the mock API stand-in on loopback.
func newStack(t *testing.T) *stack {
	t.Helper()
	db := dynalite.StartWith(t, dynalite.Options{Dir: t.TempDir()})
	s := &stack{db: db, table: db.NewTable(t), mock: mockapi.New()}
	s.mock.MaxHang = 30 * time.Second
	s.api = httptest.NewServer(s.mock) // listens on 127.0.0.1
	t.Cleanup(s.api.Close)
	return s
}

// awsEnv is the environment both functions need to reach dynalite.
func (s *stack) awsEnv() map[string]string {
	return map[string]string{
		"CIRCUIT_BREAKER_TABLE":       s.table,
		"AWS_REGION":                  "us-east-1",
		"AWS_ACCESS_KEY_ID":           "local",
		"AWS_SECRET_ACCESS_KEY":       "local",
		"AWS_ENDPOINT_URL_DYNAMODB":   s.db.Endpoint,
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		"AWS_EC2_METADATA_DISABLED":   "true",
	}
}

// fnOptions tune the business function's environment.
type fnOptions struct {
	function string            // package of the function; MyMicroservice by default
	env      map[string]string // extra or overriding variables
}

// startFunction runs a function with the real extension under the
// emulator and returns it with the extension's port.
func (s *stack) startFunction(t *testing.T, o fnOptions) (*rie.Emulator, int) {
	t.Helper()
	if o.function == "" {
		o.function = microservicePkg
	}
	port := rie.FreePort(t)
	env := s.awsEnv()
	for k, v := range map[string]string{
		"SERVICE_ID":                       guardedService,
		"API_URL":                          s.api.URL + mockapi.ResourcePath,
		"CIRCUIT_BREAKER_SERVICES":         guardedService,
		"CIRCUIT_BREAKER_PORT":             strconv.Itoa(port),
		"CIRCUIT_BREAKER_REFRESH_INTERVAL": refreshInterval,
		"CIRCUIT_BREAKER_MAX_STALENESS":    defaultStaleLimit,
		"CIRCUIT_BREAKER_LOG_LEVEL":        "debug",
		"AWS_SESSION_TOKEN":                sessionToken,
		"AWS_LAMBDA_FUNCTION_TIMEOUT":      strconv.Itoa(functionTimeoutS),
	} {
		env[k] = v
	}
	for k, v := range o.env {
		env[k] = v
	}
	emu := rie.Start(t, rie.Config{
		Function:   binary(t, o.function),
		Extensions: map[string]string{extensionName: binary(t, extensionPkg)},
		Env:        env,
	})
	return emu, port
}

// startUpdater runs the real updater binary under its own emulator.
func (s *stack) startUpdater(t *testing.T) *rie.Emulator {
	t.Helper()
	env := s.awsEnv()
	env[updater.EnvAllowLocalTargets] = "true" // the mock API listens on 127.0.0.1
	return rie.Start(t, rie.Config{Function: binary(t, updaterPkg), Env: env})
}

// response is MyMicroservice's API Gateway proxy response, its body
// decoded.
type response struct {
	StatusCode int    `json:"statusCode"`
	Body       string `json:"body"`
	body       struct {
		Message string `json:"message"`
		Source  string `json:"source"`
		Circuit string `json:"circuit"`
	}
	took time.Duration
}

// fallback reports whether the function answered with its local
// fallback instead of the downstream's answer.
func (r response) fallback() bool { return r.body.Source == "fallback" }

func (r response) String() string {
	return fmt.Sprintf("%d %s (%s)", r.StatusCode, r.Body, r.took.Round(time.Millisecond))
}

// call invokes MyMicroservice once with an API Gateway event.
func call(t *testing.T, emu *rie.Emulator) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
	defer cancel()
	start := time.Now()
	out, err := emu.Invoke(ctx, []byte(`{"httpMethod":"GET","path":"/"}`))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("invoke MyMicroservice after %s: %v", took, err)
	}
	var r response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("MyMicroservice output %s: %v", out, err)
	}
	_ = json.Unmarshal([]byte(r.Body), &r.body)
	r.took = took
	return r
}

// updaterOutput mirrors the fields of updater.Output the tests read.
type updaterOutput struct {
	State        string `json:"state"`
	Transitioned bool   `json:"transitioned"`
	From         string `json:"from"`
	Change       string `json:"change"`
	Check        struct {
		OK      bool   `json:"ok"`
		Outcome string `json:"outcome"`
		Detail  string `json:"detail"`
	} `json:"check"`
}

// check invokes the updater once for the guarded service.
func (s *stack) check(t *testing.T, upd *rie.Emulator, extra map[string]any) updaterOutput {
	t.Helper()
	in := map[string]any{"ID": guardedService, "URL": s.api.URL + mockapi.HealthPath, "Timeout": "1s", "SlowCallThreshold": "500ms"}
	for k, v := range extra {
		in[k] = v
	}
	payload, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
	defer cancel()
	out, err := upd.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("invoke updater: %v", err)
	}
	var o updaterOutput
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatalf("updater output %s: %v", out, err)
	}
	return o
}

// setMode switches the mock API stand-in.
func (s *stack) setMode(t *testing.T, m mockapi.Mode) {
	t.Helper()
	if err := s.mock.SetMode(m, 0); err != nil {
		t.Fatal(err)
	}
}

// pollUntil calls f every interval until it returns true or limit passes,
// and returns how long it took; it fails the test at the limit with the
// last description f gave.
func pollUntil(t *testing.T, limit, interval time.Duration, f func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		ok, last := f()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("not reached within %s (%d tries); last: %s", limit, i+1, last)
		}
		time.Sleep(interval)
	}
}

// probeAnswer mirrors one answer of the probe function.
type probeAnswer struct {
	Circuit struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		Allowed  bool   `json:"allowed"`
		Version  int64  `json:"version"`
		Stale    bool   `json:"stale"`
		FailMode bool   `json:"failMode"`
		AgeMs    int64  `json:"ageMs"`
	} `json:"circuit"`
	Error      string  `json:"error"`
	Allow      bool    `json:"allow"`
	AllowError string  `json:"allowError"`
	AllowMs    float64 `json:"allowMs"`
}

func (a probeAnswer) String() string {
	b, _ := json.Marshal(a)
	return string(b)
}

// probe invokes the probe function about the guarded service and returns
// its answer, the invoke's error (such as Extension.Crash) and duration.
// When the platform replaced the response, the answer is taken from the
// function's log line; it is empty when the function did not get to ask.
func probe(t *testing.T, emu *rie.Emulator, event map[string]any) (probeAnswer, error, time.Duration) {
	t.Helper()
	if event == nil {
		event = map[string]any{}
	}
	event["ids"] = []string{guardedService}
	tag := fmt.Sprintf("probe-%d", probeSeq.Add(1))
	event["tag"] = tag
	payload, _ := json.Marshal(event)
	ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
	defer cancel()
	start := time.Now()
	out, invokeErr := emu.Invoke(ctx, payload)
	took := time.Since(start)
	var res struct {
		Answers []probeAnswer `json:"answers"`
	}
	if invokeErr == nil {
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("probe output %s: %v", out, err)
		}
	} else {
		res.Answers = probeLog(emu.Logs(), tag)
	}
	if len(res.Answers) != 1 {
		return probeAnswer{}, invokeErr, took
	}
	return res.Answers[0], invokeErr, took
}

var probeSeq atomic.Int64

// probeLog returns the answers of the probe function's "probe result"
// log line with the tag, if it logged one.
func probeLog(logs, tag string) []probeAnswer {
	lines := strings.Split(logs, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l struct {
			Msg    string `json:"msg"`
			Result struct {
				Tag     string        `json:"tag"`
				Answers []probeAnswer `json:"answers"`
			} `json:"result"`
		}
		if json.Unmarshal([]byte(lines[i]), &l) == nil && l.Msg == "probe result" && l.Result.Tag == tag {
			return l.Result.Answers
		}
	}
	return nil
}

// putCircuit writes a circuit straight into the table.
func (s *stack) putCircuit(t *testing.T, c circuit.Circuit) {
	t.Helper()
	put(t, s.db.Client(), s.table, c)
}
