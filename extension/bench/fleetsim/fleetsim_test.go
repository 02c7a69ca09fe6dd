package fleetsim

import (
	"context"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/ddbmodel"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// onModel runs cfg against a fresh DynamoDB model.
func onModel(t *testing.T, cfg Config) (Result, *ddbmodel.Table) {
	t.Helper()
	res, m, err := RunOnModel(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	logResult(t, res)
	return res, m
}

func logResult(t *testing.T, res Result) {
	t.Helper()
	for _, p := range res.Phases {
		t.Logf("%-10s calls %7d sent %7d refused %6d failed %6d opened %d | RU %8.1f WU %6.0f throttled %d | busy s %d",
			p.Name, p.Calls, p.Sent, p.Refused, p.Failed, p.Opened, p.ReadUnits, p.WriteUnits, p.Throttled, p.BusySeconds)
	}
	t.Logf("first failure→refusing every call %s median, %s p99, %s max (never %d); calls to the failing service > %s after the env's first failure: %d (trials %d, probes %d)",
		res.RefusingAllMedian, res.RefusingAllP99, res.RefusingAll, res.NeverRefusingAll, LateAfter, res.LateSent, res.LateTrials, res.LateProbes)
	t.Logf("seen→refused %s median, %s p99, %s max (never %d), fleet trip %s, fleet refusal %s after it, recovered %s; peak item reads %.1f/s (%s), writes %.0f/s (%s)",
		res.SeenRefusalMedian, res.SeenRefusalP99, res.SeenRefusal, res.NeverRefused, res.FleetTrip, res.FleetRefusal, res.Recovered, res.PeakItemReads, res.PeakReadItem, res.PeakItemWrites, res.PeakWriteItem)
}

// A small fleet at 0.8 × the failure-rate threshold stays CLOSED, no item
// is throttled, and a hard outage is refused within a second by every
// environment that sees it.
func TestSmallFleetNoFalseTripAndRefusesOutage(t *testing.T) {
	thr := policy.Policy{}.Rates().FailureRateThreshold / 100
	res, m := onModel(t, Config{
		Envs: 50, Rate: 20, Seed: 7,
		Phases: []Phase{
			{Name: "healthy", Duration: 20 * time.Second},
			{Name: "0.8×thr", Duration: 60 * time.Second, FailureRate: 0.8 * thr},
			{Name: "outage", Duration: 10 * time.Second, FailureRate: 1},
		},
	})
	if n := res.FalseTrips(0.8*thr + 1e-9); n > 0 {
		t.Errorf("%d fleet-wide trips at %.0f %% errors, want none", n, 80*thr)
	}
	if tot := m.Total(); tot.ThrottledReads+tot.ThrottledWrites > 0 {
		t.Errorf("%d reads and %d writes throttled, want none", tot.ThrottledReads, tot.ThrottledWrites)
	}
	if res.NeverRefused > 0 {
		t.Errorf("%d environments saw the outage and never refused", res.NeverRefused)
	}
	// Ten failed calls at 20 calls/s take 0.5 s on average; an
	// environment whose calls come slower learns of the fleet-wide trip
	// within a refresh.
	if res.SeenRefusalMedian > time.Second || res.SeenRefusal > 2*time.Second {
		t.Errorf("environments refused %s (median) and %s (slowest) after their first failed call, want at most 1s and 2s", res.SeenRefusalMedian, res.SeenRefusal)
	}
	// Every environment that saw the outage refused every call within a
	// second of its first failure, and none of its ordinary calls reached
	// the failed service later.
	if res.NeverRefusingAll > 0 || res.RefusingAll > time.Second {
		t.Errorf("slowest environment refused every call %s after its first failure (%d never), want at most 1s", res.RefusingAll, res.NeverRefusingAll)
	}
	if res.LateSent > 0 {
		t.Errorf("%d calls reached the failed service more than %s after their environment's first failure, want none", res.LateSent, LateAfter)
	}
}

// The model's counts agree with dynalite's for the same simulation, and
// the model charges what a counter of calls charges for small items.
func TestModelAgreesWithDynalite(t *testing.T) {
	cfg := Config{
		Envs: 20, Rate: 5, Seed: 3,
		Phases: []Phase{
			{Name: "healthy", Duration: 10 * time.Second},
			{Name: "30%", Duration: 20 * time.Second, FailureRate: 0.3},
			{Name: "outage", Duration: 10 * time.Second, FailureRate: 1},
		},
	}
	var now atomic.Int64
	m := ddbmodel.New("fleet", func() time.Time { return time.Unix(0, now.Load()) })
	onM := NewCounter(m)
	c := cfg
	c.DB, c.Table, c.SetClock = onM, "fleet", func(t time.Time) { now.Store(t.UnixNano()) }
	if _, err := Run(context.Background(), c, m.Usage); err != nil {
		t.Fatal(err)
	}
	srv := dynalite.Start(t)
	onD := NewCounter(srv.Client())
	c = cfg
	c.DB, c.Table = onD, srv.NewTable(t)
	if _, err := Run(context.Background(), c, onD.Usage); err != nil {
		t.Fatal(err)
	}
	mo, do := onM.Ops(), onD.Ops()
	t.Logf("model   %+v", mo)
	t.Logf("dynalite %+v", do)
	tot := m.Total()
	if tot.ReadUnits != mo.ReadUnits || tot.WriteUnits != mo.WriteUnits {
		t.Errorf("model charged %.1f RU and %.1f WU, its calls %.1f RU and %.1f WU", tot.ReadUnits, tot.WriteUnits, mo.ReadUnits, mo.WriteUnits)
	}
	near := func(name string, a, b float64) {
		if math.Abs(a-b) > 0.1*math.Max(a, b)+3 {
			t.Errorf("%s: model %.1f, dynalite %.1f", name, a, b)
		}
	}
	near("read units", mo.ReadUnits, do.ReadUnits)
	near("write units", mo.WriteUnits, do.WriteUnits)
	near("keys read", float64(mo.Keys), float64(do.Keys))
}

// The hour's mode (Steady), small: at 0.8 × the failure-rate threshold no
// evaluation trips the circuit, and the smallest tail probability reached
// stays far from the level; at the threshold itself (the control) the same
// run trips it, so the simulation can show a trip.
func TestSteadyNoTripBelowAndTripAtThreshold(t *testing.T) {
	thr := policy.Policy{}.Rates().FailureRateThreshold / 100
	for _, tc := range []struct {
		name string
		p    float64
		trip bool
	}{
		{"0.8 × threshold", 0.8 * thr, false},
		{"control: at the threshold", thr, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := onModel(t, Steady(100, 20, tc.p, 40*time.Second, 11))
			ev := res.Evidence
			t.Logf("%d evaluations, most evidence: runs %.2f nats, rate %.2f nats (tail ≥ %.2g); highest window failure rate %.3f",
				ev.Evaluations, ev.MaxRuns, ev.MaxRate, ev.MinTail(), ev.MaxFailureRate)
			if ev.Evaluations == 0 {
				t.Fatal("no window evaluated")
			}
			opened := res.Phases[1].Opened
			if tc.trip && opened == 0 {
				t.Errorf("control: no fleet-wide trip at %.0f %% errors; the simulation cannot show one", 100*tc.p)
			}
			if !tc.trip && opened > 0 {
				t.Errorf("%d fleet-wide trips at %.0f %% errors, want none", opened, 100*tc.p)
			}
			if !tc.trip && max(ev.MaxRuns, ev.MaxRate) >= circuit.EvidenceNeeded() {
				t.Errorf("an evaluation reached %.1f nats, the level is %.1f", max(ev.MaxRuns, ev.MaxRate), circuit.EvidenceNeeded())
			}
		})
	}
}

// A young fleet failing at 0.8 × the failure-rate threshold from its
// first call stays CLOSED: no environment writes a bucket before it ends,
// so no window read holds a sample of buckets chosen by their outcome
// (the first environments with an unlucky run). The control at twice
// the threshold's distance above (60 %) trips, so the run can show one.
func TestYoungFleetNoTripBelowThreshold(t *testing.T) {
	thr := policy.Policy{}.Rates().FailureRateThreshold / 100
	for _, tc := range []struct {
		name string
		p    float64
		trip bool
	}{
		{"0.8 × threshold from the first call", 0.8 * thr, false},
		{"control: 1.2 × threshold", 1.2 * thr, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := onModel(t, Config{
				Envs: 500, Rate: 20, Seed: 5, Tick: SteadyTick,
				Phases: []Phase{{Name: "failing", Duration: 20 * time.Second, FailureRate: tc.p}},
			})
			opened := res.Phases[0].Opened
			if tc.trip && opened == 0 {
				t.Errorf("control: no fleet-wide trip at %.0f %% errors; the simulation cannot show one", 100*tc.p)
			}
			if !tc.trip && opened > 0 {
				t.Errorf("%d fleet-wide trips at %.0f %% errors, first after %s, want none", opened, 100*tc.p, res.Phases[0].FirstOpen)
			}
		})
	}
}
