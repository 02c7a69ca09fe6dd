package updater

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// TestConcurrentUpdaters has 50 updaters hammer one circuit with mixed
// results, confirmation checks included. Every transition must be won by exactly one writer: the logged
// transitions form one unbroken chain of allowed moves, versions 1..n
// without gaps or repeats, the stored version equals the number of
// transitions logged, and the final record is one the rules allow.
func TestConcurrentUpdaters(t *testing.T) {
	const (
		updaters = 50
		checks   = 8
	)
	e := newEnv(t)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if (n*2654435761)%100 < 45 { // a deterministic mix, 45% failures
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()

	// Virtual time moves 100ms on every reading, so cool-downs of 1-4s
	// end while the updaters run.
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ticks atomic.Int64
	now := func() time.Time { return base.Add(time.Duration(ticks.Add(1)) * 100 * time.Millisecond) }

	in, err := json.Marshal(Input{ID: "hot", URL: srv.URL + "/health", Timeout: "5s", SlowCallThreshold: "5s",
		FailureThreshold: 2, SuccessThreshold: 2, OpenCooldown: "1s", MaxOpenCooldown: "4s"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseInput(in)
	if err != nil {
		t.Fatal(err)
	}

	// 50 writers on one item on a 2-CPU machine that may be busy with
	// other tests: allow more rounds than the production bound, since
	// this test is about what the rounds write, not how many they take.
	// Confirmation checks follow failed ones at once, through the same
	// conditional writes.
	noWait := func(context.Context, time.Duration) error { return nil }
	u := &Updater{Store: e.store.WithMaxAttempts(500), Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: now, Sleep: noWait, Logger: e.logger}
	var (
		wg            sync.WaitGroup
		mu            sync.Mutex
		errs          []error
		transitioned  int
		confirmations int
	)
	for i := 0; i < updaters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < checks; j++ {
				out, err := u.Handle(context.Background(), in)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					transitioned += out.Transitions
					confirmations += out.Confirmations
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Errorf("updater failed: %v", err)
	}

	lines := e.logs.WithMsg(t, store.MsgTransition)
	sort.Slice(lines, func(a, b int) bool { return lines[a]["version"].(float64) < lines[b]["version"].(float64) })
	allowed := map[[2]string]bool{
		{"CLOSED", "OPEN"}: true, {"OPEN", "HALF_OPEN"}: true, {"HALF_OPEN", "CLOSED"}: true, {"HALF_OPEN", "OPEN"}: true,
	}
	state := "CLOSED"
	var last time.Time
	kinds := map[[2]string]int{}
	for i, l := range lines {
		from, to := l["from"].(string), l["to"].(string)
		if v := l["version"].(float64); v != float64(i+1) {
			t.Fatalf("transition %d has version %v: versions repeat or skip", i, v)
		}
		if from != state {
			t.Fatalf("transition v%d goes %s -> %s but the circuit was %s", i+1, from, to, state)
		}
		if !allowed[[2]string{from, to}] {
			t.Fatalf("transition v%d %s -> %s is not allowed", i+1, from, to)
		}
		at, err := time.Parse(time.RFC3339Nano, l["at"].(string))
		if err != nil || at.Before(last) {
			t.Fatalf("transition v%d at %v goes back in time from %v (%v)", i+1, l["at"], last, err)
		}
		kinds[[2]string{from, to}]++
		state, last = to, at
	}

	final, found, err := e.store.Get(context.Background(), "hot")
	if err != nil || !found {
		t.Fatalf("Get = %v, %v", found, err)
	}
	t.Logf("%d invocations, %d confirmation checks, %d transitions %v, final %s v%d, %d DynamoDB reads, %d writes",
		updaters*checks, confirmations, len(lines), kinds, final.State, final.Version, e.api.Reads.Load(), e.api.Writes.Load())
	if final.Version != int64(len(lines)) {
		t.Errorf("stored version %d, transitions logged %d", final.Version, len(lines))
	}
	if transitioned != len(lines) {
		t.Errorf("outputs report %d transitions, %d transitions logged", transitioned, len(lines))
	}
	if confirmations == 0 {
		t.Error("no confirmation check ran: the test did not exercise them")
	}
	if string(final.State) != state {
		t.Errorf("stored state %s, last logged transition ends in %s", final.State, state)
	}
	if err := allowedRecord(final, cfg.Settings); err != nil {
		t.Error(err)
	}
	for _, k := range [][2]string{{"CLOSED", "OPEN"}, {"OPEN", "HALF_OPEN"}} {
		if kinds[k] == 0 {
			t.Errorf("no %s -> %s transition: the test did not exercise the machine", k[0], k[1])
		}
	}
	if e.api.Writes.Load() <= int64(len(lines)) {
		t.Errorf("%d writes for %d transitions: no contention", e.api.Writes.Load(), len(lines))
	}
}

// allowedRecord checks the invariants the rules keep for a stored record.
func allowedRecord(c circuit.Circuit, s circuit.Settings) error {
	switch c.State {
	case circuit.Closed:
		if c.ConsecutiveFailures >= s.FailureThreshold || c.ConsecutiveSuccesses != 0 || c.OpenCount != 0 || !c.RetryAt.IsZero() {
			return fmt.Errorf("impossible CLOSED record: %+v", c)
		}
	case circuit.Open:
		if c.ConsecutiveFailures != 0 || c.ConsecutiveSuccesses != 0 || c.OpenCount < 1 || c.RetryAt.IsZero() {
			return fmt.Errorf("impossible OPEN record: %+v", c)
		}
	case circuit.HalfOpen:
		if c.ConsecutiveSuccesses < 1 || c.ConsecutiveSuccesses >= s.SuccessThreshold || c.ConsecutiveFailures != 0 || c.OpenCount < 1 {
			return fmt.Errorf("impossible HALF_OPEN record: %+v", c)
		}
	default:
		return fmt.Errorf("unknown state %q", c.State)
	}
	return nil
}
