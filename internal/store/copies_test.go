package store

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbfault"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// withCopies returns a store over a new table whose circuit "svc" has k
// read copies, as the updater's first check leaves it.
func withCopies(t *testing.T, k int) (*Store, *countingAPI, *logBuffer) {
	t.Helper()
	s, api, logs := newTestStore(t)
	ctx := context.Background()
	if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
		t.Fatal(err)
	}
	sync, err := s.SyncCopies(ctx, "svc", k, 1)
	if err != nil || len(sync.Repaired) != k-1 {
		t.Fatalf("SyncCopies = %+v, %v; want %d copies created", sync, err, k-1)
	}
	return s, api, logs
}

// assertCopiesEqual checks that every read copy of "svc" holds what its
// circuit item holds: the state machine and the override.
func assertCopiesEqual(t *testing.T, s *Store, k int, step string) {
	t.Helper()
	primary := rawItem(t, s, "svc")
	want, err := Decode(primary)
	if err != nil {
		t.Fatalf("%s: circuit item: %v", step, err)
	}
	wantRev := numAttr(primary, StateRevAttribute)
	for i := 1; i < k; i++ {
		item := rawItem(t, s, CopyKey("svc", i))
		got, err := Decode(item)
		if err != nil || !sameState(got, want) || got.Override != want.Override || got.OverrideReason != want.OverrideReason || !got.OverrideUntil.Equal(want.OverrideUntil) {
			t.Errorf("%s: copy %d = %+v, %v; want %+v", step, i, got, err, want)
		}
		if numAttr(item, StateRevAttribute) != wantRev || readCopies(item) != k {
			t.Errorf("%s: copy %d at state revision %d with K %d; want %d and %d", step, i, numAttr(item, StateRevAttribute), readCopies(item), wantRev, k)
		}
	}
}

func TestCopiesConvergeAfterEachWrite(t *testing.T) {
	s, _, _ := withCopies(t, 3)
	ctx := context.Background()
	assertCopiesEqual(t, s, 3, "created")
	settings := circuit.Settings{FailureThreshold: 2}
	fail := func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, settings, circuit.Failure("status 500"), t0)
	}
	steps := []struct {
		name string
		do   func() error
	}{
		{"counter update", func() error { _, err := s.Apply(ctx, "svc", fail); return err }},
		{"transition", func() error { _, err := s.Apply(ctx, "svc", fail); return err }},
		{"override set", func() error {
			_, err := s.SetOverride(ctx, "svc", circuit.ForcedClosed, "false alarm", t0.Add(time.Hour), t0)
			return err
		}},
		{"override cleared", func() error { _, _, err := s.ClearOverride(ctx, "svc", t0); return err }},
		{"unreadable item rewritten", func() error {
			setAttrs(t, s, "svc", map[string]typesAV{"state": strAV("BOGUS")})
			_, err := s.Apply(ctx, "svc", fail)
			return err
		}},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		assertCopiesEqual(t, s, 3, st.name)
	}
	if c, _, _ := s.Get(ctx, "svc"); c.Version != 1 || c.ConsecutiveFailures != 1 {
		t.Errorf("after the steps the circuit is %+v, want version 1 and the rewrite's failure", c)
	}
}

// TestLateCopyWriteRefused checks that a copy write carrying an older
// revision, of the state or of the override, changes nothing.
func TestLateCopyWriteRefused(t *testing.T) {
	s, _, _ := withCopies(t, 2)
	ctx := context.Background()
	old, _, _ := s.Get(ctx, "svc")
	oldRev := numAttr(rawItem(t, s, "svc"), StateRevAttribute)
	oldOverride, _, _ := DecodeOverrideAttribute(rawItem(t, s, "svc"))
	if _, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("x"), t0)
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetOverride(ctx, "svc", circuit.ForcedOpen, "incident", time.Time{}, t0); err != nil {
		t.Fatal(err)
	}
	// The writes of the earlier revisions arrive now.
	s.copyStateWrites(ctx, old, oldRev, 2)
	v, err := oldOverride.encode()
	if err != nil {
		t.Fatal(err)
	}
	s.copyOverrideWrites(ctx, "svc", v, oldOverride.Rev, 2)
	assertCopiesEqual(t, s, 2, "late writes")
	if c, err := Decode(rawItem(t, s, CopyKey("svc", 1))); err != nil || c.State != circuit.Open || c.Override != circuit.ForcedOpen {
		t.Errorf("copy after late writes = %+v, %v; want OPEN under FORCED_OPEN", c, err)
	}
	// A copy write never creates a copy.
	s.copyStateWrites(ctx, old, 99, 4)
	if item := rawItem(t, s, CopyKey("svc", 3)); item != nil {
		t.Errorf("a copy write created copy 3: %v", item)
	}
}

// TestReaderUsesItsCopy checks the eventually consistent reader: the
// circuit item first, then its own copy; an override set by an operator is
// seen through the copy at the next read; a missing copy is read as the
// circuit item, and a copy past K sends the reader back to the circuit
// item, which tells it the new K.
func TestReaderUsesItsCopy(t *testing.T) {
	s, api, _ := withCopies(t, 3)
	ctx := context.Background()
	reader := s.WithEventualReads().WithReadCopy(2) // copy 2 of 3
	get := func(step string) (circuit.Circuit, int64) {
		t.Helper()
		r0 := api.Reads.Load()
		c, _, err := reader.Get(ctx, "svc")
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		return c, api.Reads.Load() - r0
	}
	get("first read, K unknown")
	// Mark copy 2 as a test can: only a reader of copy 2 sees the mark.
	setAttrs(t, s, CopyKey("svc", 2), map[string]typesAV{"reason": strAV("read from copy 2")})
	if c, n := get("copy"); c.Reason != "read from copy 2" || n != 1 || c.ID != "svc" {
		t.Fatalf("second read = %+v in %d calls; want copy 2 in one call, standing for circuit svc", c, n)
	}
	if _, err := s.SetOverride(ctx, "svc", circuit.ForcedOpen, "incident", time.Time{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c, _ := get("override"); c.ActiveOverride(time.Now()) != circuit.ForcedOpen || c.Reason != "read from copy 2" {
		t.Fatalf("read after the override = %+v; want FORCED_OPEN from copy 2", c)
	}

	// Copy 2 missing (a fresh deploy): the circuit item answers.
	tbl := s.Table()
	if _, err := s.db.(*countingAPI).API.(interface {
		DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	}).DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: &tbl, Key: key(CopyKey("svc", 2))}); err != nil {
		t.Fatal(err)
	}
	if c, n := get("copy missing"); c.ActiveOverride(time.Now()) != circuit.ForcedOpen || c.Reason == "read from copy 2" || n != 2 {
		t.Fatalf("read with copy 2 missing = %+v in %d calls; want the circuit item after the copy", c, n)
	}
	if _, n := get("after a missing copy"); n != 1 {
		t.Errorf("next read took %d calls; want the circuit item directly", n)
	}

	// K goes down to 2: copy 2 is retired, its reader moves.
	if _, err := s.SyncCopies(ctx, "svc", 3, 3); err != nil { // the repair recreates copy 2
		t.Fatal(err)
	}
	if sync, err := s.SyncCopies(ctx, "svc", 2, 3); err != nil || len(sync.Retired) != 1 {
		t.Fatalf("SyncCopies to 2 = %+v, %v; want copy 2 retired", sync, err)
	}
	setAttrs(t, s, CopyKey("svc", 2), map[string]typesAV{"reason": strAV("retired copy")})
	fresh := s.WithEventualReads().WithReadCopy(2)
	reader = fresh
	get("learn K = 3 from the circuit item")
	if c, _ := get("after the retirement"); c.Reason == "retired copy" {
		t.Errorf("reader served the retired copy: %+v", c)
	}
}

// TestSyncCopiesRepairs checks the updater's repair: a copy behind its
// circuit item (a copy write that failed) is written again and logged; a
// copy that is in step costs no write.
func TestSyncCopiesRepairs(t *testing.T) {
	s, api, logs := withCopies(t, 3)
	ctx := context.Background()
	setAttrs(t, s, CopyKey("svc", 1), map[string]typesAV{"state": strAV("OPEN"), StateRevAttribute: num(0)})
	w0 := api.Writes.Load()
	sync, err := s.SyncCopies(ctx, "svc", 3, 3)
	if err != nil || len(sync.Repaired) != 1 || sync.Repaired[0] != 1 || api.Writes.Load()-w0 != 1 {
		t.Fatalf("SyncCopies = %+v, %v, %d writes; want copy 1 repaired in one write", sync, err, api.Writes.Load()-w0)
	}
	assertCopiesEqual(t, s, 3, "repaired")
	if lines := withMsg(logs.Lines(t), MsgCopyRepaired); len(lines) != 3 || lines[2]["copy"] != float64(1) || lines[2]["level"] != "WARN" {
		t.Errorf("repair log lines = %v; want 2 creations and the repair of copy 1", lines)
	}
	w0 = api.Writes.Load()
	if sync, err := s.SyncCopies(ctx, "svc", 3, 3); err != nil || len(sync.Repaired) != 0 || sync.Reads != 1 || api.Writes.Load() != w0 {
		t.Errorf("SyncCopies in step = %+v, %v; want one read and no write", sync, err)
	}
	if sync, err := s.SyncCopies(ctx, "other", 1, 1); err != nil || sync.Reads != 0 {
		t.Errorf("SyncCopies with K 1 = %+v, %v; want nothing done", sync, err)
	}
}

// TestRetireFailureKeepsCopyVisited checks that a copy whose retire write
// fails (K going down) stays within the circuit item's K, so the next
// check retires it, and that a reader whose pick is that copy then reads
// the circuit item rather than a copy frozen at the old K.
func TestRetireFailureKeepsCopyVisited(t *testing.T) {
	var armed atomic.Bool
	s, _ := newFaultyStore(t, func(op string, body []byte) dbfault.Action {
		if armed.Load() && op == "UpdateItem" && (bytes.Contains(body, []byte(`svc#r#3`)) || bytes.Contains(body, []byte(`svc#r#2`))) {
			return dbfault.Throttle
		}
		return dbfault.Pass
	})
	s = s.WithMaxAttempts(1)
	ctx := context.Background()
	if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncCopies(ctx, "svc", 5, 1); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	sync, err := s.SyncCopies(ctx, "svc", 2, 5) // retires of copies 2 and 3 throttled, 4 passes
	armed.Store(false)
	if err == nil || !strings.Contains(err.Error(), "copy 2") || !strings.Contains(err.Error(), "copy 3") {
		t.Errorf("SyncCopies with two retires throttled: err = %v; want both failures", err)
	}
	if len(sync.Retired) != 1 || sync.Retired[0] != 4 {
		t.Errorf("Retired = %v; want only copy 4, whose write succeeded", sync.Retired)
	}
	r, err := s.ReadCircuit(ctx, "svc")
	if err != nil || r.ReadCopies != 5 {
		t.Fatalf("circuit item's K after failed retires = %d, %v; want 5 kept", r.ReadCopies, err)
	}
	// The next check passes the K it read and finishes the retirement.
	sync, err = s.SyncCopies(ctx, "svc", 2, r.ReadCopies)
	if err != nil || len(sync.Retired) != 2 {
		t.Fatalf("next SyncCopies = %+v, %v; want copies 2 and 3 retired", sync, err)
	}
	if r, _ := s.ReadCircuit(ctx, "svc"); r.ReadCopies != 2 {
		t.Errorf("circuit item's K = %d; want 2 once every copy is retired", r.ReadCopies)
	}
	for i := 2; i < 5; i++ {
		if k := readCopies(rawItem(t, s, CopyKey("svc", i))); k != 2 {
			t.Errorf("copy %d holds K %d; want 2", i, k)
		}
	}
	fail := func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("500"), t0)
	}
	if _, err := s.Apply(ctx, "svc", fail); err != nil {
		t.Fatal(err)
	}
	for _, pick := range []int{2, 3} {
		reader := s.WithEventualReads().WithReadCopy(pick) // K unknown: guesses DefaultReadCopies
		for i := 0; i < 2; i++ {
			c, _, err := reader.Get(ctx, "svc")
			if err != nil || c.State != circuit.Open {
				t.Errorf("reader with pick %d, read %d = %s, %v; want OPEN", pick, i, c.State, err)
			}
		}
	}
}

// TestSyncCopiesReadsPastKnownK checks that copies past the K the caller
// knew, but within the circuit item's, are retired too.
func TestSyncCopiesReadsPastKnownK(t *testing.T) {
	s, _, _ := withCopies(t, 4)
	ctx := context.Background()
	sync, err := s.SyncCopies(ctx, "svc", 2, 2)
	if err != nil || len(sync.Retired) != 2 {
		t.Fatalf("SyncCopies(2, known 2) on K 4 = %+v, %v; want copies 2 and 3 retired", sync, err)
	}
	if r, _ := s.ReadCircuit(ctx, "svc"); r.ReadCopies != 2 {
		t.Errorf("circuit item's K = %d; want 2", r.ReadCopies)
	}
}

// TestLostAnswerStillWritesCopies checks that a write whose answer was
// lost, recognised by its token on the SDK's retry, still writes the read
// copies, at the revision read back from the circuit item.
func TestLostAnswerStillWritesCopies(t *testing.T) {
	var armed atomic.Bool
	s, _ := newFaultyStore(t, loseFirst("UpdateItem", &armed))
	ctx := context.Background()
	if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncCopies(ctx, "svc", 3, 1); err != nil {
		t.Fatal(err)
	}
	fail := func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("500"), t0)
	}
	armed.Store(true)
	a, err := s.Apply(ctx, "svc", fail)
	if err != nil || a.After().State != circuit.Open {
		t.Fatalf("Apply with its answer lost = %s, %v; want OPEN", a.After().State, err)
	}
	assertCopiesEqual(t, s, 3, "after a lost answer")
}

// TestCopyWriteRetriedOnce checks that a copy write that fails (a
// throttle) is sent once more, and that one failing twice is logged as a
// warning and left for the updater's repair.
func TestCopyWriteRetriedOnce(t *testing.T) {
	for _, tt := range []struct {
		name     string
		failures int32 // throttled requests of copy 1 (the SDK makes 3 attempts per call)
		inStep   bool
		warnings int
	}{
		{"fails once", 3, true, 0},
		{"fails every time", 1 << 20, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var armed atomic.Bool
			var left atomic.Int32
			left.Store(tt.failures)
			s, _ := newFaultyStore(t, func(op string, body []byte) dbfault.Action {
				if armed.Load() && op == "UpdateItem" && bytes.Contains(body, []byte(`svc#r#1`)) && left.Add(-1) >= 0 {
					return dbfault.Throttle
				}
				return dbfault.Pass
			})
			logs := &logBuffer{}
			s = s.WithLogger(slog.New(slog.NewJSONHandler(logs, nil)))
			ctx := context.Background()
			if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
				t.Fatal(err)
			}
			if _, err := s.SyncCopies(ctx, "svc", 3, 1); err != nil {
				t.Fatal(err)
			}
			armed.Store(true)
			a, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
				return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("500"), t0)
			})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(rawItem(t, s, CopyKey("svc", 1)))
			if inStep := err == nil && c.State == a.After().State; inStep != tt.inStep {
				t.Errorf("copy 1 = %s, %v; want in step %v", c.State, err, tt.inStep)
			}
			if c, _ := Decode(rawItem(t, s, CopyKey("svc", 2))); c.State != a.After().State {
				t.Errorf("copy 2 = %s; want %s", c.State, a.After().State)
			}
			lines := withMsg(logs.Lines(t), MsgCopyNotWritten)
			if len(lines) != tt.warnings || (len(lines) > 0 && (lines[0]["level"] != "WARN" || lines[0]["copy"] != float64(1))) {
				t.Errorf("%q lines = %v; want %d warning(s) for copy 1", MsgCopyNotWritten, lines, tt.warnings)
			}
		})
	}
}

// TestSyncCopiesCatchesAWriteDuringCreation checks that a write of the
// circuit item landing after SyncCopies read it but before it created the
// copies (its copy writes refused on the missing copies) reaches the new
// copies in the same call.
func TestSyncCopiesCatchesAWriteDuringCreation(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	other := New(srv.Client(), table).WithLogger(slog.New(slog.NewJSONHandler(&logBuffer{}, nil)))
	ctx := context.Background()
	var once atomic.Bool
	var applied atomic.Pointer[Applied]
	var applyErr atomic.Value
	tr := &dbfault.Transport{Fault: func(op string, body []byte) dbfault.Action {
		if op == "UpdateItem" && bytes.Contains(body, []byte(`svc#r#1`)) && bytes.Contains(body, []byte("attribute_not_exists")) && once.CompareAndSwap(false, true) {
			// Another writer trips the circuit just before copy 1 is created.
			a, err := other.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
				return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("500"), t0)
			})
			if err != nil {
				applyErr.Store(err)
			}
			applied.Store(&a)
		}
		return dbfault.Pass
	}}
	s := New(tr.Wrap(srv.Client()), table).WithLogger(slog.New(slog.NewJSONHandler(&logBuffer{}, nil)))
	if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
		t.Fatal(err)
	}
	sync, err := s.SyncCopies(ctx, "svc", 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	if e := applyErr.Load(); e != nil {
		t.Fatal(e)
	}
	if a := applied.Load(); a == nil || a.After().State != circuit.Open {
		t.Fatalf("the concurrent write did not trip the circuit: %+v", a)
	}
	if sync.Reads != 2 {
		t.Errorf("SyncCopies made %d reads; want 2 (the circuit item read again after creating copies)", sync.Reads)
	}
	assertCopiesEqual(t, s, 3, "after a write during creation")
}

// TestSyncCopiesRepairsACopyAheadOfItsCircuit checks that a circuit
// item whose stateRev was set back (an attached function may write it)
// does not freeze its copies: the updater writes them to the circuit
// item's revision, and the next write's copy writes land.
func TestSyncCopiesRepairsACopyAheadOfItsCircuit(t *testing.T) {
	s, _, _ := withCopies(t, 3)
	ctx := context.Background()
	fail := func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("500"), t0)
	}
	for range 3 {
		if _, err := s.Apply(ctx, "svc", func(c circuit.Circuit) circuit.Decision {
			return circuit.Decide(c, circuit.Settings{FailureThreshold: 5}, circuit.Failure("500"), t0)
		}); err != nil {
			t.Fatal(err)
		}
	}
	setAttrs(t, s, "svc", map[string]typesAV{StateRevAttribute: num(0)})
	if sync, err := s.SyncCopies(ctx, "svc", 3, 3); err != nil || len(sync.Repaired) != 2 {
		t.Fatalf("SyncCopies = %+v, %v; want both copies set back to the circuit item's revision", sync, err)
	}
	assertCopiesEqual(t, s, 3, "set back")
	if _, err := s.Apply(ctx, "svc", fail); err != nil {
		t.Fatal(err)
	}
	assertCopiesEqual(t, s, 3, "the next write")
}

// TestExtensionWritableAttributesCoverWrites checks that the allow list of
// attached functions' grant holds every attribute a write of the state
// machine and its copy writes name, and none of ProtectedAttributes.
func TestExtensionWritableAttributesCoverWrites(t *testing.T) {
	for _, a := range ProtectedAttributes {
		if slices.Contains(ExtensionWritableAttributes, a) {
			t.Errorf("protected attribute %q is in ExtensionWritableAttributes", a)
		}
	}
	e := newExpr()
	copyState(e, circuit.Circuit{ID: "svc", State: circuit.Open, Version: 1, Reason: "r", PreviousState: circuit.Closed, RetryAt: t0, UpdatedAt: t0}, 1)
	e.name(KeyAttribute)
	e.name(WriteTokenAttribute)
	e.name(PriorWriteTokenAttribute)
	for _, a := range e.names {
		if !slices.Contains(ExtensionWritableAttributes, a) {
			t.Errorf("attribute %q of a state write is not in ExtensionWritableAttributes", a)
		}
	}
}
