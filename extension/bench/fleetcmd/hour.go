package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/fleetsim"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// hour runs the long simulation of make bench-fleet-hour: envs
// environments at rate calls/s for length at 0.8 × the failure-rate
// threshold, then the control, the same fleet at the threshold itself,
// within budget of wall time (three quarters for the first run; 0: no
// limit). Each run stops where its share of the budget ends; the control
// runs as long as the first got. It prints one table and fails (exit 1) when the first run
// tripped or the control did not.
func hour(envs int, rate float64, length, budget time.Duration, seed uint64) int {
	debug.SetGCPercent(400) // a few hundred MB more heap, a fifth less time
	began := time.Now()
	type run struct {
		name string
		p    float64
		res  fleetsim.Result
		took time.Duration
	}
	runs := []*run{{name: "0.8 × threshold", p: 0.8 * threshold}, {name: "control: at the threshold", p: threshold}}
	for i, r := range runs {
		cfg := fleetsim.Steady(envs, rate, r.p, length, seed)
		if budget > 0 {
			cfg.Deadline = began.Add(budget * 3 / 4)
		}
		if i > 0 {
			got := runs[0].res.Simulated - cfg.Phases[0].Duration
			cfg.Phases[1].Duration = max(got, time.Second)
			if budget > 0 {
				cfg.Deadline = began.Add(budget)
			}
		}
		t := time.Now()
		res, _, err := fleetsim.RunOnModel(context.Background(), cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fleetcmd: %s: %v\n", r.name, err)
			return 1
		}
		r.res, r.took = res, time.Since(t)
		fmt.Fprintf(os.Stderr, "fleetcmd: hour %s: %s simulated in %s\n", r.name, res.Simulated-cfg.Phases[0].Duration, r.took.Round(time.Second))
	}
	fmt.Printf("Simulated on %s/%s, %d CPUs, %s, seed %d; %d environments at %g calls/s each (Poisson), independent errors; after %s healthy (a full window), the error rate held for up to %s, within %s of wall time (ticks of %s; see docs/benchmarks.md).\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), seed, envs, rate, fleetsim.Steady(1, 1, 0, 0, 0).Phases[0].Duration, length, budget, fleetsim.SteadyTick)
	fmt.Println("| Errors | Simulated at that rate | Calls | Fleet-wide trips | Evaluations | Most evidence: runs · rate rule (nats; trips from " + strconv.FormatFloat(circuit.EvidenceNeeded(), 'f', 1, 64) + ") | Smallest tail probability reached (trips from 1e-10) | Highest window failure rate | Calls refused (local trips) | Throttled requests | Wall time |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		p := r.res.Phases[1]
		ev := r.res.Evidence
		at := r.res.Simulated - r.res.Phases[0].Duration
		fmt.Printf("| %s (%.0f %%) | %s (%.0f %% of %s) | %d | %d | %d | %.2f · %.2f | %.2g | %.2f %% | %s | %d | %s |\n",
			r.name, 100*r.p, at.Round(time.Second), 100*at.Seconds()/length.Seconds(), length, p.Calls, p.Opened, ev.Evaluations,
			ev.MaxRuns, ev.MaxRate, ev.MinTail(), 100*ev.MaxFailureRate, pctPrec(float64(p.Refused)/float64(max(p.Calls, 1))), p.Throttled, r.took.Round(time.Second))
	}
	fmt.Printf("\nThe whole run took %s.\n", time.Since(began).Round(time.Second))
	if runs[0].res.Phases[1].Opened > 0 || runs[1].res.Phases[1].Opened == 0 {
		fmt.Fprintln(os.Stderr, "fleetcmd: hour: a fleet-wide trip below the threshold, or none in the control")
		return 1
	}
	return 0
}
