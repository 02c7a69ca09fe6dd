package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

func TestGetAndGetMany(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	s := New(db, srv.NewTable(t))
	ctx := context.Background()

	c, found, err := s.Get(ctx, "missing")
	if err != nil || found || c.ID != "missing" || c.State != circuit.Closed || c.Version != 0 {
		t.Fatalf("Get(missing) = %+v, %v, %v; want new CLOSED circuit, not found", c, found, err)
	}

	updated := time.Unix(1_700_000_000, 0).UTC()
	want := circuit.Circuit{ID: "orders", State: circuit.Open, Version: 3, UpdatedAt: updated, Reason: "3 failed checks", PreviousState: circuit.Closed}
	item, err := Encode(want)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := item["overrideUntil"]; ok {
		t.Errorf("Encode wrote overrideUntil for a zero time: %v", item["overrideUntil"])
	}
	tbl := s.Table()
	if _, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &tbl, Item: item}); err != nil {
		t.Fatal(err)
	}
	got, found, err := s.Get(ctx, "orders")
	if err != nil || !found {
		t.Fatalf("Get(orders) = %v, %v", found, err)
	}
	if got.State != want.State || got.Version != want.Version || !got.UpdatedAt.Equal(updated) || got.Reason != want.Reason {
		t.Errorf("Get(orders) = %+v, want %+v", got, want)
	}

	// More than one BatchGetItem page of keys, with duplicates.
	var ids []string
	for i := 0; i < 150; i++ {
		ids = append(ids, fmt.Sprintf("svc-%d", i))
	}
	ids = append(ids, "orders", "orders")
	many, err := s.GetMany(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(many) != 1 || many["orders"].Version != 3 {
		t.Errorf("GetMany = %v, want only orders at version 3", many)
	}
}

// One unreadable item fails only its own circuit: GetMany returns every
// other circuit and names the unreadable one in an ItemErrors.
func TestGetManySkipsUnreadableItems(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := New(srv.Client(), table)
	ctx := context.Background()
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, id := range ids {
		if err := st.Write(ctx, circuit.New(id), circuit.Circuit{ID: id, State: circuit.Open, Version: 1}, circuit.Transition); err != nil {
			t.Fatal(err)
		}
	}
	putUnreadableCircuit(t, srv.Client(), table, "bad")

	got, err := st.GetMany(ctx, append(append([]string{}, ids...), "bad", "never-written"))
	var ie ItemErrors
	if !errors.As(err, &ie) || len(ie) != 1 || ie["bad"] == nil {
		t.Fatalf("GetMany error = %v, want ItemErrors naming only %q", err, "bad")
	}
	if len(got) != len(ids) {
		t.Errorf("GetMany returned %d circuits, want the %d readable ones", len(got), len(ids))
	}
	for _, id := range ids {
		if got[id].State != circuit.Open {
			t.Errorf("circuit %q = %+v, want OPEN", id, got[id])
		}
	}
	if _, ok := got["never-written"]; ok {
		t.Error("a circuit never written is in the result")
	}
}

// putUnreadableCircuit writes a circuit item with a state this version
// does not know, as a hand edit or a newer writer could.
func putUnreadableCircuit(t *testing.T, db *dynamodb.Client, table, id string) {
	t.Helper()
	_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"id":      &types.AttributeValueMemberS{Value: id},
		"state":   &types.AttributeValueMemberS{Value: "DISABLED"},
		"version": &types.AttributeValueMemberN{Value: "1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// throttlingAPI answers the first rounds of BatchGetItem with every key
// unprocessed, as DynamoDB does under throttling, and records when each
// call came.
type throttlingAPI struct {
	API
	rounds int // calls to leave unprocessed; negative: always

	mu    sync.Mutex
	calls []time.Time
}

func (a *throttlingAPI) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	a.mu.Lock()
	a.calls = append(a.calls, time.Now())
	n := len(a.calls)
	a.mu.Unlock()
	if a.rounds < 0 || n <= a.rounds {
		return &dynamodb.BatchGetItemOutput{UnprocessedKeys: in.RequestItems}, nil
	}
	return a.API.BatchGetItem(ctx, in, opts...)
}

func TestBatchGetBacksOffOnUnprocessedKeys(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	seed := New(srv.Client(), table)
	var ids []string
	for i := range 3 {
		c := circuit.Circuit{ID: fmt.Sprintf("svc%d", i), State: circuit.Open, Version: 1}
		if err := seed.Write(ctx, circuit.New(c.ID), c, circuit.Transition); err != nil {
			t.Fatal(err)
		}
		if _, err := seed.MigrateOverride(ctx, c.ID, t0); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}

	t.Run("succeeds once DynamoDB processes the keys", func(t *testing.T) {
		api := &throttlingAPI{API: srv.Client(), rounds: 3}
		got, err := New(api, table).GetMany(ctx, ids)
		if err != nil || len(got) != 3 {
			t.Fatalf("GetMany = %d circuits, %v; want 3", len(got), err)
		}
		if len(api.calls) != 4 {
			t.Fatalf("%d BatchGetItem calls, want 4", len(api.calls))
		}
		for i := 1; i < len(api.calls); i++ {
			if gap := api.calls[i].Sub(api.calls[i-1]); gap < 100*time.Microsecond {
				t.Errorf("round %d came %s after the previous one, want a back-off", i+1, gap)
			}
		}
	})

	t.Run("gives up when the context ends", func(t *testing.T) {
		api := &throttlingAPI{API: srv.Client(), rounds: -1}
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := New(api, table).GetMany(ctx, ids)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("GetMany under endless throttling: %v, want the deadline", err)
		}
		// Without a back-off this loop would call thousands of times;
		// with it, a round costs a few to 100 ms.
		if n := len(api.calls); n > 40 {
			t.Errorf("%d BatchGetItem calls in 300 ms, want a back-off between rounds", n)
		}
	})
}

// overrideLaggingAPI processes circuit keys but leaves override keys
// unprocessed, as a throttled BatchGetItem may.
type overrideLaggingAPI struct{ API }

func (a overrideLaggingAPI) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out := &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{}, UnprocessedKeys: map[string]types.KeysAndAttributes{}}
	for table, ka := range in.RequestItems {
		var now, later []map[string]types.AttributeValue
		for _, k := range ka.Keys {
			if strings.HasSuffix(k[KeyAttribute].(*types.AttributeValueMemberS).Value, OverrideSuffix) {
				later = append(later, k)
			} else {
				now = append(now, k)
			}
		}
		if len(now) > 0 {
			res, err := a.API.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{table: {Keys: now, ConsistentRead: ka.ConsistentRead}}}, opts...)
			if err != nil {
				return nil, err
			}
			out.Responses[table] = res.Responses[table]
		}
		if len(later) > 0 {
			out.UnprocessedKeys[table] = types.KeysAndAttributes{Keys: later, ConsistentRead: ka.ConsistentRead}
		}
	}
	return out, nil
}

// TestPartialReadNeverDropsAnOverride checks that a circuit whose override
// item could not be read is not served without it.
func TestPartialReadNeverDropsAnOverride(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	ctx := context.Background()
	seed := New(srv.Client(), table)
	if err := seed.Write(ctx, circuit.New("svc"), circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 1}, circuit.Transition); err != nil {
		t.Fatal(err)
	}
	// Set by the previous version, not migrated yet.
	putOverrideItem(t, seed, "svc", circuit.ForcedOpen, "bad deploy", time.Now())
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	got, err := New(overrideLaggingAPI{srv.Client()}, table).GetMany(ctx, []string{"svc"})
	if err == nil {
		t.Fatal("GetMany succeeded with the override key unread")
	}
	if c, ok := got["svc"]; ok {
		t.Errorf("GetMany served %+v without its override item", c)
	}
	if _, _, err := New(overrideLaggingAPI{srv.Client()}, table).Get(ctx, "svc"); err == nil {
		t.Error("Get succeeded with the override key unread")
	}
}

// TestUnreadableCircuitWithOverride checks that a circuit item an attached
// function made undecodable does not void an operator override: while one
// is in force it decides, in Get and GetMany as for a readable item; only
// without one does the circuit fail in an ItemErrors. ReadCircuit and
// ReadMany return the circuit with Unreadable set.
func TestUnreadableCircuitWithOverride(t *testing.T) {
	tests := []struct {
		name     string
		override circuit.Override
		until    time.Duration // from now; 0: never expires
		attrs    map[string]types.AttributeValue
		// wantServed: Get and GetMany serve the circuit in wantState.
		wantServed bool
		wantState  circuit.State
	}{
		{"unknown state, FORCED_OPEN", circuit.ForcedOpen, 0, map[string]types.AttributeValue{"state": strAV("BOGUS")}, true, circuit.Open},
		{"unknown state, FORCED_CLOSED", circuit.ForcedClosed, time.Hour, map[string]types.AttributeValue{"state": strAV("BOGUS")}, true, circuit.Closed},
		{"version of the wrong type, FORCED_OPEN", circuit.ForcedOpen, 0, map[string]types.AttributeValue{"version": strAV("many")}, true, circuit.HalfOpen},
		{"state of the wrong type, FORCED_OPEN", circuit.ForcedOpen, 0, map[string]types.AttributeValue{"state": num(7)}, true, circuit.Open},
		{"unknown state, override expired", circuit.ForcedOpen, -time.Minute, map[string]types.AttributeValue{"state": strAV("BOGUS")}, false, ""},
		{"unknown state, no override", "", 0, map[string]types.AttributeValue{"state": strAV("BOGUS")}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, logs := newTestStore(t)
			ctx := context.Background()
			now := time.Now()
			if err := s.Write(ctx, circuit.New("svc"), circuit.Circuit{ID: "svc", State: circuit.HalfOpen, Version: 1, ConsecutiveSuccesses: 1}, circuit.Transition); err != nil {
				t.Fatal(err)
			}
			if err := s.Write(ctx, circuit.New("ok"), circuit.Circuit{ID: "ok", State: circuit.Open, Version: 1}, circuit.Transition); err != nil {
				t.Fatal(err)
			}
			if tt.override != "" {
				at := now.Add(-time.Hour)
				var until time.Time
				if tt.until != 0 {
					until = now.Add(tt.until)
				}
				if _, err := s.WithClock(func() time.Time { return at }).SetOverride(ctx, "svc", tt.override, "operator", until, at); err != nil {
					t.Fatal(err)
				}
			}
			setAttrs(t, s, "svc", tt.attrs)

			got, err := s.GetMany(ctx, []string{"svc", "ok", "never-written"})
			var ie ItemErrors
			if errors.As(err, &ie) != !tt.wantServed || (!tt.wantServed && (len(ie) != 1 || ie["svc"] == nil)) || (tt.wantServed && err != nil) {
				t.Fatalf("GetMany error = %v; want ItemErrors naming svc: %v", err, !tt.wantServed)
			}
			if got["ok"].State != circuit.Open {
				t.Errorf("the readable circuit = %+v", got["ok"])
			}
			c, served := got["svc"]
			one, _, gerr := s.Get(ctx, "svc")
			if served != tt.wantServed || (gerr == nil) != tt.wantServed {
				t.Fatalf("GetMany served svc: %v, Get error %v; want served %v", served, gerr, tt.wantServed)
			}
			if tt.wantServed {
				for _, c := range []circuit.Circuit{c, one} {
					if c.ActiveOverride(now) != tt.override || c.EffectiveState(now) != effective(tt.override) || c.State != tt.wantState || c.Reason != UnreadableReason {
						t.Errorf("served %+v; want %s in force, state %s, reason %q", c, tt.override, tt.wantState, UnreadableReason)
					}
				}
				if n := len(withMsg(logs.Lines(t), MsgUnreadableOverridden)); n != 2 {
					t.Errorf("%d %q lines, want one per read", n, MsgUnreadableOverridden)
				}
			}

			r, err := s.ReadCircuit(ctx, "svc")
			if err != nil || r.Unreadable == nil || !r.Found || r.OverrideStored != (tt.override != "") {
				t.Errorf("ReadCircuit = %+v, %v; want the circuit marked unreadable", r, err)
			}
			many, err := s.ReadMany(ctx, []string{"svc", "ok"})
			if err != nil || many["svc"].Unreadable == nil || many["ok"].Unreadable != nil || many["ok"].Circuit.State != circuit.Open {
				t.Errorf("ReadMany = %+v, %v", many, err)
			}
		})
	}
}

func effective(o circuit.Override) circuit.State {
	if o == circuit.ForcedOpen {
		return circuit.Open
	}
	return circuit.Closed
}

// consistencyAPI records whether each BatchGetItem asked for a strongly
// consistent read.
type consistencyAPI struct {
	API
	mu     sync.Mutex
	strong []bool
}

func (c *consistencyAPI) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	c.mu.Lock()
	for _, ka := range in.RequestItems {
		c.strong = append(c.strong, aws.ToBool(ka.ConsistentRead))
	}
	c.mu.Unlock()
	return c.API.BatchGetItem(ctx, in, opts...)
}

func (c *consistencyAPI) take() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.strong
	c.strong = nil
	return s
}

// With WithEventualReads, Get and GetMany read eventually consistent, and
// every read that decides a write stays strongly consistent. Window reads
// (GetBuckets) are always eventually consistent: the trip they may lead
// to is decided again by Apply's strongly consistent read of the circuit.
func TestEventualReadsOnlyForTheCache(t *testing.T) {
	srv := dynalite.Start(t)
	api := &consistencyAPI{API: srv.Client()}
	st := New(api, srv.NewTable(t)).WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	ev := st.WithEventualReads()
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		name   string
		read   func() error
		strong bool
	}{
		{"Get", func() error { _, _, err := ev.Get(ctx, "a"); return err }, false},
		{"GetMany", func() error { _, err := ev.GetMany(ctx, []string{"a", "b"}); return err }, false},
		{"Get without it", func() error { _, _, err := st.Get(ctx, "a"); return err }, true},
		{"ReadCircuit", func() error { _, err := ev.ReadCircuit(ctx, "a"); return err }, true},
		{"GetBuckets", func() error { _, err := ev.GetBuckets(ctx, "a", []time.Time{now}); return err }, false},
		{"GetBuckets without it", func() error { _, err := st.GetBuckets(ctx, "a", []time.Time{now}); return err }, false},
		{"Apply", func() error {
			_, err := ev.Apply(ctx, "a", func(c circuit.Circuit) circuit.Decision { return circuit.Decision{Change: circuit.NoChange, Next: c} })
			return err
		}, true},
	}
	for _, tt := range tests {
		api.take()
		if err := tt.read(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := api.take()
		if len(got) == 0 {
			t.Fatalf("%s: no BatchGetItem", tt.name)
		}
		for _, strong := range got {
			if strong != tt.strong {
				t.Errorf("%s: ConsistentRead %v, want %v", tt.name, strong, tt.strong)
			}
		}
	}
}
