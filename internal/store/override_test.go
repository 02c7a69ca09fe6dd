package store

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// putLegacy writes a circuit item the way earlier versions did: the state
// machine's attributes and the override on the same item.
func putLegacy(t *testing.T, s *Store, c circuit.Circuit) {
	t.Helper()
	item, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	delete(item, OverrideAttribute)
	item["override"] = strAV(string(c.Override))
	item["overrideReason"] = strAV(c.OverrideReason)
	item["overrideAt"] = num(toMillis(c.OverrideAt))
	if !c.OverrideUntil.IsZero() {
		item["overrideUntil"] = num(toMillis(c.OverrideUntil))
	}
	tbl := s.Table()
	if _, err := s.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &tbl, Item: item}); err != nil {
		t.Fatal(err)
	}
}

func rawItem(t *testing.T, s *Store, k string) map[string]types.AttributeValue {
	t.Helper()
	tbl := s.Table()
	out, err := s.db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: &tbl, Key: key(k), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}

// putOverrideItem writes a legacy override item "<id>#override", as the
// previous version did.
func putOverrideItem(t *testing.T, s *Store, id string, o circuit.Override, reason string, at time.Time) {
	t.Helper()
	item := map[string]types.AttributeValue{
		KeyAttribute: strAV(OverrideKey(id)), "kind": strAV("override"), "overrideAt": num(toMillis(at)), "circuitState": strAV("CLOSED"),
	}
	if o != circuit.NoOverride {
		item["override"], item["overrideReason"] = strAV(string(o)), strAV(reason)
	}
	tbl := s.Table()
	if _, err := s.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &tbl, Item: item}); err != nil {
		t.Fatal(err)
	}
}

// TestOverrideAttributeWins checks that the circuit item's override
// attribute decides, whatever a legacy override item or the legacy
// attributes say, including when it holds no override at all, and that a
// migrated circuit costs one item read.
func TestOverrideAttributeWins(t *testing.T) {
	s, api, _ := newTestStore(t)
	ctx := context.Background()
	putLegacy(t, s, circuit.Circuit{ID: "a", State: circuit.Closed, Version: 3, Override: circuit.ForcedClosed, OverrideReason: "forged", OverrideAt: t0})
	putOverrideItem(t, s, "a", circuit.ForcedClosed, "old item", t0)
	putLegacy(t, s, circuit.Circuit{ID: "b", State: circuit.Open, Version: 1, Override: circuit.ForcedClosed, OverrideReason: "forged", OverrideAt: t0})
	if _, err := s.SetOverride(ctx, "a", circuit.ForcedOpen, "bad deploy", time.Time{}, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ClearOverride(ctx, "b", t0); err != nil {
		t.Fatal(err)
	}
	// An earlier version's operator tool writing the old item after the
	// migration changes nothing.
	putOverrideItem(t, s, "a", circuit.ForcedClosed, "stale tool", t0)

	r0, k0 := api.Reads.Load(), api.KeysRead.Load()
	got, err := s.GetMany(ctx, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if n, k := api.Reads.Load()-r0, api.KeysRead.Load()-k0; n != 1 || k != 2 {
		t.Errorf("GetMany made %d reads of %d keys, want one BatchGetItem of the 2 circuit keys", n, k)
	}
	if a := got["a"]; a.Override != circuit.ForcedOpen || a.OverrideReason != "bad deploy" || a.Allowed(t0) || a.Version != 3 {
		t.Errorf("a = %+v; want the override attribute's FORCED_OPEN", a)
	}
	if b := got["b"]; b.Override != circuit.NoOverride || b.Allowed(t0) || b.State != circuit.Open {
		t.Errorf("b = %+v; a cleared override attribute must hide the legacy FORCED_CLOSED", b)
	}
	for _, id := range []string{"a", "b"} {
		for _, attr := range legacyOverrideAttributes {
			if _, ok := rawItem(t, s, id)[attr]; ok {
				t.Errorf("%s keeps legacy attribute %s after an override write", id, attr)
			}
		}
	}
	one, found, err := s.Get(ctx, "a")
	if err != nil || !found || one.Override != circuit.ForcedOpen {
		t.Errorf("Get(a) = %+v, %v, %v", one, found, err)
	}
}

// TestUpgradeKeepsForcedOpen checks that a FORCED_OPEN set with the
// previous layout (an override item) is in force before, during and after
// the migration, and that readers need one item once it is done.
func TestUpgradeKeepsForcedOpen(t *testing.T) {
	s, api, logs := newTestStore(t)
	ctx := context.Background()
	putLegacy(t, s, circuit.Circuit{ID: "svc", State: circuit.Closed, Version: 5})
	putOverrideItem(t, s, "svc", circuit.ForcedOpen, "incident", t0)
	putOverrideItem(t, s, "fresh", circuit.ForcedOpen, "not yet called", t0)
	reader := s.WithEventualReads()

	for _, id := range []string{"svc", "fresh"} {
		c, _, err := reader.Get(ctx, id)
		if err != nil || c.Allowed(t0) || c.ActiveOverride(t0) != circuit.ForcedOpen {
			t.Fatalf("before the migration, Get(%s) = %+v, %v; want FORCED_OPEN", id, c, err)
		}
		moved, err := s.MigrateOverride(ctx, id, t0)
		if err != nil || !moved {
			t.Fatalf("MigrateOverride(%s) = %v, %v", id, moved, err)
		}
		if moved, err := s.MigrateOverride(ctx, id, t0); err != nil || moved {
			t.Errorf("second MigrateOverride(%s) = %v, %v; want nothing done", id, moved, err)
		}
		k0 := api.KeysRead.Load()
		c, _, err = reader.Get(ctx, id)
		if err != nil || c.Allowed(t0) || c.OverrideReason != c.OverrideReason || c.ActiveOverride(t0) != circuit.ForcedOpen {
			t.Fatalf("after the migration, Get(%s) = %+v, %v; want FORCED_OPEN", id, c, err)
		}
		if k := api.KeysRead.Load() - k0; k != 1 {
			t.Errorf("Get(%s) read %d keys after the migration, want 1", id, k)
		}
	}
	if c, _, _ := reader.Get(ctx, "svc"); c.Version != 5 || c.OverrideReason != "incident" {
		t.Errorf("svc = %+v; want version 5 and the reason moved", c)
	}
	if n := len(withMsg(logs.Lines(t), MsgOverrideMigrated)); n != 2 {
		t.Errorf("%d migration log lines, want 2", n)
	}
	// The override is cleared the new way.
	if _, cleared, err := s.ClearOverride(ctx, "svc", t0); err != nil || !cleared {
		t.Fatalf("ClearOverride = %v, %v", cleared, err)
	}
	if c, _, err := reader.Get(ctx, "svc"); err != nil || !c.Allowed(t0) {
		t.Errorf("after clear: %+v, %v", c, err)
	}
}

// TestOverrideRevisions checks that every override write gets the next
// revision, also when operators race, and that the last write wins.
func TestOverrideRevisions(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	const n = 6
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.SetOverride(ctx, "svc", circuit.ForcedOpen, "r"+string(rune('a'+i)), time.Time{}, t0)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	o, found, err := DecodeOverrideAttribute(rawItem(t, s, "svc"))
	if err != nil || !found || o.Rev != n {
		t.Fatalf("after %d concurrent sets: %+v, %v, %v; want revision %d", n, o, found, err, n)
	}
	if _, err := s.SetOverride(ctx, "svc", circuit.ForcedClosed, "last", time.Time{}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if c, _, err := s.Get(ctx, "svc"); err != nil || c.Override != circuit.ForcedClosed || c.OverrideReason != "last" || c.State != circuit.Closed {
		t.Errorf("Get = %+v, %v; want the last FORCED_CLOSED on a CLOSED circuit", c, err)
	}
}

// TestLegacyOverride checks that a table written by earlier versions, with
// the override on the circuit item, still works, and that MigrateOverride
// moves the override into the override attribute.
func TestLegacyOverride(t *testing.T) {
	s, _, logs := newTestStore(t)
	ctx := context.Background()
	until := t0.Add(time.Hour)
	putLegacy(t, s, circuit.Circuit{ID: "old", State: circuit.Closed, Version: 2, Override: circuit.ForcedOpen, OverrideReason: "maintenance", OverrideAt: t0, OverrideUntil: until})

	r, err := s.read(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	if r.OverrideStored || !r.Found || r.Circuit.ActiveOverride(t0) != circuit.ForcedOpen || r.Circuit.OverrideReason != "maintenance" {
		t.Fatalf("legacy read = %+v", r)
	}
	// The state machine still runs underneath the legacy override.
	if _, err := s.Apply(ctx, "old", func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{FailureThreshold: 1}, circuit.Failure("x"), t0)
	}); err != nil {
		t.Fatal(err)
	}

	created, err := s.MigrateOverride(ctx, "old", t0)
	if err != nil || !created {
		t.Fatalf("MigrateOverride = %v, %v", created, err)
	}
	item := rawItem(t, s, "old")
	for _, a := range legacyOverrideAttributes {
		if _, ok := item[a]; ok {
			t.Errorf("circuit item still has %s after the migration", a)
		}
	}
	ov, found, err := DecodeOverrideAttribute(item)
	if err != nil || !found || ov.Override != circuit.ForcedOpen || ov.Reason != "maintenance" || !ov.Until.Equal(until) || !ov.At.Equal(t0) || ov.Rev != 1 {
		t.Fatalf("override attribute = %+v, %v, %v", ov, found, err)
	}
	r, err = s.read(ctx, "old")
	if err != nil || !r.OverrideStored || r.Circuit.ActiveOverride(t0) != circuit.ForcedOpen || r.Circuit.State != circuit.Open || r.Circuit.Version != 3 {
		t.Fatalf("after migration: %+v, %v", r, err)
	}
	if n := len(withMsg(logs.Lines(t), MsgOverrideMigrated)); n != 1 {
		t.Errorf("%d migration log lines, want 1", n)
	}

	// Clearing a legacy override that was never migrated clears it too.
	putLegacy(t, s, circuit.Circuit{ID: "old2", State: circuit.Closed, Override: circuit.ForcedClosed, OverrideReason: "false alarm", OverrideAt: t0})
	c, cleared, err := s.ClearOverride(ctx, "old2", t0)
	if err != nil || !cleared || c.Override != circuit.NoOverride {
		t.Fatalf("ClearOverride(old2) = %+v, %v, %v", c, cleared, err)
	}
	if got, _, err := s.Get(ctx, "old2"); err != nil || got.Override != circuit.NoOverride {
		t.Errorf("after clearing a legacy override: %+v, %v", got, err)
	}
}

// TestUnreadableOverrideItem checks that a bad override item fails only
// its own circuit.
func TestUnreadableOverrideItem(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	tbl := s.Table()
	if _, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: &tbl, Item: map[string]types.AttributeValue{
		KeyAttribute: strAV(OverrideKey("bad")), "override": strAV("SOMETIMES"),
	}}); err != nil {
		t.Fatal(err)
	}
	putLegacy(t, s, circuit.Circuit{ID: "good", State: circuit.Open, Version: 1, Override: circuit.ForcedOpen, OverrideReason: "r"})
	got, err := s.GetMany(ctx, []string{"bad", "good"})
	bad, ok := err.(ItemErrors)
	if !ok || bad["bad"] == nil || len(bad) != 1 {
		t.Fatalf("GetMany error = %v; want ItemErrors for bad only", err)
	}
	if _, ok := got["bad"]; ok || got["good"].State != circuit.Open {
		t.Errorf("GetMany = %+v", got)
	}
}

// TestInvalidLegacyOverride checks that a legacy override attribute that
// holds no valid override is dropped with a warning: the circuit reads
// without an override, the migration creates an override attribute
// without one and removes it, and so does ClearOverride.
func TestInvalidLegacyOverride(t *testing.T) {
	s, _, logs := newTestStore(t)
	ctx := context.Background()
	for _, id := range []string{"migrated", "cleared"} {
		putLegacy(t, s, circuit.Circuit{ID: id, State: circuit.Open, Version: 2, Override: "WHATEVER", OverrideReason: "forged", OverrideAt: t0})
	}

	c, _, err := s.Get(ctx, "migrated")
	if err != nil || c.Override != circuit.NoOverride || c.OverrideReason != "" || c.State != circuit.Open {
		t.Fatalf("Get = %+v, %v; want OPEN without an override", c, err)
	}
	lines := withMsg(logs.Lines(t), MsgLegacyOverrideDropped)
	if len(lines) != 1 || lines[0]["override"] != "WHATEVER" || lines[0]["level"] != "WARN" {
		t.Errorf("drop log lines = %v; want one warning", lines)
	}

	// The updater's first check migrates: nothing to move.
	a, err := s.Apply(ctx, "migrated", func(c circuit.Circuit) circuit.Decision {
		return circuit.Decide(c, circuit.Settings{}, circuit.Failure("x"), t0)
	})
	if err != nil || a.OverrideStored {
		t.Fatalf("Apply = %+v, %v", a, err)
	}
	if _, err := s.MigrateOverride(ctx, "migrated", t0); err != nil {
		t.Fatal(err)
	}
	item := rawItem(t, s, "migrated")
	ov, found, err := DecodeOverrideAttribute(item)
	if err != nil || !found || ov.Override != circuit.NoOverride {
		t.Errorf("override attribute after the migration = %+v, %v, %v; want one without an override", ov, found, err)
	}
	if _, ok := item["override"]; ok {
		t.Error("the migration left the invalid legacy attribute")
	}
	if c, _, err := s.Get(ctx, "migrated"); err != nil || c.Override != circuit.NoOverride {
		t.Errorf("Get after the migration = %+v, %v", c, err)
	}
	if n := len(withMsg(logs.Lines(t), MsgOverrideMigrated)); n != 0 {
		t.Errorf("%d migration lines for an override that was not moved", n)
	}

	// circuitctl clear's path.
	c, cleared, err := s.ClearOverride(ctx, "cleared", t0)
	if err != nil || !cleared || c.Override != circuit.NoOverride {
		t.Fatalf("ClearOverride = %+v, %v, %v", c, cleared, err)
	}
	for _, a := range legacyOverrideAttributes {
		if _, ok := rawItem(t, s, "cleared")[a]; ok {
			t.Errorf("circuit item keeps %s after clear", a)
		}
	}
	if r, err := s.ReadCircuit(ctx, "cleared"); err != nil || !r.OverrideStored || r.Circuit.Override != circuit.NoOverride || r.DroppedOverride != "" {
		t.Errorf("after clear: %+v, %v", r, err)
	}
	if _, err := s.SetOverride(ctx, "cleared", circuit.ForcedOpen, "real", time.Time{}, t0); err != nil {
		t.Errorf("SetOverride after clear: %v", err)
	}
}

// TestOverridesOnUnreadableCircuit checks that an operator can set and
// clear overrides of a circuit whose item cannot be decoded.
func TestOverridesOnUnreadableCircuit(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	setAttrs(t, s, "svc", map[string]typesAV{"state": strAV("BOGUS"), "version": num(3)})
	c, err := s.SetOverride(ctx, "svc", circuit.ForcedOpen, "incident", time.Time{}, t0)
	if err != nil || c.ActiveOverride(t0) != circuit.ForcedOpen {
		t.Fatalf("SetOverride = %+v, %v", c, err)
	}
	if got, _, err := s.Get(ctx, "svc"); err != nil || got.Allowed(t0) || got.Version != 3 {
		t.Errorf("Get under the override = %+v, %v; want FORCED_OPEN at version 3", got, err)
	}
	if _, cleared, err := s.ClearOverride(ctx, "svc", t0); err != nil || !cleared {
		t.Fatalf("ClearOverride = %v, %v", cleared, err)
	}
	if _, _, err := s.Get(ctx, "svc"); err == nil {
		t.Error("Get of the unreadable circuit without an override succeeded")
	}
}

// TestBrokenOverrideAttribute checks that an override attribute that does
// not decode (written by hand) makes the circuit unreadable without an
// override, and that an operator's clear replaces it.
func TestBrokenOverrideAttribute(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	if _, err := s.MigrateOverride(ctx, "svc", t0); err != nil {
		t.Fatal(err)
	}
	setAttrs(t, s, "svc", map[string]typesAV{OverrideAttribute: &types.AttributeValueMemberM{Value: map[string]typesAV{"override": strAV("SOMETIMES"), "rev": num(3)}}})
	if _, _, err := s.Get(ctx, "svc"); err == nil {
		t.Fatal("Get of a circuit whose override does not decode succeeded")
	}
	r, err := s.ReadCircuit(ctx, "svc")
	if err != nil || r.Unreadable == nil || !r.OverrideStored {
		t.Fatalf("ReadCircuit = %+v, %v; want it unreadable", r, err)
	}
	if _, cleared, err := s.ClearOverride(ctx, "svc", t0); err != nil || !cleared {
		t.Fatalf("ClearOverride = %v, %v", cleared, err)
	}
	if c, _, err := s.Get(ctx, "svc"); err != nil || c.Override != circuit.NoOverride {
		t.Errorf("after clear: %+v, %v", c, err)
	}
}
