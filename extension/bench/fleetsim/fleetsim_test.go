package fleetsim

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

func simulate(t *testing.T, cfg Config) Result {
	t.Helper()
	srv := dynalite.Start(t)
	cfg.DB, cfg.Table = srv.Client(), srv.NewTable(t)
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Phases {
		t.Logf("%-8s calls %6d sent %6d refused %6d failed %6d opened %d | reads %5d writes %5d | true rate %.3f seen %.3f",
			p.Name, p.Calls, p.Sent, p.Refused, p.Failed, p.Opened, p.Ops.Reads(), p.Ops.Writes(), p.TrueRate, p.SeenRate)
	}
	t.Logf("first refusal %s, fleet-wide %s, peak %d writes/s on %s", res.FirstRefusal, res.FleetRefusal, res.PeakItemWrites, res.PeakItem)
	return res
}

// today is the extension before healthy circuits became write-free: a
// flush per invocation and no fast trip.
var today = policy.Policy{Passive: circuit.RateSettings{FastTripFailures: circuit.MaxFastTripFailures}}

// A healthy fleet writes nothing, however often it flushes; the flush
// per invocation wrote once per invocation.
func TestHealthyFleetWritesNothing(t *testing.T) {
	for _, tc := range []struct {
		name       string
		everyFlush bool
	}{{"write-free", false}, {"per-invocation flush", true}} {
		t.Run(tc.name, func(t *testing.T) {
			res := simulate(t, Config{Envs: 4, Rate: 20, CallsPerInvoke: 1, EveryFlush: tc.everyFlush, Seed: 1,
				Phases: []Phase{{Name: "healthy", Duration: 40 * time.Second}}})
			p := res.Phases[0]
			if p.Calls != 4*20*40 || p.Sent != p.Calls {
				t.Fatalf("calls %d sent %d; want 3200 all sent", p.Calls, p.Sent)
			}
			if !tc.everyFlush && p.Ops.Writes() != 0 {
				t.Fatalf("%d writes on a healthy circuit, want 0", p.Ops.Writes())
			}
			// One write per invocation, bar the first of each environment.
			if tc.everyFlush && p.Ops.Writes() < p.Calls-4 {
				t.Fatalf("%d writes for %d invocations", p.Ops.Writes(), p.Calls)
			}
			// Reads: about one refresh per environment and second.
			if r := p.Ops.Reads(); r > 4*41+8 {
				t.Fatalf("%d reads, want at most one per environment and refresh interval", r)
			}
		})
	}
}

// No false trips under 1 % and 10 % random failures for 10 simulated
// minutes with the defaults, and the rate the table holds is the true
// rate.
func TestNoFalseTrips(t *testing.T) {
	for _, fr := range []float64{0.01, 0.10} {
		res := simulate(t, Config{Envs: 10, Rate: 20, CallsPerInvoke: 5, Seed: uint64(fr * 1000),
			Phases: []Phase{{Name: "errors", Duration: 10 * time.Minute, FailureRate: fr}}})
		p := res.Phases[0]
		if p.Opened != 0 || p.Refused != 0 {
			t.Fatalf("at %.0f%% failures: opened %d times, %d calls refused", 100*fr, p.Opened, p.Refused)
		}
		if math.Abs(p.SeenRate-p.TrueRate) > 0.01 || math.Abs(p.TrueRate-fr) > 0.02 {
			t.Errorf("at %.0f%%: the table's window holds rate %.4f, the calls had %.4f", 100*fr, p.SeenRate, p.TrueRate)
		}
		// Each environment writes each bucket about once: not per invocation.
		buckets := int64(10 * 10 * 60 / 5)
		if w := p.Ops.Writes(); w > buckets+buckets/10 {
			t.Errorf("at %.0f%%: %d writes, want about one per environment and bucket (%d)", 100*fr, w, buckets)
		}
	}
}

// Under 60 % failures the circuit opens within the window, by the rate
// alone too (fast trip off).
func TestTripsAtSixtyPercent(t *testing.T) {
	for _, tc := range []struct {
		name string
		pol  policy.Policy
	}{{"defaults", policy.Policy{}}, {"rate alone", policy.Policy{Passive: circuit.RateSettings{FastTripFailures: circuit.MaxFastTripFailures}}}} {
		t.Run(tc.name, func(t *testing.T) {
			res := simulate(t, Config{Envs: 5, Rate: 20, CallsPerInvoke: 5, Seed: 7, Policy: tc.pol,
				Phases: []Phase{
					{Name: "healthy", Duration: 40 * time.Second},
					{Name: "60%", Duration: 30 * time.Second, FailureRate: 0.6},
				}})
			if res.Phases[0].Opened != 0 || res.Phases[1].Opened != 1 {
				t.Fatalf("opened %d times while healthy and %d times at 60%%; want once within the 30 s window", res.Phases[0].Opened, res.Phases[1].Opened)
			}
		})
	}
}

// After a long healthy period, a hard failure is refused within a second
// where it was seen at 20 calls/s, and in every other environment within
// one refresh interval more. Without the fast trip (today) it took the
// rate's time.
func TestHardFailureRefusedWithinASecond(t *testing.T) {
	phases := []Phase{
		{Name: "healthy", Duration: 3 * time.Minute},
		{Name: "outage", Duration: 20 * time.Second, FailureRate: 1},
	}
	res := simulate(t, Config{Envs: 3, Rate: 20, CallsPerInvoke: 1, Seed: 3, Phases: phases})
	if res.FirstRefusal < 0 || res.FirstRefusal > time.Second {
		t.Fatalf("first refusal after %s, want at most 1 s", res.FirstRefusal)
	}
	if res.FleetRefusal < 0 || res.FleetRefusal > res.FirstRefusal+time.Second+50*time.Millisecond {
		t.Fatalf("every environment refused after %s, want within one refresh interval of %s", res.FleetRefusal, res.FirstRefusal)
	}
	if sent := res.Phases[1].Sent; sent > 3*20 {
		t.Errorf("%d calls reached the failed service", sent)
	}
	old := simulate(t, Config{Envs: 3, Rate: 20, CallsPerInvoke: 1, Seed: 3, Phases: phases, EveryFlush: true, Policy: today})
	if old.FirstRefusal >= 0 && old.FirstRefusal <= time.Second {
		t.Fatalf("without the fast trip the first refusal came after %s; the test cannot tell the two apart", old.FirstRefusal)
	}
}

// Sparse traffic (one call per 10 s in each environment): once the circuit
// has opened, an environment whose first lookup is answered from its old
// value while the INVOKE's read runs sends one more call to the failed
// service; with a maximum age the lookup waits for the read and refuses.
func TestSparseTrafficOldAnswers(t *testing.T) {
	for _, tc := range []struct {
		maxAge time.Duration
		want   func(n int64) bool
	}{
		{0, func(n int64) bool { return n > 0 }},
		{2 * time.Second, func(n int64) bool { return n == 0 }},
	} {
		t.Run(fmt.Sprintf("maxAge=%s", tc.maxAge), func(t *testing.T) {
			res := simulate(t, Config{Envs: 50, Rate: 0.1, CallsPerInvoke: 1, MaxAge: tc.maxAge, LookupDuringRead: true, Seed: 1,
				Phases: []Phase{{Name: "healthy", Duration: 20 * time.Second}, {Name: "outage", Duration: 60 * time.Second, FailureRate: 1}}})
			o := res.Phases[1]
			t.Logf("maxAge %s: %d calls sent after the circuit opened", tc.maxAge, o.SentWhileOpen)
			if o.Opened == 0 {
				t.Fatalf("the circuit never opened in the outage")
			}
			if !tc.want(o.SentWhileOpen) {
				t.Errorf("%d calls sent while the table held the circuit OPEN", o.SentWhileOpen)
			}
		})
	}
}
