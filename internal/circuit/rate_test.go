package circuit

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestDecideRate(t *testing.T) {
	now := t0
	b := func(ago time.Duration, calls, fails, slow int64) Bucket {
		return Bucket{Start: now.Add(-ago), Counts: Counts{Calls: calls, Failures: fails, Slow: slow}}
	}
	runs := func(ago time.Duration, calls, fails, runs int64) Bucket {
		return Bucket{Start: now.Add(-ago), Counts: Counts{Calls: calls, Failures: fails, Runs: runs}}
	}
	tests := []struct {
		name    string
		c       Circuit
		r       RateSettings
		buckets []Bucket
		change  Change
		reason  string
	}{
		{name: "no calls", c: New("a"), change: NoChange},
		{name: "below minimum calls", c: New("a"), buckets: []Bucket{b(5*time.Second, 9, 9, 0)}, change: NoChange},
		{name: "at minimum calls all failed: probable at 40 %", c: New("a"), buckets: []Bucket{b(5*time.Second, 10, 10, 0)}, change: NoChange},
		{name: "25 calls all failed: still probable enough", c: New("a"), buckets: []Bucket{b(5*time.Second, 25, 25, 0)}, change: NoChange},
		{name: "26 calls all failed", c: New("a"), buckets: []Bucket{b(5*time.Second, 26, 26, 0)}, change: Transition, reason: "failure rate 100% over 30s (26 calls)"},
		{name: "exactly at threshold, few calls", c: New("a"), buckets: []Bucket{b(0, 10, 3, 0), b(10*time.Second, 10, 7, 0)}, change: NoChange},
		{name: "exactly at threshold, many calls", c: New("a"), buckets: []Bucket{b(0, 1000, 300, 0), b(10*time.Second, 1000, 700, 0)}, change: Transition, reason: "failure rate 50% over 30s (2000 calls)"},
		{name: "improbable at 40 % but under the threshold", c: New("a"), buckets: []Bucket{b(0, 100000, 45000, 0)}, change: NoChange},
		{name: "just below threshold", c: New("a"), buckets: []Bucket{b(0, 100, 49, 0)}, change: NoChange},
		{name: "summed across buckets", c: New("a"), buckets: []Bucket{b(0, 150, 120, 0), b(5*time.Second, 120, 90, 0), b(25*time.Second, 120, 30, 0)}, change: Transition, reason: "failure rate 62% over 30s (390 calls)"},
		{name: "old buckets outside the window", c: New("a"), buckets: []Bucket{b(31*time.Second, 100, 100, 0), b(0, 5, 5, 0)}, change: NoChange},
		{name: "buckets before the last transition ignored", c: Circuit{ID: "a", State: Closed, Version: 2, UpdatedAt: now.Add(-10 * time.Second)}, buckets: []Bucket{b(15*time.Second, 50, 50, 0), b(5*time.Second, 4, 4, 0)}, change: NoChange},
		{name: "slow calls at 100% trip", c: New("a"), buckets: []Bucket{b(0, 110, 0, 110)}, change: Transition, reason: "slow-call rate 100%"},
		{name: "slow calls at 100% but too few", c: New("a"), buckets: []Bucket{b(0, 10, 0, 10)}, change: NoChange},
		{name: "slow calls below 100% do not", c: New("a"), buckets: []Bucket{b(0, 100, 0, 99)}, change: NoChange},
		{name: "custom slow threshold", c: New("a"), r: RateSettings{SlowCallRateThreshold: 50}, buckets: []Bucket{b(0, 2000, 0, 1000)}, change: Transition, reason: "slow-call rate 50%"},
		{name: "custom failure threshold and minimum", c: New("a"), r: RateSettings{FailureRateThreshold: 20, MinimumCalls: 5, Window: 10 * time.Second}, buckets: []Bucket{b(0, 5000, 1000, 0), b(15*time.Second, 50, 50, 0)}, change: Transition, reason: "failure rate 20% over 10s (5000 calls)"},
		{name: "seven runs among 1000 calls: probable enough at 40 %", c: New("a"), buckets: []Bucket{runs(0, 1000, 100, 7)}, change: NoChange},
		{name: "eight runs among 1000 calls", c: New("a"), buckets: []Bucket{runs(0, 1000, 100, 8)}, change: Transition, reason: "8 runs of 10 consecutive failed calls over 30s (1000 calls)"},
		{name: "runs below the minimum calls still count", c: New("a"), r: RateSettings{MinimumCalls: 1000}, buckets: []Bucket{runs(0, 100, 100, 5)}, change: Transition, reason: "5 runs"},
		{name: "hard outage in 100 environments", c: New("a"), buckets: []Bucket{runs(5*time.Second, 50000, 0, 0), runs(0, 11000, 1000, 100)}, change: Transition, reason: "100 runs"},
		{name: "open circuit untouched", c: Circuit{ID: "a", State: Open, RetryAt: now.Add(time.Second)}, buckets: []Bucket{b(0, 100, 100, 0)}, change: NoChange},
		{name: "half-open circuit untouched", c: Circuit{ID: "a", State: HalfOpen}, buckets: []Bucket{b(0, 100, 100, 0)}, change: NoChange},
		{name: "empty state reads as closed", c: Circuit{ID: "a"}, buckets: []Bucket{b(0, 30, 30, 0)}, change: Transition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideRate(tt.c, Settings{}, tt.r, tt.buckets, now)
			if d.Change != tt.change {
				t.Fatalf("Change = %s, want %s", d.Change, tt.change)
			}
			if d.Change != Transition {
				return
			}
			n := d.Next
			if n.State != Open || n.Version != tt.c.Version+1 || n.OpenCount != tt.c.OpenCount+1 || !n.RetryAt.Equal(now.Add(30*time.Second)) || n.PreviousState != Closed {
				t.Errorf("Next = %+v", n)
			}
			if !strings.Contains(n.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", n.Reason, tt.reason)
			}
		})
	}
}

func TestDecideCooldownOver(t *testing.T) {
	tests := []struct {
		name   string
		c      Circuit
		change Change
	}{
		{"open, cool-down over", Circuit{ID: "a", State: Open, OpenCount: 2, RetryAt: t0, Version: 3}, Transition},
		{"open, cooling down", Circuit{ID: "a", State: Open, RetryAt: t0.Add(time.Millisecond)}, NoChange},
		{"open without retryAt", Circuit{ID: "a", State: Open}, NoChange},
		{"closed", New("a"), NoChange},
		{"half-open", Circuit{ID: "a", State: HalfOpen}, NoChange},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideCooldownOver(tt.c, t0)
			if d.Change != tt.change {
				t.Fatalf("Change = %s, want %s", d.Change, tt.change)
			}
			if d.Change == Transition {
				n := d.Next
				if n.State != HalfOpen || n.ConsecutiveSuccesses != 0 || n.OpenCount != tt.c.OpenCount || !n.RetryAt.IsZero() || n.Version != tt.c.Version+1 {
					t.Errorf("Next = %+v", n)
				}
			}
		})
	}
}

func TestDecideProbe(t *testing.T) {
	half := Circuit{ID: "a", State: HalfOpen, Version: 5, OpenCount: 1}
	tests := []struct {
		name    string
		c       Circuit
		s       Settings
		version int64
		ok      bool
		change  Change
		state   State
	}{
		{"success counts", half, Settings{}, 5, true, CounterUpdate, HalfOpen},
		{"success closes at threshold 1", half, Settings{SuccessThreshold: 1}, 5, true, Transition, Closed},
		{"second success closes", Circuit{ID: "a", State: HalfOpen, Version: 5, ConsecutiveSuccesses: 1}, Settings{}, 5, true, Transition, Closed},
		{"failure reopens", half, Settings{}, 5, false, Transition, Open},
		{"lease from an older version ignored", half, Settings{}, 4, false, NoChange, HalfOpen},
		{"circuit no longer half-open", Circuit{ID: "a", State: Closed, Version: 5}, Settings{}, 5, false, NoChange, Closed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DecideProbe(tt.c, tt.s, tt.version, CheckResult{OK: tt.ok, Reason: "probe"}, t0)
			if d.Change != tt.change || d.Next.State != tt.state {
				t.Fatalf("got %s to %s, want %s to %s", d.Change, d.Next.State, tt.change, tt.state)
			}
		})
	}
}

func TestRampShare(t *testing.T) {
	closed := Circuit{ID: "s", State: Closed, PreviousState: HalfOpen, UpdatedAt: t0}
	tests := []struct {
		name string
		c    Circuit
		ramp time.Duration
		at   time.Duration
		want float64
	}{
		{"off", closed, 0, 0, 1},
		{"at the close", closed, 10 * time.Second, 0, 0.1},
		{"half way", closed, 10 * time.Second, 5 * time.Second, 0.55},
		{"at the end", closed, 10 * time.Second, 10 * time.Second, 1},
		{"closed by an operator or never opened", Circuit{ID: "s", State: Closed, PreviousState: Open, UpdatedAt: t0}, 10 * time.Second, 0, 1},
		{"open", Circuit{ID: "s", State: Open, PreviousState: HalfOpen, UpdatedAt: t0}, 10 * time.Second, 0, 1},
	}
	for _, tt := range tests {
		if got := RampShare(tt.c, tt.ramp, t0.Add(tt.at)); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: RampShare = %g, want %g", tt.name, got, tt.want)
		}
	}
}
