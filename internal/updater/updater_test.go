package updater

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// TestEveryTransitionForEveryFailureKind drives a circuit through every
// transition with each kind of failing service, through Handle (JSON input,
// real HTTP probe, dynalite), and counts DynamoDB calls at every step.
func TestEveryTransitionForEveryFailureKind(t *testing.T) {
	failures := []struct {
		mode    string
		outcome healthcheck.Outcome
	}{
		{fail500, healthcheck.Status},
		{hang, healthcheck.Timeout},
		{slow, healthcheck.Slow},
		{refused, healthcheck.Connection},
	}
	type step struct {
		name      string
		failing   bool
		advance   time.Duration
		state     circuit.State
		change    circuit.Change
		opens     int
		successes int
	}
	steps := []step{
		{"healthy new circuit", false, 0, circuit.Closed, circuit.NoChange, 0, 0},
		{"failure 1", true, time.Minute, circuit.Closed, circuit.CounterUpdate, 0, 0},
		{"failure 2", true, time.Minute, circuit.Closed, circuit.CounterUpdate, 0, 0},
		{"failure 3 opens", true, time.Minute, circuit.Open, circuit.Transition, 1, 0},
		{"cooling down", true, 10 * time.Second, circuit.Open, circuit.NoChange, 1, 0},
		{"trial succeeds", false, 30 * time.Second, circuit.HalfOpen, circuit.Transition, 1, 1},
		{"half-open fails", true, time.Minute, circuit.Open, circuit.Transition, 2, 0},
		{"healthy but cooling down (60s)", false, 30 * time.Second, circuit.Open, circuit.NoChange, 2, 0},
		{"trial fails", true, 40 * time.Second, circuit.Open, circuit.CounterUpdate, 3, 0},
		{"healthy but cooling down (120s)", false, 119 * time.Second, circuit.Open, circuit.NoChange, 3, 0},
		{"trial succeeds again", false, time.Second, circuit.HalfOpen, circuit.Transition, 3, 1},
		{"second success closes", false, time.Minute, circuit.Closed, circuit.Transition, 0, 0},
		{"healthy steady state", false, time.Minute, circuit.Closed, circuit.NoChange, 0, 0},
		{"healthy steady state again", false, time.Minute, circuit.Closed, circuit.NoChange, 0, 0},
	}
	wantTransitions := [][2]circuit.State{{circuit.Closed, circuit.Open}, {circuit.Open, circuit.HalfOpen}, {circuit.HalfOpen, circuit.Open}, {circuit.Open, circuit.HalfOpen}, {circuit.HalfOpen, circuit.Closed}}

	for _, f := range failures {
		t.Run(f.mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc := newService(t, 600*time.Millisecond)
			clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: clk.Now, Logger: e.logger}
			ctx := context.Background()
			var lastItem map[string]any
			for i, st := range steps {
				clk.Advance(st.advance)
				mode := healthy
				if st.failing {
					mode = f.mode
				}
				// One check per invocation: confirmation is tested below.
				in, _ := json.Marshal(Input{ID: "mock-api", URL: svc.url(mode), Timeout: "1s", SlowCallThreshold: "300ms", ConfirmInterval: "0s", ReadCopies: 1})
				r0, w0 := e.api.Reads.Load(), e.api.Writes.Load()
				out, err := u.Handle(ctx, in)
				if err != nil {
					t.Fatalf("step %d %s: %v", i, st.name, err)
				}
				reads, writes := e.api.Reads.Load()-r0, e.api.Writes.Load()-w0
				wantWrites := int64(1)
				if st.change == circuit.NoChange {
					wantWrites = 0
				}
				wantReads := int64(1)
				if i == 0 {
					// The first check migrates the override: its read
					// also reads the legacy override item, the migration
					// reads both again and writes the override attribute.
					wantWrites++
					wantReads += 3
				}
				if reads != wantReads || writes != wantWrites {
					t.Errorf("step %d %s: %d reads, %d writes; want %d, %d", i, st.name, reads, writes, wantReads, wantWrites)
				}
				wantOutcome := healthcheck.OK
				if st.failing {
					wantOutcome = f.outcome
				}
				if out.Check.Outcome != wantOutcome || out.Check.OK != !st.failing {
					t.Fatalf("step %d %s: check %+v, want outcome %s", i, st.name, out.Check, wantOutcome)
				}
				if out.State != st.state || out.Change != st.change.String() || out.Transitioned != (st.change == circuit.Transition) {
					t.Fatalf("step %d %s: output %+v, want state %s change %s", i, st.name, out, st.state, st.change)
				}
				got, _, err := e.store.Get(ctx, "mock-api")
				if err != nil {
					t.Fatal(err)
				}
				if got.State != st.state || got.OpenCount != st.opens || got.ConsecutiveSuccesses != st.successes || got.Version != out.Version {
					t.Errorf("step %d %s: stored %+v", i, st.name, got)
				}
				item := rawItem(t, e, "mock-api")
				if st.change == circuit.NoChange && lastItem != nil && !reflect.DeepEqual(item, lastItem) {
					t.Errorf("step %d %s: item changed without a write:\n%v\n%v", i, st.name, lastItem, item)
				}
				lastItem = item
			}
			lines := e.logs.WithMsg(t, store.MsgTransition)
			if len(lines) != len(wantTransitions) {
				t.Fatalf("%d transitions logged, want %d", len(lines), len(wantTransitions))
			}
			for i, l := range lines {
				if l["from"] != string(wantTransitions[i][0]) || l["to"] != string(wantTransitions[i][1]) || l["version"] != float64(i+1) {
					t.Errorf("transition %d = %v, want %v", i, l, wantTransitions[i])
				}
			}
			if f.mode != refused {
				if _, ok := svc.userAgents.Load(healthcheck.UserAgent); !ok {
					t.Error("checks did not send the updater's User-Agent")
				}
			}
		})
	}
}

// rawItem reads the stored item as plain values.
func rawItem(t *testing.T, e *env, id string) map[string]any {
	t.Helper()
	out, err := e.api.API.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(e.store.Table()),
		Key:            map[string]typesAV{"id": strAV(id)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	for k, v := range out.Item {
		m[k] = v
	}
	data, _ := json.Marshal(m)
	var plain map[string]any
	_ = json.Unmarshal(data, &plain)
	return plain
}

// TestBadInputWritesNothing checks that rejected input neither probes nor
// touches DynamoDB.
func TestBadInputWritesNothing(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	probes := &countingProber{inner: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets())}
	u := &Updater{Store: e.store, Prober: probes, Logger: e.logger}
	inputs := []string{
		`{}`,
		`{"URL":"` + svc.url(healthy) + `"}`,
		`{"ID":"","URL":"` + svc.url(healthy) + `"}`,
		`{"ID":"bad id","URL":"` + svc.url(healthy) + `"}`,
		`{"ID":"a","URL":"not a url"}`,
		`{"ID":"a","URL":"ftp://127.0.0.1/x"}`,
		`{"ID":"a","URL":"` + svc.url(healthy) + `","Retries":1}`,
		`{"ID":"a","URL":"` + svc.url(healthy) + `","Timeout":"1h"}`,
		`{"ID":"a","URL":"` + svc.url(healthy) + `","FailureThreshold":0}`,
		`{"ID":"a","URL":"` + svc.url(healthy) + `","ConfirmInterval":"1m"}`,
		`{"ID":"a","URL":"` + svc.url(healthy) + `","CheckInterval":"500ms"}`,
		`{"ID":"a","URL":"` + svc.url(healthy) + `","CheckInterval":"0s"}`,
		`not json`,
	}
	for _, in := range inputs {
		if out, err := u.Handle(context.Background(), json.RawMessage(in)); err == nil {
			t.Errorf("Handle(%s) = %+v, want error", in, out)
		}
	}
	if r, w, p := e.api.Reads.Load(), e.api.Writes.Load(), probes.n.Load(); r != 0 || w != 0 || p != 0 {
		t.Errorf("bad input caused %d reads, %d writes, %d probes; want none", r, w, p)
	}
}

// TestInterruptedCheckWritesNothing checks that a check the invocation
// itself cuts short (its context cancelled mid-check, or mid-wait for a
// confirmation) is not counted as a failure.
func TestInterruptedCheckWritesNothing(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(hang), Timeout: "2s", ReadCopies: 1})
	if _, err := u.Handle(ctx, in); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("interrupted check returned %v, want an interruption", err)
	}
	if w := e.api.Writes.Load(); w != 0 {
		t.Errorf("interrupted check caused %d writes", w)
	}

	// Cancelled while waiting to confirm: the first failure stays
	// written, the confirmation never runs.
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	in, _ = json.Marshal(Input{ID: "b", URL: svc.url(fail500), ConfirmInterval: "30s", ReadCopies: 1})
	if _, err := u.Handle(ctx, in); err == nil || !strings.Contains(err.Error(), "confirmation of \"b\" interrupted") {
		t.Fatalf("interrupted confirmation returned %v", err)
	}
	if c, _, _ := e.store.Get(context.Background(), "b"); c.ConsecutiveFailures != 1 {
		t.Errorf("stored %+v, want the first failure only", c)
	}
}

// TestOverrideShownInOutput checks that the output reports an operator
// override while the state machine keeps running underneath.
func TestOverrideShownInOutput(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	now := time.Now()
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: func() time.Time { return now }, Logger: e.logger}
	ctx := context.Background()
	if _, err := e.store.SetOverride(ctx, "a", circuit.ForcedOpen, "maintenance", now.Add(time.Hour), now); err != nil {
		t.Fatal(err)
	}
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(fail500), FailureThreshold: 1, ReadCopies: 1})
	out, err := u.Handle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != circuit.Open || out.EffectiveState != circuit.Open || out.Override != circuit.ForcedOpen || !out.Transitioned || out.From != circuit.Closed {
		t.Errorf("output under FORCED_OPEN = %+v", out)
	}
	if _, err := e.store.SetOverride(ctx, "a", circuit.ForcedClosed, "false alarm", time.Time{}, now); err != nil {
		t.Fatal(err)
	}
	in, _ = json.Marshal(Input{ID: "a", URL: svc.url(fail500), FailureThreshold: 1, ReadCopies: 1})
	out, err = u.Handle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != circuit.Open || out.EffectiveState != circuit.Closed || out.Override != circuit.ForcedClosed {
		t.Errorf("output under FORCED_CLOSED = %+v", out)
	}
	c, _, _ := e.store.Get(ctx, "a")
	if c.Override != circuit.ForcedClosed || c.OverrideReason != "false alarm" {
		t.Errorf("check clobbered the override: %+v", c)
	}
}

// TestOverrideMigrates checks the updater against tables written by
// earlier versions: an override on the circuit item's legacy attributes
// ("a") or in an override item ("b") is honoured, then moved into the
// circuit item's override attribute by the first check, after which
// legacy attributes written on the circuit item (as an attached function
// could) and the old override item are ignored.
func TestOverrideMigrates(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	now := time.Now()
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: func() time.Time { return now }, Logger: e.logger}
	ctx := context.Background()
	setAttrs := func(id string, attrs map[string]typesAV) {
		t.Helper()
		expr, names, values := "SET ", map[string]string{}, map[string]typesAV{}
		i := 0
		for k, v := range attrs {
			if i > 0 {
				expr += ", "
			}
			n, p := fmt.Sprintf("#a%d", i), fmt.Sprintf(":v%d", i)
			expr += n + " = " + p
			names[n], values[p] = k, v
			i++
		}
		tbl := e.store.Table()
		if _, err := e.api.API.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &tbl, Key: map[string]typesAV{"id": strAV(id)}, UpdateExpression: &expr, ExpressionAttributeNames: names, ExpressionAttributeValues: values}); err != nil {
			t.Fatal(err)
		}
	}
	// Tables written by earlier versions: FORCED_OPEN on the circuit
	// item, and in an override item.
	setAttrs("a", map[string]typesAV{"state": strAV("CLOSED"), "version": &types.AttributeValueMemberN{Value: "0"}, "override": strAV("FORCED_OPEN"), "overrideReason": strAV("maintenance")})
	setAttrs("b#override", map[string]typesAV{"kind": strAV("override"), "override": strAV("FORCED_OPEN"), "overrideReason": strAV("maintenance")})
	for _, id := range []string{"a", "b"} {
		in, _ := json.Marshal(Input{ID: id, URL: svc.url(healthy), ReadCopies: 1})
		out, err := u.Handle(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if out.EffectiveState != circuit.Open || out.Override != circuit.ForcedOpen {
			t.Fatalf("%s: FORCED_OPEN not honoured: %+v", id, out)
		}
		r, err := e.store.ReadCircuit(ctx, id)
		if err != nil || !r.OverrideStored || r.Circuit.Override != circuit.ForcedOpen || r.Circuit.OverrideReason != "maintenance" {
			t.Fatalf("%s: after the first check: %+v, %v; want FORCED_OPEN in the circuit item", id, r, err)
		}
		if item := rawItem(t, e, id); item["override"] != nil {
			t.Errorf("%s: circuit item keeps its legacy override: %v", id, item)
		}
		// Attached code forges FORCED_CLOSED on the legacy attributes, an
		// old tool on the old item: the override attribute still decides.
		setAttrs(id, map[string]typesAV{"override": strAV("FORCED_CLOSED"), "overrideReason": strAV("forged")})
		setAttrs(id+"#override", map[string]typesAV{"override": strAV("FORCED_CLOSED")})
		out, err = u.Handle(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if out.EffectiveState != circuit.Open || out.Override != circuit.ForcedOpen {
			t.Errorf("%s: forged override won: %+v", id, out)
		}
	}
}

// TestUnreadableCircuitItemRewritten checks that a circuit item an
// attached function made undecodable (its role may write the item) is
// rewritten by the next check, through the conditional write, and logged;
// an operator's FORCED_OPEN keeps deciding throughout.
func TestUnreadableCircuitItemRewritten(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		override  bool
		wantState circuit.State
		wantEff   circuit.State
	}{
		{"healthy service", healthy, false, circuit.Closed, circuit.Closed},
		{"failing service", fail500, false, circuit.Closed, circuit.Closed},
		{"under FORCED_OPEN", healthy, true, circuit.HalfOpen, circuit.Open},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			svc := newService(t, 0)
			now := time.Now()
			u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: func() time.Time { return now }, Logger: e.logger}
			ctx := context.Background()
			if tt.override {
				if _, err := e.store.SetOverride(ctx, "a", circuit.ForcedOpen, "incident", time.Time{}, now); err != nil {
					t.Fatal(err)
				}
			}
			expr := "SET #s = :s, #v = :v"
			tbl := e.store.Table()
			if _, err := e.api.API.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &tbl, Key: map[string]typesAV{"id": strAV("a")},
				UpdateExpression: &expr, ExpressionAttributeNames: map[string]string{"#s": "state", "#v": "version"},
				ExpressionAttributeValues: map[string]typesAV{":s": strAV("BOGUS"), ":v": &types.AttributeValueMemberN{Value: "5"}}}); err != nil {
				t.Fatal(err)
			}
			in, _ := json.Marshal(Input{ID: "a", URL: svc.url(tt.mode), ConfirmInterval: "0s", ReadCopies: 1})
			out, err := u.Handle(ctx, in)
			if err != nil {
				t.Fatalf("check of an unreadable circuit: %v", err)
			}
			if out.State != tt.wantState || out.EffectiveState != tt.wantEff || out.Writes != 1 {
				t.Errorf("output = %+v; want state %s, effective %s, one write", out, tt.wantState, tt.wantEff)
			}
			c, _, err := e.store.Get(ctx, "a")
			if err != nil || c.State != tt.wantState || c.Version < 5 || c.Reason == store.UnreadableReason {
				t.Errorf("stored %+v, %v; want a readable %s circuit from version 5 on", c, err, tt.wantState)
			}
			lines := e.logs.Lines(t)
			var rewritten, checks int
			for _, l := range lines {
				switch {
				case l["msg"] == store.MsgItemRewritten && l["service"] == "a":
					rewritten++
				case l["msg"] == "check" && l["rewritten"] != nil:
					checks++
				}
			}
			if rewritten != 1 || checks != 1 {
				t.Errorf("%d rewrite lines, %d check lines naming the rewrite; want 1 each:\n%v", rewritten, checks, lines)
			}
		})
	}
}

// TestReasonHoldsNoErrorText checks that a connection error leaves only
// its fixed class in the circuit's reason, which attached functions and
// events can read, while the output keeps the detail.
func TestReasonHoldsNoErrorText(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(refused), FailureThreshold: 1, ReadCopies: 1})
	out, err := u.Handle(context.Background(), in)
	if err != nil || !out.Transitioned || out.Check.Outcome != healthcheck.Connection {
		t.Fatalf("check = %+v, %v", out, err)
	}
	if !strings.Contains(out.Check.Detail, "refused") {
		t.Errorf("output detail %q lost the error text", out.Check.Detail)
	}
	c, _, _ := e.store.Get(context.Background(), "a")
	if !strings.HasSuffix(c.Reason, "connection error") || strings.Contains(c.Reason, "127.0.0.1") || strings.Contains(c.Reason, "refused") {
		t.Errorf("circuit reason %q holds more than the fixed class", c.Reason)
	}
}

// TestConfirmationOpensInOneInvocation runs one invocation against a
// service failing in each way: the failed scheduled check is confirmed by
// FailureThreshold-1 more checks, ConfirmInterval apart, that open the
// circuit, each through its own conditional write.
func TestConfirmationOpensInOneInvocation(t *testing.T) {
	failures := []struct {
		mode    string
		outcome healthcheck.Outcome
	}{
		{fail500, healthcheck.Status},
		{hang, healthcheck.Timeout},
		{slow, healthcheck.Slow},
		{refused, healthcheck.Connection},
	}
	for _, f := range failures {
		t.Run(f.mode, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc := newService(t, 600*time.Millisecond)
			clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			u := fakeTimeUpdater(e, clk)
			in, _ := json.Marshal(Input{ID: "pay", URL: svc.url(f.mode), Timeout: "1s", SlowCallThreshold: "300ms", ReadCopies: 1})
			start := clk.Now()
			out, err := u.Handle(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if out.State != circuit.Open || !out.Transitioned || out.Transitions != 1 || out.From != circuit.Closed || out.Change != "transition" {
				t.Errorf("output %+v, want one CLOSED → OPEN", out)
			}
			if out.Checks != 3 || out.Confirmations != 2 || out.Check.Outcome != f.outcome {
				t.Errorf("%d checks (%d confirmations), last outcome %s; want 3 (2), %s", out.Checks, out.Confirmations, out.Check.Outcome, f.outcome)
			}
			if got := clk.Slept(); !reflect.DeepEqual(got, []time.Duration{DefaultConfirmInterval, DefaultConfirmInterval}) {
				t.Errorf("slept %v, want two default confirmation intervals", got)
			}
			if took := clk.Now().Sub(start); took != 2*DefaultConfirmInterval {
				t.Errorf("invocation took %s on the clock, want %s", took, 2*DefaultConfirmInterval)
			}
			// The table sees one more write and three more reads: the
			// first check of a circuit migrates its override.
			if r, w := e.api.Reads.Load(), e.api.Writes.Load(); r != 3+3 || w != 3+1 || out.Reads != 3 || out.Writes != 3 {
				t.Errorf("%d reads, %d writes (output %d, %d); want 3 and 3 (+3 reads and +1 write for the migration)", r, w, out.Reads, out.Writes)
			}
			if n := len(e.logs.WithMsg(t, "check")); n != 3 {
				t.Errorf("%d check lines logged, want 3", n)
			}
			lines := e.logs.WithMsg(t, store.MsgTransition)
			if len(lines) != 1 || !strings.HasPrefix(lines[0]["reason"].(string), "3 consecutive failed checks") {
				t.Errorf("transition lines %v", lines)
			}
		})
	}
}

// TestConfirmationStopsAtFirstSuccess runs invocations against services
// that flap or recover while a failure is being confirmed: none opens the
// circuit, and the first success ends the invocation.
func TestConfirmationStopsAtFirstSuccess(t *testing.T) {
	tests := []struct {
		name          string
		statuses      []int
		invocations   int
		checks        int // over all invocations
		reads, writes int64
		failures      int
	}{
		{"one failure then a success", []int{503, 200}, 1, 2, 2, 2, 0},
		{"recovers at the last confirmation", []int{503, 503, 200}, 1, 3, 3, 3, 0},
		{"flaps every check", []int{503, 200, 503, 200, 503, 200, 503, 200}, 4, 8, 8, 8, 0},
		{"healthy: one check, no write", []int{200}, 1, 1, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc := newScript(t, tt.statuses...)
			clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			u := fakeTimeUpdater(e, clk)
			in, _ := json.Marshal(Input{ID: "pay", URL: svc.srv.URL, ConfirmInterval: "2s", ReadCopies: 1})
			checks := 0
			for i := 0; i < tt.invocations; i++ {
				clk.Advance(time.Minute)
				out, err := u.Handle(context.Background(), in)
				if err != nil {
					t.Fatal(err)
				}
				if out.State != circuit.Closed || out.Transitioned || !out.Check.OK {
					t.Fatalf("invocation %d: %+v, want CLOSED after a last good check", i, out)
				}
				checks += out.Checks
			}
			if checks != tt.checks || svc.requests() != tt.checks {
				t.Errorf("%d checks reported, %d requests; want %d", checks, svc.requests(), tt.checks)
			}
			// +3 reads, +1 write: the first check of a circuit migrates
			// its override.
			if r, w := e.api.Reads.Load(), e.api.Writes.Load(); r != tt.reads+3 || w != tt.writes+1 {
				t.Errorf("%d reads, %d writes; want %d, %d (+3, +1 for the migration)", r, w, tt.reads, tt.writes)
			}
			for _, d := range clk.Slept() {
				if d != 2*time.Second {
					t.Errorf("slept %s between checks, want the 2s ConfirmInterval", d)
				}
			}
			c, _, err := e.store.Get(context.Background(), "pay")
			if err != nil || c.ConsecutiveFailures != tt.failures || c.Version != 0 {
				t.Errorf("stored %+v (%v), want CLOSED v0 with %d failures", c, err, tt.failures)
			}
		})
	}
}

// TestConfirmationOff checks that ConfirmInterval "0s" keeps one check per
// invocation, and that a failed check of a circuit that is not CLOSED is
// never confirmed.
func TestConfirmationOff(t *testing.T) {
	e := newEnv(t)
	svc := newScript(t, 503)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	u := fakeTimeUpdater(e, clk)
	in, _ := json.Marshal(Input{ID: "pay", URL: svc.srv.URL, ConfirmInterval: "0s", ReadCopies: 1})
	for i := 1; i <= 3; i++ {
		clk.Advance(time.Minute)
		out, err := u.Handle(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if out.Checks != 1 || out.Transitioned != (i == 3) {
			t.Fatalf("invocation %d: %+v, want one check, opening at the third", i, out)
		}
	}
	// OPEN: a failed trial after the cool-down stays OPEN, unconfirmed.
	clk.Advance(time.Minute)
	in, _ = json.Marshal(Input{ID: "pay", URL: svc.srv.URL, ReadCopies: 1})
	out, err := u.Handle(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Checks != 1 || out.State != circuit.Open || out.Change != "counters" {
		t.Errorf("failed trial: %+v, want one check, still OPEN", out)
	}
	if len(clk.Slept()) != 0 {
		t.Errorf("slept %v without confirmation", clk.Slept())
	}
}

// TestCheckInterval runs one invocation with CheckInterval and counts its
// checks: every interval from the start while a check and its write fit in
// RunWindow, none while an OPEN circuit cools down, and no write while
// nothing changes.
func TestCheckInterval(t *testing.T) {
	tests := []struct {
		name          string
		statuses      []int
		interval      string
		timeout       string
		open          bool // the circuit is OPEN, cooling down for 10 minutes
		checks        int
		states        []circuit.State // after the invocation
		reads, writes int64
		lastCheckAt   time.Duration // clock time of the last check's start
	}{
		// Ticks 0,10..50s: 50s+4s+1s = 55s is the last that fits.
		{"healthy every 10s", []int{200}, "10s", "4s", false, 6, []circuit.State{circuit.Closed}, 6, 0, 50 * time.Second},
		// 30s+4s+1s fits, 40s+5s... fits too: 40+5=45 ≤ 55; 50+5 = 55 fits.
		{"healthy every 30s", []int{200}, "30s", "4s", false, 2, []circuit.State{circuit.Closed}, 2, 0, 30 * time.Second},
		// A 10s Timeout leaves out the 50s tick (50+10+1 > 55).
		{"long timeout ends early", []int{200}, "10s", "10s", false, 5, []circuit.State{circuit.Closed}, 5, 0, 40 * time.Second},
		// Fails at 0s, confirmed at 5s and 10s: OPEN until 40s; the 40s
		// tick is the trial, which fails and pushes the retry past the
		// window.
		{"hard failure", []int{503}, "10s", "4s", false, 4, []circuit.State{circuit.Open}, 4, 4, 40 * time.Second},
		// Fails at 0s, recovers at the 5s confirmation, healthy after.
		{"blip", []int{503, 200}, "10s", "4s", false, 7, []circuit.State{circuit.Closed}, 7, 2, 50 * time.Second},
		// OPEN for 10 more minutes: the first check costs a read and no
		// write, and no tick runs before the cool-down ends.
		{"cooling down", []int{200}, "10s", "4s", true, 1, []circuit.State{circuit.Open}, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			svc := newScript(t, tt.statuses...)
			clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			u := fakeTimeUpdater(e, clk)
			ctx := context.Background()
			if tt.open {
				opening := circuit.Settings{FailureThreshold: 1, OpenCooldown: 10 * time.Minute}
				if _, err := e.store.Apply(ctx, "pay", func(cur circuit.Circuit) circuit.Decision {
					return circuit.Decide(cur, opening, circuit.CheckResult{}, clk.Now())
				}); err != nil {
					t.Fatal(err)
				}
				e.api.Reads.Store(0)
				e.api.Writes.Store(0)
			}
			in, _ := json.Marshal(Input{ID: "pay", URL: svc.srv.URL, CheckInterval: tt.interval, Timeout: tt.timeout, ReadCopies: 1})
			start := clk.Now()
			out, err := u.Handle(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if out.Checks != tt.checks || svc.requests() != tt.checks || !slices.Contains(tt.states, out.State) {
				t.Errorf("%d checks (%d requests), state %s; want %d, %v (%+v)", out.Checks, svc.requests(), out.State, tt.checks, tt.states, out)
			}
			// +3 reads, +1 write in the table: the first check of a
			// circuit migrates its override.
			if r, w := e.api.Reads.Load(), e.api.Writes.Load(); r != tt.reads+3 || w != tt.writes+1 || int64(out.Reads) != tt.reads || int64(out.Writes) != tt.writes {
				t.Errorf("%d reads, %d writes (output %d, %d); want %d, %d (+3, +1 for the migration)", r, w, out.Reads, out.Writes, tt.reads, tt.writes)
			}
			if at := clk.Now().Sub(start); at != tt.lastCheckAt {
				t.Errorf("last check started at %s, want %s (slept %v)", at, tt.lastCheckAt, clk.Slept())
			}
			if end := clk.Now().Sub(start) + mustDuration(t, tt.timeout) + WriteAllowance; end > RunWindow {
				t.Errorf("last check may end at %s, after the %s window", end, RunWindow)
			}
		})
	}
}

// slowProber is the real checker on a virtual clock where every check
// takes latency, and records when each check started.
type slowProber struct {
	Prober
	clk     *clock
	latency time.Duration
	starts  []time.Time
}

func (p *slowProber) Check(ctx context.Context, probe healthcheck.Probe) healthcheck.Result {
	p.starts = append(p.starts, p.clk.Now())
	res := p.Prober.Check(ctx, probe)
	p.clk.Advance(p.latency)
	return res
}

// TestCheckIntervalTrialWhenTheCoolDownEnds: checks take time, so the
// cool-down of a circuit opened by one ends between ticks. The trial runs
// when it ends, not an interval later, and the ticks after it keep their
// schedule.
func TestCheckIntervalTrialWhenTheCoolDownEnds(t *testing.T) {
	e := newEnv(t)
	svc := newScript(t, 503)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	u := fakeTimeUpdater(e, clk)
	slow := &slowProber{Prober: u.Prober, clk: clk, latency: 200 * time.Millisecond}
	u.Prober = slow
	start := clk.Now()
	in, _ := json.Marshal(Input{ID: "pay", URL: svc.srv.URL, CheckInterval: "10s", Timeout: "4s", ReadCopies: 1})
	out, err := u.Handle(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	if out.State != circuit.Open || len(slow.starts) != 4 {
		t.Fatalf("%d checks, state %s; want 4 (check, 2 confirmations, trial), OPEN (%+v)", len(slow.starts), out.State, out)
	}
	// Opened by the third check, which ended at 10.6s: cool-down 30s.
	trial := slow.starts[3].Sub(start)
	if want := 10*time.Second + 600*time.Millisecond + circuit.DefaultOpenCooldown; trial != want {
		t.Errorf("trial started at %s, want %s, when the cool-down ended (starts %v)", trial, want, slow.starts)
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCheckDeadlineFollowsTheFunction checks that the first check is cut
// to the function's deadline less WriteAllowance, so that its result is
// written before the deadline, and that no confirmation check starts
// unless it and its write fit.
func TestCheckDeadlineFollowsTheFunction(t *testing.T) {
	t.Run("hanging service, short function timeout", func(t *testing.T) {
		e := newEnv(t)
		svc := newService(t, 0)
		u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
		const budget = 1600 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		start := time.Now()
		in, _ := json.Marshal(Input{ID: "a", URL: svc.url(hang), Timeout: "4s", ReadCopies: 1})
		out, err := u.Handle(ctx, in)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Handle = %v after %s, want the cut check written", err, took)
		}
		if out.Check.Outcome != healthcheck.Timeout || !strings.Contains(out.Check.Detail, "cut to fit the function's deadline") || out.Checks != 1 || out.Writes != 1 {
			t.Errorf("output %+v, want one written timeout that says it was cut", out)
		}
		if took >= budget {
			t.Errorf("invocation took %s, not within the %s deadline", took, budget)
		}
		if c, _, _ := e.store.Get(context.Background(), "a"); c.ConsecutiveFailures != 1 {
			t.Errorf("stored %+v, want the failure counted", c)
		}
	})
	t.Run("confirmations stop at the deadline", func(t *testing.T) {
		e := newEnv(t)
		svc := newScript(t, 503)
		clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		u := fakeTimeUpdater(e, clk)
		// 9.5s: the 5s confirmation ends by 7s, the 10s one would end at 12s.
		ctx, cancel := context.WithTimeout(context.Background(), 9500*time.Millisecond)
		defer cancel()
		in, _ := json.Marshal(Input{ID: "a", URL: svc.srv.URL, Timeout: "1s", ReadCopies: 1})
		out, err := u.Handle(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if out.Checks != 2 || out.Confirmations != 1 || out.State != circuit.Closed || svc.requests() != 2 {
			t.Errorf("output %+v (%d requests), want 2 checks, still CLOSED", out, svc.requests())
		}
	})
	t.Run("no time for a check", func(t *testing.T) {
		e := newEnv(t)
		svc := newScript(t, 503)
		u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
		ctx, cancel := context.WithTimeout(context.Background(), WriteAllowance+MinCheckBudget/2)
		defer cancel()
		in, _ := json.Marshal(Input{ID: "a", URL: svc.srv.URL, ReadCopies: 1})
		if _, err := u.Handle(ctx, in); err == nil || !strings.Contains(err.Error(), "not started") {
			t.Errorf("Handle = %v, want a check not started", err)
		}
		if r, w := e.api.Reads.Load(), e.api.Writes.Load(); r != 0 || w != 0 || svc.requests() != 0 {
			t.Errorf("%d reads, %d writes, %d requests; want none", r, w, svc.requests())
		}
	})
}

// TestTimeToOpenWithChecksAlone measures, on a virtual clock, how long a
// service answering 503 from a given moment takes to open its circuit with
// health checks alone: scheduled invocations one minute apart, the
// failure starting at every whole second of a minute, each run through
// the real updater, HTTP checks and dynalite. It prints the worst case and
// the median per setting, and asserts only the bounds that follow from the
// design (one scheduled run and the confirmations with the defaults).
func TestTimeToOpenWithChecksAlone(t *testing.T) {
	e := newEnv(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var failAt time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		failing := !clk.Now().Before(failAt)
		mu.Unlock()
		if failing {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	u := fakeTimeUpdater(e, clk)
	u.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))

	tests := []struct {
		name          string
		in            Input
		worstAtMost   time.Duration
		typicalAtMost time.Duration
	}{
		{"rate(1 minute), no confirmation (ConfirmInterval 0s)", Input{ConfirmInterval: "0s"}, 0, 0},
		{"rate(1 minute), defaults", Input{}, time.Minute + 2*DefaultConfirmInterval, 45 * time.Second},
		{"rate(1 minute), CheckInterval 10s", Input{CheckInterval: "10s"}, 30 * time.Second, 20 * time.Second},
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| Setting | Worst case | Median | Runs to OPEN (median) |\n|---|---|---|---|\n")
	for i, tt := range tests {
		var took []time.Duration
		var runs []int
		for offset := time.Second; offset <= time.Minute; offset += time.Second {
			id := fmt.Sprintf("s%d-%d", i, offset/time.Second)
			// Runs at start + k minutes; the service fails from start + offset.
			start := clk.Now().Add(time.Hour).Truncate(time.Hour)
			mu.Lock()
			failAt = start.Add(offset)
			mu.Unlock()
			in := tt.in
			in.ID, in.URL = id, srv.URL
			data, _ := json.Marshal(in)
			opened := false
			for k := 0; k < 10 && !opened; k++ {
				clk.Advance(start.Add(time.Duration(k) * time.Minute).Sub(clk.Now()))
				out, err := u.Handle(context.Background(), data)
				if err != nil {
					t.Fatal(err)
				}
				if out.State == circuit.Open {
					c, _, err := e.store.Get(context.Background(), id)
					if err != nil {
						t.Fatal(err)
					}
					took = append(took, c.UpdatedAt.Sub(failAt))
					runs = append(runs, k)
					opened = true
				}
			}
			if !opened {
				t.Fatalf("%s: failure from +%s never opened the circuit", tt.name, offset)
			}
		}
		slices.Sort(took)
		slices.Sort(runs)
		worst, median := took[len(took)-1], took[len(took)/2]
		fmt.Fprintf(&table, "| %s | %s | %s | %d |\n", tt.name, worst, median, runs[len(runs)/2])
		if tt.worstAtMost > 0 && (worst > tt.worstAtMost || median > tt.typicalAtMost) {
			t.Errorf("%s: worst %s, median %s; want at most %s and %s", tt.name, worst, median, tt.worstAtMost, tt.typicalAtMost)
		}
	}
	t.Log(table.String())
}

// TestReadCopiesFollowTheInput checks that the updater's checks create the
// circuit's read copies (ReadCopies, default 4), repair one that fell
// behind, and retire those past a smaller ReadCopies.
func TestReadCopiesFollowTheInput(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	ctx := context.Background()
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(healthy)})
	if _, err := u.Handle(ctx, in); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < store.DefaultReadCopies; i++ {
		if item := rawItem(t, e, store.CopyKey("a", i)); item == nil {
			t.Errorf("copy %d missing after the first check", i)
		}
	}
	if n := len(e.logs.WithMsg(t, store.MsgCopyRepaired)); n != store.DefaultReadCopies-1 {
		t.Errorf("%d copy log lines, want %d", n, store.DefaultReadCopies-1)
	}
	in, _ = json.Marshal(Input{ID: "a", URL: svc.url(healthy), ReadCopies: 2})
	if _, err := u.Handle(ctx, in); err != nil {
		t.Fatal(err)
	}
	r, err := e.store.ReadCircuit(ctx, "a")
	if err != nil || r.ReadCopies != 2 {
		t.Fatalf("after ReadCopies 2: %+v, %v", r, err)
	}
	// Copy 1 learns the new K; copies 2 and 3 are retired.
	if n := len(e.logs.WithMsg(t, store.MsgCopyRepaired)); n != store.DefaultReadCopies-1+3 {
		t.Errorf("%d copy log lines, want 3 more", n)
	}
}
