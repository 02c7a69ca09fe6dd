package updater

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
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
				in, _ := json.Marshal(Input{ID: "mock-api", URL: svc.url(mode), Timeout: "1s", SlowCallThreshold: "300ms"})
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
				if i == 0 {
					wantWrites++ // the first check creates the override item
				}
				if reads != 1 || writes != wantWrites {
					t.Errorf("step %d %s: %d reads, %d writes; want 1, %d", i, st.name, reads, writes, wantWrites)
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

// TestInterruptedCheckWritesNothing checks that a check cut short by the
// function's own deadline is not counted as a failure.
func TestInterruptedCheckWritesNothing(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(hang), Timeout: "2s"})
	if _, err := u.Handle(ctx, in); err == nil {
		t.Fatal("interrupted check returned no error")
	}
	if w := e.api.Writes.Load(); w != 0 {
		t.Errorf("interrupted check caused %d writes", w)
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
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(fail500), FailureThreshold: 1})
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
	in, _ = json.Marshal(Input{ID: "a", URL: svc.url(fail500), FailureThreshold: 1})
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

// TestOverrideItemWinsAndLegacyMigrates checks the updater against a table
// written by earlier versions: a legacy override on the circuit item is
// honoured, then moved to the override item by the first check, after
// which override attributes written on the circuit item (as an attached
// function could) are ignored.
func TestOverrideItemWinsAndLegacyMigrates(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	now := time.Now()
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: func() time.Time { return now }, Logger: e.logger}
	ctx := context.Background()
	setAttrs := func(attrs map[string]typesAV) {
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
		if _, err := e.api.API.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: &tbl, Key: map[string]typesAV{"id": strAV("a")}, UpdateExpression: &expr, ExpressionAttributeNames: names, ExpressionAttributeValues: values}); err != nil {
			t.Fatal(err)
		}
	}
	// A table written by earlier versions: FORCED_OPEN on the circuit item.
	setAttrs(map[string]typesAV{"state": strAV("CLOSED"), "version": &types.AttributeValueMemberN{Value: "0"}, "override": strAV("FORCED_OPEN"), "overrideReason": strAV("maintenance")})
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(healthy)})
	out, err := u.Handle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.EffectiveState != circuit.Open || out.Override != circuit.ForcedOpen {
		t.Fatalf("legacy FORCED_OPEN not honoured: %+v", out)
	}
	value := func(item map[string]any, attr string) any {
		if m, ok := item[attr].(map[string]any); ok {
			return m["Value"]
		}
		return nil
	}
	if item := rawItem(t, e, "a#override"); value(item, "override") != "FORCED_OPEN" || value(item, "overrideReason") != "maintenance" {
		t.Fatalf("override item after the first check = %v", item)
	}
	if item := rawItem(t, e, "a"); item["override"] != nil {
		t.Errorf("circuit item keeps its legacy override: %v", item)
	}
	// Attached code removes nothing and forges FORCED_CLOSED on the circuit
	// item: the override item still decides.
	setAttrs(map[string]typesAV{"override": strAV("FORCED_CLOSED"), "overrideReason": strAV("forged")})
	out, err = u.Handle(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.EffectiveState != circuit.Open || out.Override != circuit.ForcedOpen {
		t.Errorf("forged in-item override won: %+v", out)
	}
}

// TestReasonHoldsNoErrorText checks that a connection error leaves only
// its fixed class in the circuit's reason, which attached functions and
// events can read, while the output keeps the detail.
func TestReasonHoldsNoErrorText(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Logger: e.logger}
	in, _ := json.Marshal(Input{ID: "a", URL: svc.url(refused), FailureThreshold: 1})
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
