package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/mockapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// TestBreakerOpensAndCloses runs the real updater and MyMicroservice with
// the real extension, each under its own emulator, against dynalite and
// the mock API stand-in: healthy → the mock fails → OPEN and the function
// answers with its fallback → the mock recovers → HALF_OPEN → CLOSED.
func TestBreakerOpensAndCloses(t *testing.T) {
	s := newStack(t)
	upd := s.startUpdater(t)
	fn, _ := s.startFunction(t, fnOptions{})
	// One check per invocation (no confirmation checks), so that each
	// step below is one check.
	settings := map[string]any{"FailureThreshold": 3, "SuccessThreshold": 2, "OpenCooldown": "1s", "ConfirmInterval": "0s"}

	// Healthy: the check passes, the function calls the downstream.
	if o := s.check(t, upd, settings); !o.Check.OK || o.State != "CLOSED" || o.Transitioned {
		t.Fatalf("healthy check: %+v, want ok, CLOSED, no transition", o)
	}
	if r := call(t, fn); r.StatusCode != 200 || r.fallback() || !strings.Contains(r.body.Message, "Hello from the mock service") {
		t.Fatalf("healthy call: %s, want the downstream's 200", r)
	}

	// The mock fails: three failed checks open the circuit.
	s.setMode(t, mockapi.Failing)
	failedAt := time.Now()
	var o updaterOutput
	for i := 1; i <= 3; i++ {
		o = s.check(t, upd, settings)
		if o.Check.OK || o.Check.Outcome != "status" {
			t.Fatalf("check %d while failing: %+v, want a status failure", i, o)
		}
		if want := i == 3; o.Transitioned != want {
			t.Fatalf("check %d: transitioned %v, want %v (%+v)", i, o.Transitioned, want, o)
		}
	}
	if o.State != "OPEN" || o.From != "CLOSED" {
		t.Fatalf("after 3 failed checks: %+v, want CLOSED → OPEN", o)
	}
	toOpen := time.Since(failedAt)

	// The extension picks up OPEN on the next invocations (refresh 100ms):
	// the function answers with its fallback and does not call the mock.
	var last response
	pollUntil(t, 5*time.Second, 50*time.Millisecond, func() (bool, string) {
		last = call(t, fn)
		return last.fallback() && last.body.Circuit == "OPEN", last.String()
	})
	toFallback := time.Since(failedAt)
	if last.StatusCode != 503 {
		t.Errorf("fallback status %d, want 503", last.StatusCode)
	}
	before := s.mock.Requests()
	for i := 0; i < 3; i++ {
		if r := call(t, fn); !r.fallback() {
			t.Fatalf("call %d while OPEN: %s, want the fallback", i, r)
		}
	}
	if n := s.mock.Requests() - before; n != 0 {
		t.Errorf("the function called the failing downstream %d times while OPEN", n)
	}
	t.Logf("mock failing → OPEN after %s (3 back-to-back checks); → function returns the fallback after %s",
		toOpen.Round(time.Millisecond), toFallback.Round(time.Millisecond))

	// The mock recovers: the first check after the 1s cool-down is the
	// trial (HALF_OPEN), the second closes the circuit.
	s.setMode(t, mockapi.Healthy)
	pollUntil(t, 5*time.Second, 100*time.Millisecond, func() (bool, string) {
		o = s.check(t, upd, settings)
		return o.Transitioned, "state " + o.State
	})
	if o.State != "HALF_OPEN" || o.From != "OPEN" {
		t.Fatalf("first check after the cool-down: %+v, want OPEN → HALF_OPEN", o)
	}
	pollUntil(t, 5*time.Second, 50*time.Millisecond, func() (bool, string) {
		last = call(t, fn)
		return last.StatusCode == 200 && !last.fallback(), last.String()
	})
	// The second success closes the circuit: the updater's next check, or
	// the function's successful trial call reported through the extension.
	pollUntil(t, 5*time.Second, 100*time.Millisecond, func() (bool, string) {
		o = s.check(t, upd, settings)
		return o.State == "CLOSED", "state " + o.State
	})
	// The extension's cache may hold HALF_OPEN for one refresh interval.
	pollUntil(t, 5*time.Second, 50*time.Millisecond, func() (bool, string) {
		last = call(t, fn)
		return last.StatusCode == 200 && !last.fallback(), last.String()
	})

	// Every transition was logged by the updater as one JSON line with
	// its reason.
	logs := upd.Logs() + fn.Logs()
	for _, want := range []string{
		`"from":"CLOSED","to":"OPEN","reason":"3 consecutive failed checks`,
		`"from":"OPEN","to":"HALF_OPEN"`,
		`"from":"HALF_OPEN","to":"CLOSED"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("transition logs lack %s", want)
		}
	}
}

// TestOneInvocationOpensFailingService runs the real updater under the
// emulator with the function timeout the construct derives from the
// settings: one invocation against a service answering 503 confirms the
// failure and leaves the circuit OPEN, within that timeout. With a
// function timeout shorter than the check's Timeout, the check is cut so
// that its result is written before the deadline, instead of the platform
// ending the invocation.
func TestOneInvocationOpensFailingService(t *testing.T) {
	tests := []struct {
		name     string
		mode     mockapi.Mode
		input    map[string]any
		timeoutS int // 0: the construct's derived timeout
		state    circuit.State
		checks   int
		outcome  string
	}{
		{"503, defaults", mockapi.Failing, nil, 0, circuit.Open, 3, "status"},
		{"hang, function timeout 3s under Timeout 4s", mockapi.Hang, map[string]any{"Timeout": "4s"}, 3, circuit.Closed, 1, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t)
			in := map[string]any{"ID": guardedService, "URL": s.api.URL + mockapi.HealthPath}
			for k, v := range tt.input {
				in[k] = v
			}
			payload, _ := json.Marshal(in)
			cfg, err := updater.ParseInput(payload)
			if err != nil {
				t.Fatal(err)
			}
			timeout := time.Duration(tt.timeoutS) * time.Second
			if timeout == 0 {
				timeout = updater.FunctionTimeout(cfg)
			}
			env := s.awsEnv()
			env[updater.EnvAllowLocalTargets] = "true" // the mock API listens on 127.0.0.1
			env["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(int(timeout.Seconds()))
			upd := rie.Start(t, rie.Config{Function: binary(t, updaterPkg), Env: env})
			s.setMode(t, tt.mode)

			ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
			defer cancel()
			start := time.Now()
			raw, err := upd.Invoke(ctx, payload)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("invoke after %s: %v\n%s", took, err, upd.Logs())
			}
			var out struct {
				updaterOutput
				Checks int `json:"checks"`
				Writes int `json:"writes"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Fatalf("output %s: %v", raw, err)
			}
			t.Logf("one invocation: %d checks, state %s, %s (function timeout %s)", out.Checks, out.State, took.Round(time.Millisecond), timeout)
			// Writes: one per check, and the read copies' upkeep (creating
			// K-1 copies, setting K on the circuit item, bringing the copies
			// up to a transition: at most 2K-1 with the default K).
			copyWrites := out.Writes - tt.checks
			if out.State != string(tt.state) || out.Checks != tt.checks || out.Check.Outcome != tt.outcome ||
				copyWrites < 0 || copyWrites > 2*store.DefaultReadCopies-1 {
				t.Errorf("output %s, want %s after %d written checks ending in %s (and at most %d writes of read copies)", raw, tt.state, tt.checks, tt.outcome, 2*store.DefaultReadCopies-1)
			}
			if took >= timeout {
				t.Errorf("the invocation took %s, not less than the function timeout %s", took, timeout)
			}
			if strings.Contains(upd.Logs(), "Task timed out") {
				t.Errorf("the platform ended the invocation:\n%s", upd.Logs())
			}
			c, found, err := store.New(s.db.Client(), s.table).Get(context.Background(), guardedService)
			if err != nil || !found || c.State != tt.state {
				t.Errorf("stored %+v (found %v, %v), want %s", c, found, err, tt.state)
			}
		})
	}
}

// tableCounter is a reverse proxy in front of dynalite that counts the
// DynamoDB operations reaching the table, by their X-Amz-Target.
type tableCounter struct {
	mu  sync.Mutex
	ops map[string]int
}

func (c *tableCounter) start(t *testing.T, endpoint string) string {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		op = op[strings.LastIndex(op, ".")+1:]
		c.mu.Lock()
		c.ops[op]++
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (c *tableCounter) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops["UpdateItem"] + c.ops["PutItem"]
}

func (c *tableCounter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return fmt.Sprint(c.ops)
}

// TestHealthyCallsCostNoWrite runs MyMicroservice with the real extension
// under the emulator, its table calls counted by a proxy in front of
// dynalite: healthy invocations, each calling the downstream and reporting
// the outcome, cause no UpdateItem or PutItem at all; then the downstream
// fails hard and the circuit is refused within a second, after
// fastTripFailures calls, without waiting for a window's rate.
func TestHealthyCallsCostNoWrite(t *testing.T) {
	s := newStack(t)
	cnt := &tableCounter{ops: map[string]int{}}
	fn, _ := s.startFunction(t, fnOptions{env: map[string]string{"AWS_ENDPOINT_URL_DYNAMODB": cnt.start(t, s.db.Endpoint)}})
	const healthy = 200
	for i := range healthy {
		if r := call(t, fn); r.StatusCode != 200 || r.fallback() {
			t.Fatalf("healthy call %d: %s", i, r)
		}
	}
	if w := cnt.writes(); w != 0 {
		t.Fatalf("%d healthy invocations made %d writes (%s), want none", healthy, w, cnt)
	}
	t.Logf("%d healthy invocations: %s at the table", healthy, cnt)

	s.setMode(t, mockapi.Failing)
	before := s.mock.Requests()
	failedAt := time.Now()
	var last response
	took := pollUntil(t, 10*time.Second, 0, func() (bool, string) {
		last = call(t, fn)
		return last.fallback() && last.body.Circuit == "OPEN", last.String()
	})
	sent := s.mock.Requests() - before
	t.Logf("refused %s after the downstream failed, %d calls reached it; table: %s", took.Round(time.Millisecond), sent, cnt)
	if sent > 10 {
		t.Errorf("%d calls reached the failed downstream, want the fast trip's 10", sent)
	}
	if took > time.Second {
		t.Errorf("first refusal %s after the downstream failed, want within 1 s", time.Since(failedAt).Round(time.Millisecond))
	}
}
