// Command fleetcmd simulates fleets of 1 to 500 execution environments of
// one guarded function and prints one table: DynamoDB reads and writes
// per 1,000 calls while healthy, at 10 % errors and in an outage, the time
// to the first and to the fleet-wide refusal, the calls that still reached
// the failed service, false trips, the cost per million calls at on-demand
// list prices and the peak writes per second on the hottest item. Each
// size runs twice in the same run: with the extension as it is, and with
// the flush per invocation it had before (every count written at every
// INVOKE, no fast trip), the baseline. A second table runs a fleet with
// sparse traffic (one call per 10 s in each environment) with and without
// a maximum age for cached answers (CIRCUIT_BREAKER_MAX_AGE), and counts
// the calls sent after the circuit opened because of old answers.
//
// Each environment is the extension's breaker and cache in this process
// (package fleetsim) on a simulated clock; all share one dynalite table,
// and every DynamoDB call is counted by operation. Run it from the
// repository root with "go run ./extension/bench/fleetcmd" (make
// bench-fleet; a few minutes, offline, loopback only).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/fleetsim"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// On-demand list prices, us-east-1 (aws.amazon.com/dynamodb/pricing/on-demand
// and aws.amazon.com/lambda/pricing).
const (
	dollarsPerMillionWRU      = 0.625
	dollarsPerMillionRRU      = 0.125
	dollarsPerMillionRequests = 0.20 // Lambda
	// itemWriteLimit is the most write units per second DynamoDB serves
	// on one item (one partition's limit).
	itemWriteLimit = 1000
)

func main() {
	envs := flag.String("envs", "1,10,100,500", "fleet sizes, comma-separated")
	rate := flag.Float64("rate", 20, "calls per second in each environment")
	perInvoke := flag.Int("calls-per-invoke", 20, "calls per invocation (each invocation starts with an INVOKE: refresh and flush)")
	workers := flag.Int("workers", 2, "simulations run at once, each with its own dynalite")
	seed := flag.Uint64("seed", 1, "seed of the downstream's random failures")
	sparseEnvs := flag.Int("sparse-envs", 100, "environments in the sparse-traffic runs")
	sparseEvery := flag.Duration("sparse-every", 10*time.Second, "time between calls in each environment of the sparse-traffic runs")
	flag.Parse()
	var sizes []int
	for _, f := range strings.Split(*envs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "fleetcmd: bad fleet size %q\n", f)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	if err := run(sizes, *rate, *perInvoke, *workers, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "fleetcmd:", err)
		os.Exit(1)
	}
	if err := runSparse(*sparseEnvs, *sparseEvery, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "fleetcmd:", err)
		os.Exit(1)
	}
}

// phases is the scripted downstream: healthy for longer than the window,
// then 10 % errors, a hard outage and recovery past the 30 s cool-down.
var phases = []fleetsim.Phase{
	{Name: "healthy", Duration: 35 * time.Second},
	{Name: "10% errors", Duration: 30 * time.Second, FailureRate: 0.10},
	{Name: "outage", Duration: 15 * time.Second, FailureRate: 1},
	{Name: "recovery", Duration: 40 * time.Second},
}

type job struct {
	envs     int
	baseline bool
	res      fleetsim.Result
	took     time.Duration
	err      error
}

func run(sizes []int, rate float64, perInvoke, workers int, seed uint64) error {
	var jobs []*job
	for i := len(sizes) - 1; i >= 0; i-- { // largest first: they take longest
		jobs = append(jobs, &job{envs: sizes[i], baseline: true}, &job{envs: sizes[i]})
	}
	start := time.Now()
	queue := make(chan *job)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range queue {
				j.took, j.err = simulate(j, rate, perInvoke, seed)
				fmt.Fprintf(os.Stderr, "fleetcmd: %d environments, baseline %v: %s\n", j.envs, j.baseline, j.took.Round(time.Second))
			}
		}()
	}
	for _, j := range jobs {
		queue <- j
	}
	close(queue)
	wg.Wait()
	for _, j := range jobs {
		if j.err != nil {
			return fmt.Errorf("%d environments: %w", j.envs, j.err)
		}
	}
	printTable(sizes, jobs, rate, perInvoke, time.Since(start))
	return nil
}

func simulate(j *job, rate float64, perInvoke int, seed uint64) (time.Duration, error) {
	start := time.Now()
	db, err := dynalite.Launch()
	if err != nil {
		return 0, err
	}
	defer db.Stop()
	ctx := context.Background()
	table := fmt.Sprintf("fleet-%d", j.envs)
	if err := dynalite.CreateTable(ctx, db.Client(), table); err != nil {
		return 0, err
	}
	cfg := fleetsim.Config{
		Envs: j.envs, Rate: rate, CallsPerInvoke: perInvoke, Phases: phases, Seed: seed,
		DB: db.Client(), Table: table,
	}
	if j.baseline {
		cfg.EveryFlush = true
		cfg.Policy = policy.Policy{Passive: circuit.RateSettings{FastTripFailures: circuit.MaxFastTripFailures}}
	}
	j.res, err = fleetsim.Run(ctx, cfg)
	return time.Since(start), err
}

func printTable(sizes []int, jobs []*job, rate float64, perInvoke int, took time.Duration) {
	fmt.Printf("Measured %s on %s/%s, %d CPUs, %s; %g calls/s in each environment, %d calls per invocation; "+
		"phases: %s; one dynalite per simulation; the whole run took %s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		rate, perInvoke, describe(phases), took.Round(time.Second))
	fmt.Println("| Environments | Flush | Writes / 1,000 calls: healthy · 10 % · outage | Reads / 1,000 calls: healthy · 10 % · outage | First refusal | Every environment refuses | Calls to the failed service | Back to CLOSED | False trips | Rate seen at 10 % (true) | $ per million calls: healthy · 10 % | Peak writes/s on one item |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range sizes {
		for _, j := range jobs {
			if j.envs != n {
				continue
			}
			r := j.res
			mode := "write-free when healthy"
			if j.baseline {
				mode = "per invocation (before)"
			}
			h, e, o := r.Phases[0], r.Phases[1], r.Phases[2]
			falseTrips := r.Phases[0].Opened + r.Phases[1].Opened + r.Phases[3].Opened
			peak := fmt.Sprint(r.PeakItemWrites)
			if r.PeakItemWrites > itemWriteLimit {
				peak += " (over the limit)"
			}
			fmt.Printf("| %d | %s | %s · %s · %s | %s · %s · %s | %s | %s | %d | %s | %d | %s (%s) | %s · %s | %s |\n",
				n, mode,
				per1000(h.Ops.Writes(), h.Calls), per1000(e.Ops.Writes(), e.Calls), per1000(o.Ops.Writes(), o.Calls),
				per1000(h.Ops.Reads(), h.Calls), per1000(e.Ops.Reads(), e.Calls), per1000(o.Ops.Reads(), o.Calls),
				dur(r.FirstRefusal), dur(r.FleetRefusal), o.Sent, dur(r.Recovered), falseTrips,
				pct(e.SeenRate), pct(e.TrueRate),
				dollars(h), dollars(e), peak)
		}
	}
	fmt.Printf("\nPrices: DynamoDB on-demand, us-east-1: $%.3f per million write request units, $%.3f per million read request units "+
		"(a strongly consistent read under 4 KB is one unit per item; every write here is under 1 KB, one unit); "+
		"for scale, Lambda's request fee is $%.2f per million invocations, $%.3f per million calls at %d calls per invocation. "+
		"DynamoDB serves one item at most %d write units per second.\n",
		dollarsPerMillionWRU, dollarsPerMillionRRU, dollarsPerMillionRequests, dollarsPerMillionRequests/float64(perInvoke), perInvoke, itemWriteLimit)
}

func describe(ps []fleetsim.Phase) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s %s", p.Name, p.Duration))
	}
	return strings.Join(parts, ", ")
}

func per1000(n, calls int64) string {
	if calls == 0 {
		return "–"
	}
	v := 1000 * float64(n) / float64(calls)
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func dollars(p fleetsim.PhaseResult) string {
	if p.Calls == 0 {
		return "–"
	}
	v := (float64(p.Ops.WriteUnits)*dollarsPerMillionWRU + float64(p.Ops.ReadUnits)*dollarsPerMillionRRU) / float64(p.Calls)
	return fmt.Sprintf("$%.4f", v)
}

func dur(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	if d < 10*time.Second {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func pct(v float64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*v)
}

// sparsePhases: healthy, then an outage long enough for the sparse fleet
// to open the circuit and for every environment to call again after that.
var sparsePhases = []fleetsim.Phase{
	{Name: "healthy", Duration: 30 * time.Second},
	{Name: "outage", Duration: 60 * time.Second, FailureRate: 1},
}

// runSparse runs a fleet with sparse traffic twice: with old answers
// served at once while the refresh runs (maximum age 0) and with the
// default maximum age, each invocation's lookup arriving while its
// INVOKE's read runs. It prints the calls sent to the failed service after
// the table held the circuit OPEN.
func runSparse(envs int, every time.Duration, seed uint64) error {
	fmt.Printf("\nSparse traffic: %d environments, one call per %s in each (one per invocation), the lookup arriving while the INVOKE's read runs; phases: %s.\n\n",
		envs, every, describe(sparsePhases))
	fmt.Println("| Maximum age | Calls in the outage | Sent to the failed service | Sent after the circuit opened, because of old answers | First refusal | Every environment refuses | Reads / 1,000 calls |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, maxAge := range []time.Duration{0, 2 * time.Second} {
		start := time.Now()
		db, err := dynalite.Launch()
		if err != nil {
			return err
		}
		ctx := context.Background()
		table := fmt.Sprintf("sparse-%d", maxAge.Milliseconds())
		if err := dynalite.CreateTable(ctx, db.Client(), table); err != nil {
			db.Stop()
			return err
		}
		res, err := fleetsim.Run(ctx, fleetsim.Config{
			Envs: envs, Rate: float64(time.Second) / float64(every), CallsPerInvoke: 1, Phases: sparsePhases, Seed: seed,
			MaxAge: maxAge, LookupDuringRead: true, DB: db.Client(), Table: table,
		})
		db.Stop()
		if err != nil {
			return fmt.Errorf("sparse traffic, maximum age %s: %w", maxAge, err)
		}
		fmt.Fprintf(os.Stderr, "fleetcmd: sparse traffic, maximum age %s: %s\n", maxAge, time.Since(start).Round(time.Second))
		name := "0 (old answers at once)"
		if maxAge > 0 {
			name = maxAge.String() + " (the default)"
		}
		o := res.Phases[1]
		fmt.Printf("| %s | %d | %d | %d | %s | %s | %s |\n", name, o.Calls, o.Sent, o.SentWhileOpen,
			dur(res.FirstRefusal), dur(res.FleetRefusal), per1000(o.Ops.Reads(), o.Calls))
	}
	return nil
}
