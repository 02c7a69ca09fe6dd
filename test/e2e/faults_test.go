package e2e

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/mockapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
)

// TestExtensionKilledMidInvocation kills the extension (SIGKILL) while
// the function runs, just before it asks. Two outcomes are legitimate and
// each is checked: the function asks before the platform notices, gets no
// answer and the failure policy decides (opposite to the stored circuit,
// so the policy is seen to decide), within the client's timeout; or the
// platform resets the sandbox first. Either way the invocation ends at
// once with Extension.Crash and the next one runs in a new sandbox.
func TestExtensionKilledMidInvocation(t *testing.T) {
	tests := []struct {
		failMode  string
		state     circuit.State
		wantAllow bool
	}{
		{"allow", circuit.Open, true},   // the circuit says no, the policy yes
		{"deny", circuit.Closed, false}, // the circuit says yes, the policy no
	}
	for _, tt := range tests {
		t.Run(tt.failMode, func(t *testing.T) {
			s := newStack(t)
			s.putCircuit(t, circuit.Circuit{ID: guardedService, State: tt.state, Version: 1, UpdatedAt: time.Now()})
			var emu atomic.Pointer[rie.Emulator]
			killed := make(chan error, 1)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, err := emu.Load().Signal(extensionName, syscall.SIGKILL)
				killed <- err
			}))
			t.Cleanup(hook.Close)
			e, _ := s.startFunction(t, fnOptions{function: probePkg, env: map[string]string{"CIRCUIT_BREAKER_FAIL_MODE": tt.failMode}})
			emu.Store(e)

			// Before: the extension answers from the table.
			a, err, _ := probe(t, e, nil)
			if err != nil || a.Error != "" || a.Circuit.State != string(tt.state) || a.Allow == tt.wantAllow {
				t.Fatalf("before the kill: %s, invoke error %v", a, err)
			}

			a, invokeErr, took := probe(t, e, map[string]any{"before": hook.URL, "allowTimeoutMs": 50})
			if err := <-killed; err != nil {
				t.Fatalf("kill the extension: %v", err)
			}
			asked := a.Circuit.ID != "" || a.AllowError != ""
			if asked {
				if a.Allow != tt.wantAllow || a.AllowError == "" {
					t.Errorf("answer after the kill: %s, want allow=%v decided by the policy with an error", a, tt.wantAllow)
				}
				if a.AllowMs > 100 {
					t.Errorf("Allow took %.1fms after the kill, want at most its 50ms timeout", a.AllowMs)
				}
			}
			if took > 2*time.Second {
				t.Errorf("the invocation took %s after the kill", took)
			}
			t.Logf("extension killed mid-invocation: function asked first: %v (Allow=%v by the %s policy in %.2fms); invocation ended after %s, error: %v",
				asked, a.Allow, tt.failMode, a.AllowMs, took.Round(time.Millisecond), invokeErr)

			// The platform reports the crash on this invocation or the
			// next, fast, and then re-initialises the sandbox with a new
			// extension, which answers from the table again.
			crashes := 0
			for i := 0; ; i++ {
				if invokeErr != nil {
					// The emulator answers 502, with the crash as the body
					// or, when the function had answered, with its body.
					if !strings.Contains(invokeErr.Error(), "status 502") {
						t.Fatalf("invoke error %v, want a 502 for Extension.Crash", invokeErr)
					}
					crashes++
				} else if i > 0 {
					break
				}
				if i == 2 {
					t.Fatalf("no successful invocation after the kill: %s, %v", a, invokeErr)
				}
				a, invokeErr, took = probe(t, e, nil)
				if took > 2*time.Second {
					t.Errorf("invocation %d after the kill took %s", i+1, took)
				}
			}
			if crashes != 1 || !strings.Contains(e.Logs(), "Invoke DONE failed: Extension.Crash") {
				t.Errorf("Extension.Crash reported %d times (want once) or not logged", crashes)
			}
			if a.Error != "" || a.Circuit.State != string(tt.state) || a.Circuit.FailMode {
				t.Errorf("after the re-init: %s; want the stored state", a)
			}
		})
	}
}

// TestExtensionKilledBetweenInvocations kills MyMicroservice's extension
// while the sandbox is idle: the next invocation fails fast with
// Extension.Crash (no hang), and the one after runs in a fresh sandbox.
func TestExtensionKilledBetweenInvocations(t *testing.T) {
	s := newStack(t)
	fn, _ := s.startFunction(t, fnOptions{})
	if r := call(t, fn); r.StatusCode != 200 {
		t.Fatalf("first call: %s", r)
	}
	if _, err := fn.Kill(extensionName); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := fn.Invoke(t.Context(), []byte(`{}`))
	took := time.Since(start)
	// The emulator answers 502, with the crash as the body or, when the
	// function answered before the platform noticed the crash, with the
	// function's body; the crash itself is always in the platform log.
	if err == nil || !strings.Contains(err.Error(), "status 502") {
		t.Errorf("invoke after the kill: %v, want a 502 for Extension.Crash", err)
	}
	pollUntil(t, time.Second, 20*time.Millisecond, func() (bool, string) {
		return strings.Contains(fn.Logs(), "Invoke DONE failed: Extension.Crash"), "Extension.Crash in the platform log"
	})
	if took > time.Second {
		t.Errorf("invoke after the kill took %s", took)
	}
	if r := call(t, fn); r.StatusCode != 200 || r.fallback() {
		t.Errorf("call in the new sandbox: %s, want the downstream's 200", r)
	}
	if pids, err := fn.Pids(extensionName); err != nil || len(pids) != 1 {
		t.Errorf("extension processes after the re-init: %v, %v; want one", pids, err)
	}
}

// TestTableOutage stops dynalite under a running extension: it keeps
// serving the last known state marked stale, applies the failure policy
// after CIRCUIT_BREAKER_MAX_STALENESS, and recovers by itself when
// dynalite returns on the same port.
func TestTableOutage(t *testing.T) {
	s := newStack(t)
	s.putCircuit(t, circuit.Circuit{ID: guardedService, State: circuit.Open, Version: 3, UpdatedAt: time.Now(), Reason: "e2e"})
	fn, _ := s.startFunction(t, fnOptions{function: probePkg, env: map[string]string{
		"CIRCUIT_BREAKER_FAIL_MODE":     "allow",
		"CIRCUIT_BREAKER_MAX_STALENESS": "1s",
	}})
	a, err, _ := probe(t, fn, nil)
	if err != nil || a.Circuit.State != "OPEN" || a.Circuit.Allowed || a.Circuit.Stale || a.Circuit.FailMode || a.Circuit.Version != 3 {
		t.Fatalf("before the outage: %s, %v; want OPEN v3, fresh", a, err)
	}

	s.db.Stop()
	stopped := time.Now()
	toStale := pollUntil(t, 5*time.Second, 50*time.Millisecond, func() (bool, string) {
		a, err, _ = probe(t, fn, nil)
		return err == nil && a.Circuit.Stale, a.String()
	})
	if a.Circuit.State != "OPEN" || a.Circuit.Allowed || a.Circuit.FailMode || a.Circuit.Version != 3 {
		t.Errorf("stale answer: %s, want the last known OPEN v3, not allowed", a)
	}
	pollUntil(t, 5*time.Second, 100*time.Millisecond, func() (bool, string) {
		a, err, _ = probe(t, fn, nil)
		return err == nil && a.Circuit.FailMode, a.String()
	})
	toPolicy := time.Since(stopped)
	if !a.Circuit.Allowed || !a.Allow {
		t.Errorf("after the maximum staleness: %s, want allowed by the allow policy", a)
	}
	// Staleness counts from the first failed read, after dynalite
	// stopped.
	if toPolicy < time.Second {
		t.Errorf("the policy replaced the state %s after the outage began, before the 1s maximum staleness", toPolicy)
	}

	if err := s.db.Restart(); err != nil {
		t.Fatalf("restart dynalite: %v", err)
	}
	restarted := time.Now()
	pollUntil(t, 10*time.Second, 100*time.Millisecond, func() (bool, string) {
		a, err, _ = probe(t, fn, nil)
		return err == nil && !a.Circuit.Stale && !a.Circuit.FailMode, a.String()
	})
	if a.Circuit.State != "OPEN" || a.Circuit.Allowed || a.Circuit.Version != 3 {
		t.Errorf("after dynalite returned: %s, want OPEN v3 from the table", a)
	}
	t.Logf("dynalite stopped: stale after %s, policy after %s; recovered %s after the restart",
		toStale.Round(time.Millisecond), toPolicy.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// TestHangingDownstream makes the downstream hang: MyMicroservice gives up
// within its own downstream limit and answers with its fallback, well
// before the function's timeout.
func TestHangingDownstream(t *testing.T) {
	s := newStack(t)
	fn, _ := s.startFunction(t, fnOptions{})
	if r := call(t, fn); r.StatusCode != 200 {
		t.Fatalf("first call: %s", r)
	}
	s.setMode(t, mockapi.Hang)
	r := call(t, fn)
	if r.StatusCode == 200 || !r.fallback() {
		t.Errorf("call to a hanging downstream: %s, want the fallback", r)
	}
	if limit := time.Duration(functionTimeoutS) * time.Second; r.took >= limit-500*time.Millisecond {
		t.Errorf("the call took %s, too close to the function timeout %s", r.took, limit)
	}
	t.Logf("hanging downstream: %s (function timeout %ds)", r, functionTimeoutS)
}
