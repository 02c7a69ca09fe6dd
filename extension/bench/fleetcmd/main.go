// Command fleetcmd simulates fleets of 1 to 10,000 execution environments
// of one guarded function (package fleetsim, against the DynamoDB model of
// package ddbmodel) and prints the tables of docs/benchmarks.md:
//
//   - by fleet size, at 20 calls/s per environment: read units per busy
//     environment-second, the hottest item's reads and writes per second
//     against DynamoDB's per-item limits, throttled requests, fleet-wide
//     trips at 0.8 × the failure-rate threshold, the time from an
//     environment's first failed call to its first refusal in a hard
//     outage, and from the fleet-wide trip to the last environment's
//     refusal; with the flush per invocation (the baseline, one switch)
//     beside it at 100 and 1,000 environments;
//   - by downstream behaviour, at 1,000 environments;
//   - by traffic shape, with DynamoDB's cost against Lambda's request fee.
//
// Every row runs with several seeds; cells show the median and, where the
// seeds differ, the range. It also writes an SVG chart (-svg). With -hour
// it runs instead one long simulation at a steady 0.8 × the failure-rate
// threshold, and its control at the threshold (see hour). Run it from
// the repository root with "go run ./extension/bench/fleetcmd" (make
// bench-fleet): a few minutes on 2 CPUs, offline.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/ddbmodel"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/fleetsim"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
)

// List prices, us-east-1 (aws.amazon.com/dynamodb/pricing/on-demand and
// aws.amazon.com/lambda/pricing).
const (
	dollarsPerMillionWRU      = 0.625
	dollarsPerMillionRRU      = 0.125
	dollarsPerMillionRequests = 0.20 // Lambda
)

var threshold = policy.Policy{}.Rates().FailureRateThreshold / 100

// job is one simulation.
type job struct {
	table, row string
	cfg        fleetsim.Config
	res        fleetsim.Result
	took       time.Duration
	err        error
}

func main() {
	sizesFlag := flag.String("envs", "1,100,1000,5000,10000", "fleet sizes, comma-separated")
	seeds := flag.Int("seeds", 3, "seeds per row")
	bigSeeds := flag.Int("big-seeds", 2, "seeds per row of 5,000 environments or more")
	casesEnvs := flag.Int("cases-envs", 1000, "environments in the downstream and traffic tables")
	svg := flag.String("svg", "docs/fleet.svg", "where to write the chart (empty: none)")
	hourRun := flag.Bool("hour", false, "instead of the tables: the long run at a steady 0.8 × the threshold, and its control (make bench-fleet-hour)")
	hourEnvs := flag.Int("hour-envs", 10000, "environments of -hour")
	hourRate := flag.Float64("hour-rate", 20, "calls/s per environment of -hour")
	hourLength := flag.Duration("hour-length", time.Hour, "simulated time at the error rate of -hour")
	hourBudget := flag.Duration("hour-budget", 14*time.Minute, "wall time for -hour: each run stops where its share ends (0: no limit)")
	hourSeed := flag.Uint64("hour-seed", 1, "seed of -hour")
	flag.Parse()
	if *hourRun {
		os.Exit(hour(*hourEnvs, *hourRate, *hourLength, *hourBudget, *hourSeed))
	}
	var sizes []int
	for _, f := range strings.Split(*sizesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "fleetcmd: bad fleet size %q\n", f)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	start := time.Now()
	jobs := plan(sizes, *seeds, *bigSeeds, *casesEnvs)
	runAll(jobs)
	for _, j := range jobs {
		if j.err != nil {
			fmt.Fprintf(os.Stderr, "fleetcmd: %s %s: %v\n", j.table, j.row, j.err)
			os.Exit(1)
		}
	}
	printTables(jobs, sizes, *seeds, *bigSeeds, *casesEnvs, time.Since(start))
	if *svg != "" {
		if err := os.WriteFile(*svg, chart(jobs, sizes), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "fleetcmd:", err)
			os.Exit(1)
		}
	}
}

// Scripts: the downstream's phases.
var (
	scaleScript = []fleetsim.Phase{
		{Name: "healthy", Duration: 10 * time.Second},
		{Name: "0.8×threshold", Duration: 20 * time.Second, FailureRate: 0.8 * threshold},
		{Name: "outage", Duration: 10 * time.Second, FailureRate: 1},
	}
	rampScript = []fleetsim.Phase{
		{Name: "healthy", Duration: 5 * time.Second},
		{Name: "outage", Duration: 10 * time.Second, FailureRate: 1},
		{Name: "recovery", Duration: 45 * time.Second},
	}
	cases = []fleetsim.Phase{
		{Name: "10 % errors", FailureRate: 0.10},
		{Name: "30 % errors", FailureRate: 0.30},
		{Name: "40 % errors (0.8 × threshold)", FailureRate: 0.8 * threshold},
		{Name: "60 % errors", FailureRate: 0.60},
		{Name: "hard outage", FailureRate: 1},
		{Name: "slow: every call times out (3 s)", Slow: true},
		{Name: "flapping: 5 s down, 5 s up", Flap: 5 * time.Second},
	}
	traffic = []struct {
		name string
		rate float64
	}{
		{"20 calls/s", 20},
		{"1 call/s", 1},
		{"sparse: 1 call per 30 s", 1.0 / 30},
	}
)

func plan(sizes []int, seeds, bigSeeds, casesEnvs int) []*job {
	var jobs []*job
	add := func(table, row string, cfg fleetsim.Config) {
		n := seeds
		if cfg.Envs >= 5000 {
			n = bigSeeds
		}
		for s := range n {
			c := cfg
			c.Seed = uint64(s + 1)
			jobs = append(jobs, &job{table: table, row: row, cfg: c})
		}
	}
	for _, n := range sizes {
		add("scale", strconv.Itoa(n), fleetsim.Config{Envs: n, Rate: 20, Phases: scaleScript})
		if n == 100 || n == 1000 {
			add("scale-baseline", strconv.Itoa(n), fleetsim.Config{Envs: n, Rate: 20, Phases: scaleScript, PerInvocationFlush: true})
		}
	}
	for _, c := range cases {
		c.Duration = 30 * time.Second
		add("cases", c.Name, fleetsim.Config{Envs: casesEnvs, Rate: 20, Phases: []fleetsim.Phase{
			{Name: "healthy", Duration: 5 * time.Second}, c,
		}})
	}
	for _, ramp := range []time.Duration{0, 30 * time.Second} {
		name := "off"
		if ramp > 0 {
			name = ramp.String()
		}
		add("ramp", name, fleetsim.Config{Envs: casesEnvs, Rate: 20, Phases: rampScript,
			Policy: policy.Policy{Passive: circuit.RateSettings{RecoveryRamp: ramp}}})
	}
	for _, tr := range traffic {
		add("traffic", tr.name, fleetsim.Config{Envs: casesEnvs, Rate: tr.rate, Phases: []fleetsim.Phase{
			{Name: "healthy", Duration: 40 * time.Second},
			{Name: "outage", Duration: 20 * time.Second, FailureRate: 1},
		}})
	}
	// Largest first: they take longest.
	slices.SortStableFunc(jobs, func(a, b *job) int { return cmp.Compare(work(b), work(a)) })
	return jobs
}

func work(j *job) float64 {
	var d time.Duration
	for _, p := range j.cfg.Phases {
		d += p.Duration
	}
	return float64(j.cfg.Envs) * j.cfg.Rate * d.Seconds()
}

// runAll runs the jobs, two at a time when the machine has the cores;
// each simulation also runs its environments on every CPU.
func runAll(jobs []*job) {
	queue := make(chan *job)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)/2) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queue {
				t := time.Now()
				j.res, _, j.err = fleetsim.RunOnModel(context.Background(), j.cfg)
				j.took = time.Since(t)
				fmt.Fprintf(os.Stderr, "fleetcmd: %s %s seed %d: %s\n", j.table, j.row, j.cfg.Seed, j.took.Round(100*time.Millisecond))
			}
		}()
	}
	for _, j := range jobs {
		queue <- j
	}
	close(queue)
	wg.Wait()
}

// rows groups the jobs of a table by row, in plan order of first sight.
func rows(jobs []*job, table string) (names []string, by map[string][]*job) {
	by = map[string][]*job{}
	for _, j := range jobs {
		if j.table != table {
			continue
		}
		if _, ok := by[j.row]; !ok {
			names = append(names, j.row)
		}
		by[j.row] = append(by[j.row], j)
	}
	return names, by
}

// cell formats the median of f over js, with the range when it differs.
func cell(js []*job, f func(*job) float64, format func(float64) string) string {
	var xs []float64
	for _, j := range js {
		if v := f(j); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return "–"
	}
	lo, mid, hi := fleetsim.Percentiles(xs)
	if format(lo) == format(hi) {
		return format(mid)
	}
	return fmt.Sprintf("%s (%s–%s)", format(mid), format(lo), format(hi))
}

func sum(js []*job, f func(*job) float64) float64 {
	s := 0.0
	for _, j := range js {
		s += f(j)
	}
	return s
}

func num(prec int) func(float64) string {
	return func(x float64) string { return strconv.FormatFloat(x, 'f', prec, 64) }
}

func pct(x float64) string { return strconv.FormatFloat(100*x, 'f', 0, 64) + " %" }

func dur(x float64) string {
	if x < 0 {
		return "never"
	}
	d := time.Duration(x)
	if d < time.Second {
		return strconv.Itoa(int(d.Milliseconds())) + " ms"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
}

// phase returns the named phase's result.
func phase(j *job, name string) fleetsim.PhaseResult {
	for _, p := range j.res.Phases {
		if p.Name == name {
			return p
		}
	}
	return fleetsim.PhaseResult{}
}

func perBusySecond(units float64, p fleetsim.PhaseResult) float64 {
	if p.BusySeconds == 0 {
		return math.NaN()
	}
	return units / float64(p.BusySeconds)
}

// costShare is DynamoDB's cost during p against Lambda's request fee for
// its invocations.
func costShare(p fleetsim.PhaseResult) float64 {
	if p.Invocations == 0 {
		return math.NaN()
	}
	db := p.ReadUnits*dollarsPerMillionRRU + p.WriteUnits*dollarsPerMillionWRU
	return db / (float64(p.Invocations) * dollarsPerMillionRequests)
}

func printTables(jobs []*job, sizes []int, seeds, bigSeeds, casesEnvs int, took time.Duration) {
	fmt.Printf("Simulated on %s/%s, %d CPUs, %s; %d seeds per row (%d at 5,000 environments and more), median with the range in brackets; DynamoDB modelled per item (ddbmodel); the whole run took %s.\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), seeds, bigSeeds, took.Round(time.Second))

	fmt.Println("By fleet size, 20 calls/s per environment (Poisson), one call per invocation; phases: healthy 10 s, 40 % errors (0.8 × threshold) 20 s, outage 10 s.")
	fmt.Println()
	fmt.Println("| Environments | Flush | Read units per busy env-second (healthy) | Hottest item: reads/s · writes/s (% of limit) | Throttled requests | Fleet-wide trips at 40 % | Calls refused at 40 % | First failure → refuses every call, outage (slowest env) | First failure → first refused call, outage (slowest env) | Calls to the failed service > 1 s after the env's first failure (local trial calls) | Outage → fleet-wide trip | Trip → every env refuses | DynamoDB cost vs Lambda request fee (healthy · 40 %) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, table := range []string{"scale", "scale-baseline"} {
		names, by := rows(jobs, table)
		for _, n := range names {
			js := by[n]
			flush := "write-free when healthy"
			if table == "scale-baseline" {
				flush = "per invocation (baseline)"
			}
			hot := cell(js, func(j *job) float64 { return j.res.PeakItemReads }, num(0)) + " (" +
				cell(js, func(j *job) float64 { return j.res.PeakItemReads / ddbmodel.ItemReadLimit }, pct) + ") · " +
				cell(js, func(j *job) float64 { return j.res.PeakItemWrites }, num(0)) + " (" +
				cell(js, func(j *job) float64 { return j.res.PeakItemWrites / ddbmodel.ItemWriteLimit }, pct) + ")"
			fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s · %s |\n", n, flush,
				cell(js, func(j *job) float64 { p := phase(j, "healthy"); return perBusySecond(p.ReadUnits, p) }, num(2)),
				hot,
				cell(js, func(j *job) float64 { return float64(throttled(j)) }, num(0)),
				fmt.Sprintf("%.0f in %d runs", sum(js, func(j *job) float64 { return float64(j.res.FalseTrips(0.8*threshold + 1e-9)) }), len(js)),
				cell(js, func(j *job) float64 {
					p := phase(j, "0.8×threshold")
					return float64(p.Refused) / float64(max(p.Calls, 1))
				}, pctPrec),
				cell(js, refusingAll, dur),
				cell(js, func(j *job) float64 { return neverAware(j) }, dur),
				late(js),
				cell(js, func(j *job) float64 { return float64(j.res.FleetTrip) }, dur),
				cell(js, func(j *job) float64 { return float64(j.res.FleetRefusal) }, dur),
				cell(js, func(j *job) float64 { return costShare(phase(j, "healthy")) }, pctPrec),
				cell(js, func(j *job) float64 { return costShare(phase(j, "0.8×threshold")) }, pctPrec))
		}
	}
	fmt.Println()

	fmt.Printf("By downstream behaviour, %d environments at 20 calls/s; 5 s healthy, then 30 s of the case.\n\n", casesEnvs)
	fmt.Println("| Downstream | Fleet-wide trips | Calls refused | Calls sent while it fails, per env | First failure → refuses every call (slowest env) | First failure → first refused call (slowest env) | Calls to it > 1 s after the env's first failure (local trial calls) | Envs that never refused | Case start → fleet-wide trip | Read · write units per busy env-second | Throttled |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	names, by := rows(jobs, "cases")
	for _, n := range names {
		js := by[n]
		last := func(j *job) fleetsim.PhaseResult { return j.res.Phases[len(j.res.Phases)-1] }
		failing := func(f func(*job) float64) func(*job) float64 {
			return func(j *job) float64 {
				if p := last(j); p.FailureRate < 1 && !p.Slow && p.Flap == 0 {
					return math.NaN() // no failing phase: nothing to refuse
				}
				return f(j)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s · %s | %s |\n", n,
			cell(js, func(j *job) float64 { return float64(last(j).Opened) }, num(0)),
			cell(js, func(j *job) float64 { p := last(j); return float64(p.Refused) / float64(max(p.Calls, 1)) }, pctPrec),
			cell(js, failing(func(j *job) float64 { return float64(last(j).SentDown) / float64(j.cfg.Envs) }), num(1)),
			cell(js, failing(refusingAll), dur),
			cell(js, failing(neverAware), dur),
			lateIf(js, func(j *job) bool { p := last(j); return p.FailureRate >= 1 || p.Slow || p.Flap > 0 }),
			cell(js, failing(func(j *job) float64 { return float64(j.res.NeverRefused) }), num(0)),
			cell(js, func(j *job) float64 { return float64(last(j).FirstOpen) }, dur),
			cell(js, func(j *job) float64 { p := last(j); return perBusySecond(p.ReadUnits, p) }, num(2)),
			cell(js, func(j *job) float64 { p := last(j); return perBusySecond(p.WriteUnits, p) }, num(2)),
			cell(js, func(j *job) float64 { return float64(throttled(j)) }, num(0)))
	}
	fmt.Println()

	fmt.Printf("By traffic shape, %d environments, one call per invocation; 40 s healthy, then a 20 s outage.\n\n", casesEnvs)
	fmt.Println("| Traffic per environment | Read units per busy env-second (healthy) | DynamoDB cost vs Lambda request fee (healthy) | $ per million calls, DynamoDB (healthy) | First failure → refuses every call (slowest env) | First failure → first refused call (slowest env) | Calls to it > 1 s after the env's first failure (local trial calls) | Outage → fleet-wide trip | Trip → every env refuses |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	names, by = rows(jobs, "traffic")
	for _, n := range names {
		js := by[n]
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n,
			cell(js, func(j *job) float64 { p := phase(j, "healthy"); return perBusySecond(p.ReadUnits, p) }, num(2)),
			cell(js, func(j *job) float64 { return costShare(phase(j, "healthy")) }, pctPrec),
			cell(js, func(j *job) float64 {
				p := phase(j, "healthy")
				return (p.ReadUnits*dollarsPerMillionRRU + p.WriteUnits*dollarsPerMillionWRU) / float64(max(p.Calls, 1))
			}, func(x float64) string { return "$" + strconv.FormatFloat(x, 'f', 3, 64) }),
			cell(js, refusingAll, dur),
			cell(js, func(j *job) float64 { return neverAware(j) }, dur),
			late(js),
			cell(js, func(j *job) float64 { return float64(j.res.FleetTrip) }, dur),
			cell(js, func(j *job) float64 { return float64(j.res.FleetRefusal) }, dur))
	}
	fmt.Println()

	fmt.Printf("Recovery, %d environments at 20 calls/s (%d calls/s when all flow): 5 s healthy, a 10 s outage, then recovery; calls sent to the downstream in the seconds after the circuit closed again.\n\n", casesEnvs, 20*casesEnvs)
	fmt.Println("| `recoveryRamp` | Outage end → CLOSED | Calls in the second of the close | Peak second in the first 5 s | Calls in the first 5 s | Calls in the first 15 s |")
	fmt.Println("|---|---|---|---|---|---|")
	names, by = rows(jobs, "ramp")
	for _, n := range names {
		js := by[n]
		after := func(f func([]int64) float64) func(*job) float64 {
			return func(j *job) float64 {
				if len(j.res.AfterClose) == 0 {
					return math.NaN()
				}
				return f(j.res.AfterClose)
			}
		}
		first := func(k int) func([]int64) float64 {
			return func(xs []int64) float64 {
				s := int64(0)
				for i := 0; i < k && i < len(xs); i++ {
					s += xs[i]
				}
				return float64(s)
			}
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s |\n", n,
			cell(js, func(j *job) float64 { return float64(j.res.Recovered) }, dur),
			cell(js, after(first(1)), num(0)),
			cell(js, after(func(xs []int64) float64 { return float64(slices.Max(xs[:min(5, len(xs))])) }), num(0)),
			cell(js, after(first(5)), num(0)),
			cell(js, after(first(15)), num(0)))
	}
	fmt.Println()
	fmt.Printf("Prices: DynamoDB on-demand, us-east-1: $%.3f per million read request units, $%.3f per million write request units; Lambda: $%.2f per million requests. Per-item limits: %.0f read units/s, %.0f write units/s.\n",
		dollarsPerMillionRRU, dollarsPerMillionWRU, dollarsPerMillionRequests, ddbmodel.ItemReadLimit, ddbmodel.ItemWriteLimit)
}

func pctPrec(x float64) string {
	switch {
	case x == 0:
		return "0 %"
	case x < 0.01:
		return strconv.FormatFloat(100*x, 'f', 2, 64) + " %"
	case x < 0.1:
		return strconv.FormatFloat(100*x, 'f', 1, 64) + " %"
	}
	return strconv.FormatFloat(100*x, 'f', 0, 64) + " %"
}

func throttled(j *job) int64 {
	var n int64
	for _, p := range j.res.Phases {
		n += p.Throttled
	}
	return n
}

// neverAware is the slowest environment's time from its first failed call
// to its first refusal, or -1 (never) when one never refused.
func neverAware(j *job) float64 {
	if j.res.NeverRefused > 0 {
		return -1
	}
	return float64(j.res.SeenRefusal)
}

// refusingAll is the slowest environment's time from its first failed
// call to the first moment its breaker refused every call, or -1 (never)
// when one never did.
func refusingAll(j *job) float64 {
	if j.res.NeverRefusingAll > 0 {
		return -1
	}
	return float64(j.res.RefusingAll)
}

// late formats the calls sent to the failed downstream more than
// fleetsim.LateAfter after their environment's first failure, summed over
// the seeds, with the local trial calls in brackets.
func late(js []*job) string { return lateIf(js, func(*job) bool { return true }) }

// lateIf is late over the jobs for which failing holds; "–" when none.
func lateIf(js []*job, failing func(*job) bool) string {
	var n, trials int64
	seen := false
	for _, j := range js {
		if failing(j) {
			seen = true
			n += j.res.LateSent
			trials += j.res.LateTrials
		}
	}
	if !seen {
		return "–"
	}
	return fmt.Sprintf("%d (%d) in %d runs", n, trials, len(js))
}
