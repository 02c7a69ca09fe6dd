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

// TestOverrideItemWins checks that the override item decides, whatever the
// circuit item's own override attributes say, including when it holds no
// override at all.
func TestOverrideItemWins(t *testing.T) {
	s, api, _ := newTestStore(t)
	ctx := context.Background()
	putLegacy(t, s, circuit.Circuit{ID: "a", State: circuit.Closed, Version: 3, Override: circuit.ForcedClosed, OverrideReason: "forged", OverrideAt: t0})
	putLegacy(t, s, circuit.Circuit{ID: "b", State: circuit.Open, Version: 1, Override: circuit.ForcedClosed, OverrideReason: "forged", OverrideAt: t0})
	if _, err := s.SetOverride(ctx, "a", circuit.ForcedOpen, "bad deploy", time.Time{}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateOverride(ctx, circuit.New("b"), t0); err != nil {
		t.Fatal(err)
	}

	r0 := api.Reads.Load()
	got, err := s.GetMany(ctx, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if api.Reads.Load()-r0 != 1 {
		t.Errorf("GetMany made %d reads, want one BatchGetItem", api.Reads.Load()-r0)
	}
	if a := got["a"]; a.Override != circuit.ForcedOpen || a.OverrideReason != "bad deploy" || a.Allowed(t0) || a.Version != 3 {
		t.Errorf("a = %+v; want the override item's FORCED_OPEN over the circuit item's FORCED_CLOSED", a)
	}
	if b := got["b"]; b.Override != circuit.NoOverride || b.Allowed(t0) || b.State != circuit.Open {
		t.Errorf("b = %+v; an override item without an override must hide the circuit item's FORCED_CLOSED", b)
	}
	if _, ok := got["c"]; ok {
		t.Error("a circuit with no items is in the result")
	}
	one, found, err := s.Get(ctx, "a")
	if err != nil || !found || one.Override != circuit.ForcedOpen {
		t.Errorf("Get(a) = %+v, %v, %v", one, found, err)
	}
}

// TestLegacyOverride checks that a table written by earlier versions, with
// the override on the circuit item, still works, and that MigrateOverride
// moves the override to its own item.
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

	created, err := s.MigrateOverride(ctx, r.Circuit, t0)
	if err != nil || !created {
		t.Fatalf("MigrateOverride = %v, %v", created, err)
	}
	item := rawItem(t, s, "old")
	for _, a := range legacyOverrideAttributes {
		if _, ok := item[a]; ok {
			t.Errorf("circuit item still has %s after the migration", a)
		}
	}
	ov, err := DecodeOverride(rawItem(t, s, OverrideKey("old")))
	if err != nil || ov.Override != circuit.ForcedOpen || ov.Reason != "maintenance" || !ov.Until.Equal(until) || !ov.At.Equal(t0) {
		t.Fatalf("override item = %+v, %v", ov, err)
	}
	r, err = s.read(ctx, "old")
	if err != nil || !r.OverrideStored || r.Circuit.ActiveOverride(t0) != circuit.ForcedOpen || r.Circuit.State != circuit.Open || r.Circuit.Version != 3 {
		t.Fatalf("after migration: %+v, %v", r, err)
	}
	if created, err := s.MigrateOverride(ctx, r.Circuit, t0); err != nil || created {
		t.Errorf("second MigrateOverride = %v, %v; want nothing done", created, err)
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
// without an override, the migration creates an override item without
// one, and ClearOverride removes the attribute.
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
	if _, err := s.MigrateOverride(ctx, a.After(), t0); err != nil {
		t.Fatal(err)
	}
	ov, err := DecodeOverride(rawItem(t, s, OverrideKey("migrated")))
	if err != nil || ov.Override != circuit.NoOverride {
		t.Errorf("override item after the migration = %+v, %v; want one without an override", ov, err)
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
