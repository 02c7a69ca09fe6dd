package circuit

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func TestDecide(t *testing.T) {
	ok, bad := Success("status 200"), Failure("status 500")
	tests := []struct {
		name     string
		c        Circuit
		s        Settings
		r        CheckResult
		now      time.Time
		change   Change
		state    State
		failures int
		success  int
		opens    int
		retryAt  time.Time
		reason   string // substring of the transition reason
	}{
		{name: "closed healthy steady state writes nothing", c: New("a"), r: ok, change: NoChange, state: Closed},
		{name: "empty state reads as closed", c: Circuit{ID: "a"}, r: ok, change: NoChange, state: Closed},
		{name: "closed first failure counts", c: New("a"), r: bad, change: CounterUpdate, state: Closed, failures: 1},
		{name: "closed second failure counts", c: Circuit{ID: "a", State: Closed, ConsecutiveFailures: 1}, r: bad, change: CounterUpdate, state: Closed, failures: 2},
		{name: "closed third failure opens", c: Circuit{ID: "a", State: Closed, ConsecutiveFailures: 2, Version: 4}, r: bad, change: Transition, state: Open, opens: 1, retryAt: t0.Add(30 * time.Second), reason: "3 consecutive failed checks; last: status 500"},
		{name: "closed success resets failures", c: Circuit{ID: "a", State: Closed, ConsecutiveFailures: 2}, r: ok, change: CounterUpdate, state: Closed},
		{name: "custom failure threshold 1 opens at once", c: New("a"), s: Settings{FailureThreshold: 1}, r: bad, change: Transition, state: Open, opens: 1, retryAt: t0.Add(30 * time.Second)},
		{name: "custom failure threshold 5 still counting", c: Circuit{ID: "a", State: Closed, ConsecutiveFailures: 3}, s: Settings{FailureThreshold: 5}, r: bad, change: CounterUpdate, state: Closed, failures: 4},
		{name: "open cooling down ignores failure", c: Circuit{ID: "a", State: Open, OpenCount: 1, RetryAt: t0.Add(time.Second)}, r: bad, change: NoChange, state: Open, opens: 1, retryAt: t0.Add(time.Second)},
		{name: "open cooling down ignores success", c: Circuit{ID: "a", State: Open, OpenCount: 1, RetryAt: t0.Add(time.Second)}, r: ok, change: NoChange, state: Open, opens: 1, retryAt: t0.Add(time.Second)},
		{name: "open after cool-down trial success half-opens", c: Circuit{ID: "a", State: Open, OpenCount: 1, RetryAt: t0}, r: ok, change: Transition, state: HalfOpen, success: 1, opens: 1, reason: "cool-down over"},
		{name: "open trial success closes with success threshold 1", c: Circuit{ID: "a", State: Open, OpenCount: 3, RetryAt: t0}, s: Settings{SuccessThreshold: 1}, r: ok, change: Transition, state: Closed, reason: "trial check after cool-down succeeded"},
		{name: "open trial failure stays open with longer cool-down", c: Circuit{ID: "a", State: Open, OpenCount: 1, RetryAt: t0.Add(-time.Second)}, r: bad, change: CounterUpdate, state: Open, opens: 2, retryAt: t0.Add(60 * time.Second)},
		{name: "half-open success counts", c: Circuit{ID: "a", State: HalfOpen, ConsecutiveSuccesses: 1, OpenCount: 1}, s: Settings{SuccessThreshold: 3}, r: ok, change: CounterUpdate, state: HalfOpen, success: 2, opens: 1},
		{name: "half-open second success closes", c: Circuit{ID: "a", State: HalfOpen, ConsecutiveSuccesses: 1, OpenCount: 2}, r: ok, change: Transition, state: Closed, reason: "2 consecutive successful trials"},
		{name: "half-open failure reopens with doubled cool-down", c: Circuit{ID: "a", State: HalfOpen, ConsecutiveSuccesses: 1, OpenCount: 1}, r: bad, change: Transition, state: Open, opens: 2, retryAt: t0.Add(60 * time.Second), reason: "trial check failed while half-open: status 500"},
		{name: "half-open failure cool-down capped", c: Circuit{ID: "a", State: HalfOpen, ConsecutiveSuccesses: 1, OpenCount: 9}, r: bad, change: Transition, state: Open, opens: 10, retryAt: t0.Add(5 * time.Minute)},
		{name: "overrides do not stop the state machine", c: Circuit{ID: "a", State: Closed, ConsecutiveFailures: 2, Override: ForcedClosed}, r: bad, change: Transition, state: Open, opens: 1, retryAt: t0.Add(30 * time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.c, tt.s, tt.r, t0)
			if d.Change != tt.change {
				t.Fatalf("Change = %s, want %s", d.Change, tt.change)
			}
			n := d.Next
			if n.State != tt.state || n.ConsecutiveFailures != tt.failures || n.ConsecutiveSuccesses != tt.success || n.OpenCount != tt.opens || !n.RetryAt.Equal(tt.retryAt) {
				t.Errorf("Next = state %s failures %d successes %d opens %d retryAt %v; want %s %d %d %d %v",
					n.State, n.ConsecutiveFailures, n.ConsecutiveSuccesses, n.OpenCount, n.RetryAt, tt.state, tt.failures, tt.success, tt.opens, tt.retryAt)
			}
			if n.Override != tt.c.Override {
				t.Errorf("Decide changed the override: %q -> %q", tt.c.Override, n.Override)
			}
			switch d.Change {
			case Transition:
				from := tt.c.State
				if from == "" {
					from = Closed
				}
				if n.Version != tt.c.Version+1 || n.PreviousState != from || !n.UpdatedAt.Equal(t0) || !d.Transitioned() {
					t.Errorf("transition bookkeeping: version %d (from %d), previous %s, updatedAt %v", n.Version, tt.c.Version, n.PreviousState, n.UpdatedAt)
				}
				if !strings.Contains(n.Reason, tt.reason) {
					t.Errorf("Reason = %q, want it to contain %q", n.Reason, tt.reason)
				}
			default:
				if n.Version != tt.c.Version || n.PreviousState != tt.c.PreviousState || n.Reason != tt.c.Reason || !n.UpdatedAt.Equal(tt.c.UpdatedAt) || d.Transitioned() {
					t.Errorf("non-transition changed transition fields: %+v", n)
				}
			}
			if d.Change == NoChange && n != tt.c && tt.c.State != "" {
				t.Errorf("NoChange but Next differs: %+v vs %+v", n, tt.c)
			}
		})
	}
}

// TestDecideFullCycle walks the whole machine with the default settings.
func TestDecideFullCycle(t *testing.T) {
	s := Settings{}
	c := New("svc")
	now := t0
	step := func(r CheckResult, want State) {
		t.Helper()
		d := Decide(c, s, r, now)
		c = d.Next
		if c.State != want {
			t.Fatalf("at %s after ok=%v: state %s, want %s", now.Sub(t0), r.OK, c.State, want)
		}
		now = now.Add(time.Minute)
	}
	step(Failure("x"), Closed)
	step(Failure("x"), Closed)
	step(Failure("x"), Open) // opened, cool-down 30s
	step(Failure("x"), Open) // trial failed: cool-down 60s
	step(Success(""), HalfOpen)
	step(Failure("x"), Open) // third opening: 120s
	now = now.Add(-time.Minute + 119*time.Second)
	step(Success(""), Open) // 119s after opening: still cooling down
	step(Success(""), HalfOpen)
	step(Success(""), Closed)
	if c.Version != 5 || c.OpenCount != 0 || !c.RetryAt.IsZero() {
		t.Errorf("after full cycle: version %d openCount %d retryAt %v; want 5, 0, zero", c.Version, c.OpenCount, c.RetryAt)
	}
}

func TestCooldown(t *testing.T) {
	tests := []struct {
		s     Settings
		opens int
		want  time.Duration
	}{
		{DefaultSettings(), 0, 30 * time.Second},
		{DefaultSettings(), 1, 30 * time.Second},
		{DefaultSettings(), 2, time.Minute},
		{DefaultSettings(), 3, 2 * time.Minute},
		{DefaultSettings(), 4, 4 * time.Minute},
		{DefaultSettings(), 5, 5 * time.Minute},
		{DefaultSettings(), 1 << 30, 5 * time.Minute},
		{Settings{OpenCooldown: time.Second, MaxOpenCooldown: time.Second}, 7, time.Second},
		{Settings{OpenCooldown: 10 * time.Second, MaxOpenCooldown: 24 * time.Hour}, 64, 24 * time.Hour},
		{Settings{}, 3, 0},
	}
	for _, tt := range tests {
		if got := tt.s.Cooldown(tt.opens); got != tt.want {
			t.Errorf("%+v.Cooldown(%d) = %s, want %s", tt.s, tt.opens, got, tt.want)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name    string
		s       Settings
		wantErr string
	}{
		{"defaults", DefaultSettings(), ""},
		{"zero with defaults", Settings{}.WithDefaults(), ""},
		{"long cool-down alone", Settings{OpenCooldown: time.Hour}.WithDefaults(), ""},
		{"short cap alone", Settings{MaxOpenCooldown: 10 * time.Second}.WithDefaults(), ""},
		{"bounds", Settings{FailureThreshold: 100, SuccessThreshold: 1, OpenCooldown: time.Second, MaxOpenCooldown: 24 * time.Hour}, ""},
		{"zero without defaults", Settings{}, "FailureThreshold 0"},
		{"failure threshold high", Settings{FailureThreshold: 101}.WithDefaults(), "FailureThreshold 101"},
		{"success threshold negative", Settings{SuccessThreshold: -1}.WithDefaults(), "SuccessThreshold -1"},
		{"cool-down short", Settings{OpenCooldown: time.Millisecond}.WithDefaults(), "OpenCooldown 1ms"},
		{"cool-down long", Settings{OpenCooldown: 25 * time.Hour, MaxOpenCooldown: 25 * time.Hour}, "OpenCooldown 25h"},
		{"max below cool-down", Settings{OpenCooldown: time.Minute, MaxOpenCooldown: time.Second}.WithDefaults(), "MaxOpenCooldown 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	tests := []struct {
		in, want Settings
	}{
		{Settings{}, DefaultSettings()},
		{Settings{OpenCooldown: time.Hour}, Settings{3, 2, time.Hour, time.Hour}},
		{Settings{MaxOpenCooldown: 10 * time.Second}, Settings{3, 2, 10 * time.Second, 10 * time.Second}},
		{Settings{MaxOpenCooldown: time.Hour}, Settings{3, 2, 30 * time.Second, time.Hour}},
		{Settings{FailureThreshold: 7, SuccessThreshold: 1, OpenCooldown: time.Second, MaxOpenCooldown: time.Minute}, Settings{7, 1, time.Second, time.Minute}},
	}
	for _, tt := range tests {
		if got := tt.in.WithDefaults(); got != tt.want {
			t.Errorf("%+v.WithDefaults() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestOverrideWinsUntilExpiry(t *testing.T) {
	until := t0.Add(10 * time.Minute)
	tests := []struct {
		name    string
		c       Circuit
		at      time.Time
		want    State
		active  Override
		allowed bool
	}{
		{"forced open before expiry", Circuit{State: Closed, Override: ForcedOpen, OverrideUntil: until}, t0, Open, ForcedOpen, false},
		{"forced open just before expiry", Circuit{State: Closed, Override: ForcedOpen, OverrideUntil: until}, until.Add(-time.Millisecond), Open, ForcedOpen, false},
		{"forced open at expiry", Circuit{State: Closed, Override: ForcedOpen, OverrideUntil: until}, until, Closed, NoOverride, true},
		{"forced closed over open", Circuit{State: Open, Override: ForcedClosed, OverrideUntil: until}, t0, Closed, ForcedClosed, true},
		{"forced closed over half-open", Circuit{State: HalfOpen, Override: ForcedClosed}, t0.Add(1000 * time.Hour), Closed, ForcedClosed, true},
		{"forced closed expired shows open", Circuit{State: Open, Override: ForcedClosed, OverrideUntil: until}, until.Add(time.Hour), Open, NoOverride, false},
		{"no expiry never expires", Circuit{State: Closed, Override: ForcedOpen}, t0.Add(10000 * time.Hour), Open, ForcedOpen, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.ActiveOverride(tt.at); got != tt.active {
				t.Errorf("ActiveOverride = %q, want %q", got, tt.active)
			}
			if got := tt.c.EffectiveState(tt.at); got != tt.want {
				t.Errorf("EffectiveState = %s, want %s", got, tt.want)
			}
			if got := tt.c.Allowed(tt.at); got != tt.allowed {
				t.Errorf("Allowed = %v, want %v", got, tt.allowed)
			}
		})
	}
}

func TestValidateOverride(t *testing.T) {
	tests := []struct {
		name    string
		o       Override
		reason  string
		until   time.Time
		wantErr string
	}{
		{"forced open forever", ForcedOpen, "maintenance", time.Time{}, ""},
		{"forced closed for an hour", ForcedClosed, "false alarm", t0.Add(time.Hour), ""},
		{"unknown", Override("OPEN"), "x", time.Time{}, "unknown override"},
		{"none", NoOverride, "x", time.Time{}, "unknown override"},
		{"blank reason", ForcedOpen, "  ", time.Time{}, "needs a reason"},
		{"long reason", ForcedOpen, strings.Repeat("r", MaxOverrideReasonLength+1), time.Time{}, "longer than"},
		{"escape sequence in reason", ForcedOpen, "x\x1b[2J", time.Time{}, "no control characters"},
		{"newline in reason", ForcedOpen, "x\ny", time.Time{}, "no control characters"},
		{"invalid UTF-8 in reason", ForcedOpen, "x\xff", time.Time{}, "valid UTF-8"},
		{"unicode reason", ForcedOpen, "déploiement raté", time.Time{}, ""},
		{"expiry now", ForcedOpen, "x", t0, "not in the future"},
		{"expiry past", ForcedOpen, "x", t0.Add(-time.Hour), "not in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateOverride(tt.o, tt.reason, tt.until, t0)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateOverride = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateOverride = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := ParseOverride("FORCED_OPEN"); err != nil {
		t.Errorf("ParseOverride(FORCED_OPEN) = %v", err)
	}
	if _, err := ParseOverride("forced_open"); err == nil {
		t.Error("ParseOverride(forced_open) succeeded, want error")
	}
}

func TestChangeString(t *testing.T) {
	for c, want := range map[Change]string{NoChange: "none", CounterUpdate: "counters", Transition: "transition", Change(9): "Change(9)"} {
		if got := c.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(c), got, want)
		}
	}
}
