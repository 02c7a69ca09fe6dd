package store

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

var t0 = time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)

// TestApplyWalksTheMachine drives one circuit through every transition via
// Apply and checks the stored item, the write count and the logs at every
// step.
func TestApplyWalksTheMachine(t *testing.T) {
	s, api, logs := newTestStore(t)
	ctx := context.Background()
	settings := circuit.Settings{}
	now := t0
	// As the updater does first: from then on a read is one item.
	if _, err := s.MigrateOverride(ctx, "svc", now); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name      string
		ok        bool
		advance   time.Duration
		change    circuit.Change
		state     circuit.State
		version   int64
		failures  int
		successes int
		opens     int
	}{
		{"healthy new circuit: no write", true, 0, circuit.NoChange, circuit.Closed, 0, 0, 0, 0},
		{"first failure creates the item", false, time.Minute, circuit.CounterUpdate, circuit.Closed, 0, 1, 0, 0},
		{"success resets", true, time.Minute, circuit.CounterUpdate, circuit.Closed, 0, 0, 0, 0},
		{"healthy again: no write", true, time.Minute, circuit.NoChange, circuit.Closed, 0, 0, 0, 0},
		{"failure 1", false, time.Minute, circuit.CounterUpdate, circuit.Closed, 0, 1, 0, 0},
		{"failure 2", false, time.Minute, circuit.CounterUpdate, circuit.Closed, 0, 2, 0, 0},
		{"failure 3 opens", false, time.Minute, circuit.Transition, circuit.Open, 1, 0, 0, 1},
		{"cooling down: no write", true, 10 * time.Second, circuit.NoChange, circuit.Open, 1, 0, 0, 1},
		{"trial fails: longer cool-down", false, time.Minute, circuit.CounterUpdate, circuit.Open, 1, 0, 0, 2},
		{"trial succeeds: half-open", true, time.Minute, circuit.Transition, circuit.HalfOpen, 2, 0, 1, 2},
		{"half-open fails: open", false, time.Minute, circuit.Transition, circuit.Open, 3, 0, 0, 3},
		{"trial succeeds again", true, 2 * time.Minute, circuit.Transition, circuit.HalfOpen, 4, 0, 1, 3},
		{"second success closes", true, time.Minute, circuit.Transition, circuit.Closed, 5, 0, 0, 0},
		{"healthy closed: no write", true, time.Minute, circuit.NoChange, circuit.Closed, 5, 0, 0, 0},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		result := circuit.Failure("status 500")
		if st.ok {
			result = circuit.Success("status 200")
		}
		r0, w0 := api.Reads.Load(), api.Writes.Load()
		a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
			return circuit.Decide(c, settings, result, now)
		})
		if err != nil {
			t.Fatalf("%s: Apply: %v", st.name, err)
		}
		if a.Decision.Change != st.change {
			t.Fatalf("%s: change %s, want %s", st.name, a.Decision.Change, st.change)
		}
		wantWrites := int64(1)
		if st.change == circuit.NoChange {
			wantWrites = 0
		}
		if r, w := api.Reads.Load()-r0, api.Writes.Load()-w0; r != 1 || w != wantWrites || a.Reads != 1 || a.Writes != int(wantWrites) {
			t.Errorf("%s: %d reads %d writes (Applied says %d/%d), want 1 and %d", st.name, r, w, a.Reads, a.Writes, wantWrites)
		}
		got, _, err := s.Get(ctx, "svc")
		if err != nil {
			t.Fatal(err)
		}
		if got.State != st.state || got.Version != st.version || got.ConsecutiveFailures != st.failures || got.ConsecutiveSuccesses != st.successes || got.OpenCount != st.opens {
			t.Errorf("%s: stored %s v%d failures %d successes %d opens %d; want %s v%d %d %d %d", st.name,
				got.State, got.Version, got.ConsecutiveFailures, got.ConsecutiveSuccesses, got.OpenCount,
				st.state, st.version, st.failures, st.successes, st.opens)
		}
		if got.State == circuit.Open && !got.RetryAt.After(now) {
			t.Errorf("%s: OPEN with retryAt %v not after now %v", st.name, got.RetryAt, now)
		}
		if got.State != circuit.Open && !got.RetryAt.IsZero() {
			t.Errorf("%s: %s with retryAt %v, want none", st.name, got.State, got.RetryAt)
		}
		if st.change == circuit.Transition && (!got.UpdatedAt.Equal(now) || got.PreviousState != a.Before.State || got.Reason == "") {
			t.Errorf("%s: transition bookkeeping updatedAt %v previous %s reason %q", st.name, got.UpdatedAt, got.PreviousState, got.Reason)
		}
	}

	transitions := withMsg(logs.Lines(t), MsgTransition)
	wantChain := [][2]string{{"CLOSED", "OPEN"}, {"OPEN", "HALF_OPEN"}, {"HALF_OPEN", "OPEN"}, {"OPEN", "HALF_OPEN"}, {"HALF_OPEN", "CLOSED"}}
	if len(transitions) != len(wantChain) {
		t.Fatalf("logged %d transitions, want %d: %v", len(transitions), len(wantChain), transitions)
	}
	for i, l := range transitions {
		if l["from"] != wantChain[i][0] || l["to"] != wantChain[i][1] || l["version"] != float64(i+1) || l["service"] != "svc" || l["reason"] == "" || l["at"] == nil || l["level"] != "INFO" {
			t.Errorf("transition line %d = %v, want %s -> %s at version %d", i, l, wantChain[i][0], wantChain[i][1], i+1)
		}
	}
	if n := len(withMsg(logs.Lines(t), MsgTrialFailed)); n != 1 {
		t.Errorf("logged %d failed trials, want 1", n)
	}
}

// TestWriteConditions checks that every write is refused when the item
// moved on since it was read, and never bumps the version of a counter
// update.
func TestWriteConditions(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	fresh := circuit.New("w")
	oneFailure := fresh
	oneFailure.ConsecutiveFailures = 1
	if err := s.Write(ctx, fresh, oneFailure, circuit.CounterUpdate); err != nil {
		t.Fatalf("first counter write: %v", err)
	}
	tests := []struct {
		name    string
		cur     circuit.Circuit
		next    func(c circuit.Circuit) circuit.Circuit
		change  circuit.Change
		wantErr string
	}{
		{"stale counters", fresh, func(c circuit.Circuit) circuit.Circuit { c.ConsecutiveFailures = 1; return c }, circuit.CounterUpdate, "changed since it was read"},
		{"stale version", circuit.Circuit{ID: "w", State: circuit.Closed, Version: 3, ConsecutiveFailures: 1}, func(c circuit.Circuit) circuit.Circuit { c.Version = 4; c.State = circuit.Open; return c }, circuit.Transition, "changed since it was read"},
		{"counter update may not bump version", oneFailure, func(c circuit.Circuit) circuit.Circuit { c.Version = 1; return c }, circuit.CounterUpdate, "changes version"},
		{"transition must bump version by one", oneFailure, func(c circuit.Circuit) circuit.Circuit { c.Version = 2; c.State = circuit.Open; return c }, circuit.Transition, "want version+1"},
		{"no change is not a write", oneFailure, func(c circuit.Circuit) circuit.Circuit { return c }, circuit.NoChange, "with change none"},
		{"unknown state", oneFailure, func(c circuit.Circuit) circuit.Circuit { c.State = "SHUT"; return c }, circuit.CounterUpdate, "unknown state"},
		{"other circuit", oneFailure, func(c circuit.Circuit) circuit.Circuit { c.ID = "x"; return c }, circuit.CounterUpdate, "changes circuit ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Write(ctx, tt.cur, tt.next(tt.cur), tt.change)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Write = %v, want error containing %q", err, tt.wantErr)
			}
			got, _, err := s.Get(ctx, "w")
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 0 || got.ConsecutiveFailures != 1 || got.State != circuit.Closed {
				t.Errorf("refused write changed the item: %+v", got)
			}
		})
	}
	stale := errors.Is(s.Write(ctx, fresh, oneFailure, circuit.CounterUpdate), ErrConflict)
	if !stale {
		t.Error("stale write does not wrap ErrConflict")
	}
}

// TestApplyRetriesAfterConflict makes the first decision lose to a write
// slipped in between its read and its write, and checks that Apply re-reads
// and decides again on the new record.
func TestApplyRetriesAfterConflict(t *testing.T) {
	s, api, logs := newTestStore(t)
	ctx := context.Background()
	calls := 0
	a, err := s.Apply(ctx, "r", func(c circuit.Circuit) circuit.Decision {
		calls++
		if calls == 1 {
			// Another updater counts two failures meanwhile.
			two := c
			two.ConsecutiveFailures = 2
			if err := s.Write(ctx, c, two, circuit.CounterUpdate); err != nil {
				t.Fatalf("interfering write: %v", err)
			}
		}
		return circuit.Decide(c, circuit.Settings{}, circuit.Failure("timeout"), t0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || a.Reads != 2 || a.Writes != 2 {
		t.Errorf("calls %d reads %d writes %d, want 2 each", calls, a.Reads, a.Writes)
	}
	if a.After().State != circuit.Open || a.After().Version != 1 {
		t.Errorf("after retry: %s v%d, want OPEN v1 (third failure)", a.After().State, a.After().Version)
	}
	if n := len(withMsg(logs.Lines(t), MsgTransition)); n != 1 {
		t.Errorf("%d transition lines, want 1", n)
	}
	if api.Writes.Load() != 3 {
		t.Errorf("%d UpdateItem calls, want 3 (interfering, lost, won)", api.Writes.Load())
	}
}

// TestApplyGivesUp checks the bound on lost rounds.
func TestApplyGivesUp(t *testing.T) {
	s, _, _ := newTestStore(t)
	s = s.WithMaxAttempts(3)
	ctx := context.Background()
	rounds := 0
	_, err := s.Apply(ctx, "g", func(c circuit.Circuit) circuit.Decision {
		rounds++
		bumped := c
		bumped.ConsecutiveFailures++
		if err := s.Write(ctx, c, bumped, circuit.CounterUpdate); err != nil {
			t.Fatalf("interfering write: %v", err)
		}
		return circuit.Decide(c, circuit.Settings{FailureThreshold: 100}, circuit.Failure("x"), t0)
	})
	if !errors.Is(err, ErrContention) || rounds != 3 {
		t.Fatalf("Apply = %v after %d rounds, want ErrContention after 3", err, rounds)
	}
}

// TestOverrides sets and clears overrides around transitions.
func TestOverrides(t *testing.T) {
	s, api, logs := newTestStore(t)
	ctx := context.Background()
	until := t0.Add(time.Hour)

	// Setting an override on a circuit that was never written creates only
	// its override item.
	c, err := s.SetOverride(ctx, "ov", circuit.ForcedOpen, "planned maintenance", until, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Override != circuit.ForcedOpen || c.OverrideReason != "planned maintenance" || !c.OverrideUntil.Equal(until) || !c.OverrideAt.Equal(t0) || c.State != circuit.Closed || c.Version != 0 {
		t.Fatalf("SetOverride = %+v", c)
	}
	if c.Allowed(t0) || !c.Allowed(until) {
		t.Errorf("FORCED_OPEN until %v: Allowed(t0)=%v Allowed(until)=%v, want false, true", until, c.Allowed(t0), c.Allowed(until))
	}

	// The state machine still runs underneath and keeps the override.
	for i := 0; i < 3; i++ {
		if _, err := s.Apply(ctx, "ov", func(c circuit.Circuit) circuit.Decision {
			return circuit.Decide(c, circuit.Settings{}, circuit.Failure("x"), t0)
		}); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := s.Get(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != circuit.Open || got.Version != 1 || got.Override != circuit.ForcedOpen || got.OverrideReason != "planned maintenance" {
		t.Errorf("after 3 failures under an override: %+v", got)
	}

	// Replacing with FORCED_CLOSED forever keeps state and version.
	c, err = s.SetOverride(ctx, "ov", circuit.ForcedClosed, "false alarm", time.Time{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if c.Override != circuit.ForcedClosed || !c.OverrideUntil.IsZero() || c.State != circuit.Open || c.Version != 1 || !c.Allowed(t0.Add(1000*time.Hour)) {
		t.Errorf("replaced override: %+v", c)
	}

	c, cleared, err := s.ClearOverride(ctx, "ov", t0)
	if err != nil || !cleared || c.Override != circuit.NoOverride || c.State != circuit.Open || c.Version != 1 {
		t.Fatalf("ClearOverride = %+v, %v, %v", c, cleared, err)
	}
	got, _, err = s.Get(ctx, "ov")
	if err != nil || got.Override != circuit.NoOverride || got.OverrideReason != "" || !got.OverrideAt.IsZero() || got.Allowed(t0) {
		t.Errorf("after clear, stored %+v, %v", got, err)
	}

	w := api.Writes.Load()
	if _, cleared, err := s.ClearOverride(ctx, "ov", t0); err != nil || cleared {
		t.Errorf("second ClearOverride = %v, %v; want not cleared", cleared, err)
	}
	if _, cleared, err := s.ClearOverride(ctx, "never-written", t0); err != nil || cleared {
		t.Errorf("ClearOverride(never-written) = %v, %v; want not cleared", cleared, err)
	}
	if _, found, _ := s.Get(ctx, "never-written"); found {
		t.Error("ClearOverride created an item")
	}
	if api.Writes.Load()-w != 0 {
		t.Errorf("%d UpdateItem calls to clear no override, want none", api.Writes.Load()-w)
	}

	lines := logs.Lines(t)
	if n, m := len(withMsg(lines, MsgOverrideSet)), len(withMsg(lines, MsgOverrideCleared)); n != 2 || m != 1 {
		t.Errorf("override log lines: %d set, %d cleared; want 2, 1", n, m)
	}

	bad := []struct {
		name, id string
		o        circuit.Override
		reason   string
		until    time.Time
	}{
		{"bad id", "a b", circuit.ForcedOpen, "r", time.Time{}},
		{"no reason", "ov", circuit.ForcedOpen, "", time.Time{}},
		{"not an override", "ov", circuit.Override("OPEN"), "r", time.Time{}},
		{"expired", "ov", circuit.ForcedOpen, "r", t0.Add(-time.Second)},
	}
	w = api.Writes.Load()
	for _, b := range bad {
		if _, err := s.SetOverride(ctx, b.id, b.o, b.reason, b.until, t0); err == nil {
			t.Errorf("%s: SetOverride succeeded", b.name)
		}
	}
	if api.Writes.Load() != w {
		t.Error("invalid SetOverride calls reached DynamoDB")
	}
}

// TestSparseItemFromOverride checks that an item holding only an override
// (as an operator tool might create with a raw write) still takes its first
// counter write and transition.
func TestSparseItemFromOverride(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	tbl := s.Table()
	if _, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 &tbl,
		Key:                       key("sparse"),
		UpdateExpression:          aws.String("SET #o = :o"),
		ExpressionAttributeNames:  map[string]string{"#o": "override"},
		ExpressionAttributeValues: map[string]typesAV{":o": strAV("FORCED_OPEN")},
	}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := s.Apply(ctx, "sparse", func(c circuit.Circuit) circuit.Decision {
			return circuit.Decide(c, circuit.Settings{}, circuit.Failure("x"), t0)
		}); err != nil {
			t.Fatalf("check %d: %v", i+1, err)
		}
	}
	got, _, err := s.Get(ctx, "sparse")
	if err != nil || got.State != circuit.Open || got.Version != 1 || got.Override != circuit.ForcedOpen {
		t.Errorf("sparse item after 3 failures: %+v, %v", got, err)
	}
}

// TestApplyCountsARetriedWriteOnce loses the answer of Apply's first
// write after DynamoDB applied it; the SDK retries the same request, whose
// condition then fails on the item it wrote itself. That is a success, not
// a lost race: the decision counts once.
func TestApplyCountsARetriedWriteOnce(t *testing.T) {
	tests := []struct {
		name   string
		start  circuit.Circuit
		result circuit.CheckResult
		decide func(c circuit.Circuit, r circuit.CheckResult) circuit.Decision
		want   func(c circuit.Circuit) bool
		desc   string
	}{
		{
			name:   "probe success",
			start:  circuit.Circuit{State: circuit.HalfOpen, Version: 1, OpenCount: 1},
			result: circuit.Success("probe ok"),
			decide: func(c circuit.Circuit, r circuit.CheckResult) circuit.Decision {
				return circuit.DecideProbe(c, circuit.Settings{SuccessThreshold: 2}, 1, r, t0)
			},
			want: func(c circuit.Circuit) bool {
				return c.State == circuit.HalfOpen && c.Version == 1 && c.ConsecutiveSuccesses == 1
			},
			desc: "HALF_OPEN v1 with 1 success (2 would close it)",
		},
		{
			name:   "failed check",
			start:  circuit.Circuit{State: circuit.Closed, Version: 1, ConsecutiveFailures: 1},
			result: circuit.Failure("status 500"),
			decide: func(c circuit.Circuit, r circuit.CheckResult) circuit.Decision {
				return circuit.Decide(c, circuit.Settings{}, r, t0)
			},
			want: func(c circuit.Circuit) bool { return c.State == circuit.Closed && c.ConsecutiveFailures == 2 },
			desc: "CLOSED with 2 failures (3 would open it)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var armed atomic.Bool
			s, tr := newFaultyStore(t, loseFirst("UpdateItem", &armed))
			ctx := context.Background()
			start := tt.start
			start.ID = "svc"
			if err := s.Write(ctx, circuit.New("svc"), start, circuit.Transition); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			before := tr.Count("UpdateItem")
			a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision { return tt.decide(c, tt.result) })
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if n := tr.Count("UpdateItem") - before; n != 2 {
				t.Errorf("%d UpdateItem requests, want 2 (the applied one whose answer was lost, and the SDK's retry)", n)
			}
			got, _, err := s.Get(ctx, "svc")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(got) || a.Writes != 1 || a.Reads != 1 {
				t.Errorf("after one %s: stored %s v%d failures %d successes %d, Apply made %d reads %d writes; want %s, 1 read, 1 write",
					tt.name, got.State, got.Version, got.ConsecutiveFailures, got.ConsecutiveSuccesses, a.Reads, a.Writes, tt.desc)
			}
		})
	}
}

// TestApplyRewritesUnreadableItem checks that Apply decides on what can be
// salvaged from a circuit item that cannot be decoded and rewrites the
// item through the conditional write, whatever the decision, logging it
// once; and that the rewrite loses to a writer that changed the item after
// it was read.
func TestApplyRewritesUnreadableItem(t *testing.T) {
	tests := []struct {
		name      string
		attrs     map[string]types.AttributeValue
		override  circuit.Override
		result    circuit.CheckResult
		wantState circuit.State
		wantVer   int64
		wantFail  int
	}{
		{"unknown state, healthy check", map[string]types.AttributeValue{"state": strAV("BOGUS")}, "", circuit.Success("ok"), circuit.Closed, 2, 0},
		{"unknown state, failed check", map[string]types.AttributeValue{"state": strAV("BOGUS")}, "", circuit.Failure("status 500"), circuit.Closed, 2, 1},
		{"unknown state under FORCED_OPEN, failed trial", map[string]types.AttributeValue{"state": strAV("BOGUS")}, circuit.ForcedOpen, circuit.Failure("status 500"), circuit.Open, 2, 0},
		{"counters of the wrong type", map[string]types.AttributeValue{"failures": strAV("x"), "reason": num(3), "updatedAt": strAV("y")}, "", circuit.Success("ok"), circuit.Closed, 2, 0},
		{"legacy override of the wrong type", map[string]types.AttributeValue{"state": strAV("BOGUS"), "overrideUntil": strAV("soon"), "override": strAV("FORCED_CLOSED")}, "", circuit.Success("ok"), circuit.Closed, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, api, logs := newTestStore(t)
			ctx := context.Background()
			setAttrs(t, s, "svc", map[string]types.AttributeValue{"state": strAV("CLOSED"), "version": num(2)})
			if tt.override != "" {
				if _, err := s.SetOverride(ctx, "svc", tt.override, "operator", time.Time{}, t0); err != nil {
					t.Fatal(err)
				}
			}
			setAttrs(t, s, "svc", tt.attrs)
			w0 := api.Writes.Load()
			a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
				return circuit.Decide(c, circuit.Settings{}, tt.result, t0)
			})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if a.Rewritten == nil || a.Writes != 1 || api.Writes.Load()-w0 != 1 || a.Decision.Change == circuit.NoChange {
				t.Errorf("Apply = %+v, %d UpdateItem calls; want one rewrite reported", a, api.Writes.Load()-w0)
			}
			// The updater migrates the override after its check: that
			// removes legacy attributes, which the rewrite leaves alone.
			if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
				t.Fatal(err)
			}
			item := rawItem(t, s, "svc")
			c, err := Decode(item)
			if err != nil {
				t.Fatalf("rewritten item does not decode: %v: %v", err, item)
			}
			if c.State != tt.wantState || c.Version != tt.wantVer || c.ConsecutiveFailures != tt.wantFail {
				t.Errorf("rewritten circuit %+v; want %s v%d with %d failures", c, tt.wantState, tt.wantVer, tt.wantFail)
			}
			if _, ok := item["overrideUntil"]; ok {
				t.Errorf("a legacy attribute that does not decode is still there: %v", item)
			}
			lines := withMsg(logs.Lines(t), MsgItemRewritten)
			if len(lines) != 1 || lines[0]["service"] != "svc" || lines[0]["level"] != "WARN" || lines[0]["error"] == "" {
				t.Errorf("rewrite log lines = %v; want one warning", lines)
			}
			if _, _, err := s.Get(ctx, "svc"); err != nil {
				t.Errorf("Get after the rewrite: %v", err)
			}
			if a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
				return circuit.Decide(c, circuit.Settings{}, circuit.Success("ok"), t0)
			}); err != nil || a.Rewritten != nil {
				t.Errorf("next Apply = %+v, %v; want an ordinary one", a, err)
			}
		})
	}

	t.Run("loses to a writer that changed the item", func(t *testing.T) {
		s, _, logs := newTestStore(t)
		ctx := context.Background()
		setAttrs(t, s, "svc", map[string]types.AttributeValue{"state": strAV("BOGUS"), "version": num(4)})
		rounds := 0
		a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
			rounds++
			if rounds == 1 {
				setAttrs(t, s, "svc", map[string]types.AttributeValue{"state": strAV("OPEN"), "retryAt": num(toMillis(t0.Add(time.Hour)))})
			}
			return circuit.Decide(c, circuit.Settings{}, circuit.Failure("x"), t0)
		})
		if err != nil || rounds != 2 || a.Rewritten != nil || a.Decision.Change != circuit.NoChange {
			t.Fatalf("Apply = %+v, %v after %d rounds; want the rewrite lost and an OPEN circuit left alone", a, err, rounds)
		}
		if c, _, err := s.Get(ctx, "svc"); err != nil || c.State != circuit.Open || c.Version != 4 {
			t.Errorf("stored %+v, %v; want the other writer's OPEN v4", c, err)
		}
		if n := len(withMsg(logs.Lines(t), MsgItemRewritten)); n != 0 {
			t.Errorf("%d rewrite lines for a lost rewrite", n)
		}
	})
}

// TestApplyCountsAWriteOverlaidBeforeItsRetry loses the answer of Apply's
// applied trip, and lands another writer's write on top of it before the
// SDK retries the trip. The retry's condition fails on an item whose last
// token is the other writer's: the trip still counts as Apply's own, once,
// and is logged, rather than taken for a lost race.
func TestApplyCountsAWriteOverlaidBeforeItsRetry(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	other := New(srv.Client(), table).WithLogger(slog.New(slog.NewJSONHandler(&logBuffer{}, nil)))
	var updates atomic.Int32
	tr := &dbfault.Transport{Fault: func(op string, _ []byte) dbfault.Action {
		if op != "UpdateItem" {
			return dbfault.Pass
		}
		switch updates.Add(1) {
		case 1:
			return dbfault.LoseAnswer
		case 2:
			// Before the SDK's retry: a later check finds the circuit
			// OPEN past its cool-down and records a failed trial.
			if _, err := other.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
				return circuit.Decide(c, circuit.Settings{}, circuit.Failure("status 500"), t0.Add(time.Hour))
			}); err != nil {
				t.Errorf("other writer: %v", err)
			}
		}
		return dbfault.Pass
	}}
	logs := &logBuffer{}
	s := New(tr.Wrap(srv.Client()), table).WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))
	start := circuit.Circuit{ID: "svc", State: circuit.Closed, ConsecutiveFailures: 2}
	if err := other.Write(ctx, circuit.New("svc"), start, circuit.CounterUpdate); err != nil {
		t.Fatal(err)
	}
	a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{}, circuit.Failure("status 500"), t0)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := updates.Load(); n != 2 {
		t.Fatalf("%d UpdateItem requests through the fault, want 2 (the trip, the SDK's retry)", n)
	}
	if !a.Decision.Transitioned() || a.After().State != circuit.Open || a.Reads != 1 || a.Writes != 1 {
		t.Errorf("Apply = %s to %s, %d reads %d writes; want the trip to OPEN, 1 read, 1 write", a.Decision.Change, a.After().State, a.Reads, a.Writes)
	}
	if n := len(withMsg(logs.Lines(t), MsgTransition)); n != 1 {
		t.Errorf("%d transition lines, want the trip logged once", n)
	}
	if c, _, err := other.Get(ctx, "svc"); err != nil || c.State != circuit.Open || c.Version != 1 || c.OpenCount != 2 {
		t.Errorf("stored %+v, %v; want OPEN v1 after the trip and the failed trial", c, err)
	}
}
