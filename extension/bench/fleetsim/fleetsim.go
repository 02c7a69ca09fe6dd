// Package fleetsim simulates a fleet of execution environments of one
// function guarded by the breaker. Each environment is the extension's own
// breaker and cache, in this process, with the extension's production
// options (refresh interval, maximum age, miss and fetch timeouts, the
// flush's budget); all of them share one table: the DynamoDB model of
// package ddbmodel, which charges and throttles per item, or dynalite.
//
// Time is simulated. Each environment's invocations arrive as a Poisson
// process at its traffic's rate, one call each, so invocations are not
// aligned across the fleet. The simulation advances in ticks of 10 ms;
// within a tick the environments run concurrently (on every CPU), each
// through its own arrivals in time order, so their table calls contend as
// a fleet's would. A scripted downstream fails at a rate set per phase,
// times out (slow), or flaps.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/ddbmodel"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Phase is a stretch of time with one downstream behaviour.
type Phase struct {
	// Name labels the phase in results.
	Name string
	// Duration is its simulated length.
	Duration time.Duration
	// FailureRate is the share of calls that fail, 0..1; 1 is an outage.
	FailureRate float64
	// Slow makes every call time out: it fails after Timeout.
	Slow bool
	// Flap, when set, alternates the phase between an outage and health,
	// Flap each, starting with the outage.
	Flap time.Duration
}

// Timeout is how long a call to a slow downstream takes before it fails.
const Timeout = 3 * time.Second

// healthyLatency is a successful call's latency.
const healthyLatency = 20 * time.Millisecond

func (p Phase) outcome(since time.Duration, rng *rand.Rand) (ok bool, latency time.Duration) {
	switch {
	case p.Slow:
		return false, Timeout
	case p.Flap > 0:
		return (since/p.Flap)%2 == 1, healthyLatency
	}
	return rng.Float64() >= p.FailureRate, healthyLatency
}

// failing says whether the downstream is down at since into the phase.
func (p Phase) failing(since time.Duration) bool {
	return p.Slow || p.FailureRate >= 1 || (p.Flap > 0 && (since/p.Flap)%2 == 0)
}

// Config describes one simulation.
type Config struct {
	// Envs is the number of execution environments.
	Envs int
	// Rate is the mean invocations per second in each environment, each
	// with one call (Poisson arrivals).
	Rate float64
	// Service is the circuit's ID (default "payments").
	Service string
	// Policy is the service's policy.
	Policy policy.Policy
	// Phases run in order.
	Phases []Phase
	// Seed seeds arrivals and failures.
	Seed uint64
	// DB is the table's client; Table its name; Clock, when DB is a
	// ddbmodel.Table, the clock it was made with (set by Run).
	DB    store.API
	Table string
	// SetClock, when set, is told the simulated time at every tick (the
	// ddbmodel table's clock).
	SetClock func(time.Time)
	// PerInvocationFlush is the baseline: every invocation writes its
	// call's counts to the bucket item (the extension's flush before
	// healthy circuits became write-free), in place of the breaker's own
	// bucket writes. Nothing else changes.
	PerInvocationFlush bool
	// Start is the simulated start (default: a fixed date at a bucket
	// start).
	Start time.Time
	// Workers is the number of goroutines that share the environments
	// in each tick, each a contiguous part of them (default four per
	// GOMAXPROCS, so that a CPU whose part ends early finds another).
	Workers int
	// ReadCopies is the circuit's number of read copies, as the updater
	// keeps them (default store.DefaultReadCopies, the construct's).
	ReadCopies int
	// Logger receives the extensions' logs (default: discarded).
	Logger *slog.Logger
	// Deadline, when set, is a wall-clock time at which the simulation
	// stops at the end of its current tick, however far it got (see
	// Result.Simulated).
	Deadline time.Time
	// ProbeLatency, when set, is how long a probe call of a HALF_OPEN
	// circuit takes: its outcome is reported at the environment's first
	// invocation that long after the call or later, so the circuit stays
	// HALF_OPEN meanwhile. Other calls are reported at once.
	ProbeLatency time.Duration
	// Tick is the simulation's step (default 10 ms; it must divide a
	// second). Within a tick each environment runs through its arrivals
	// in time order on its own clock, but the table's clock is the tick's
	// start, and environments see each other's writes in the order they
	// run, not in simulated time.
	Tick time.Duration
}

// PhaseResult is what happened during one phase.
type PhaseResult struct {
	Phase
	// Calls were attempted (looked up); Sent reached the downstream;
	// Refused were refused by the breaker; Failed failed downstream.
	Calls, Sent, Refused, Failed int64
	// Invocations is the number of invocations (one call each).
	Invocations int64
	// BusySeconds counts (environment, second) pairs with a call.
	BusySeconds int64
	// ReadUnits and WriteUnits were charged during the phase; Throttled
	// counts the requests the table refused.
	ReadUnits, WriteUnits float64
	Throttled             int64
	// Opened counts the circuit's transitions to OPEN in the table;
	// FirstOpen is the time from the phase's start to the first (-1: none).
	Opened    int
	FirstOpen time.Duration
	// SentDown counts the calls sent while the downstream was failing.
	SentDown int64
	// PeakSent is the most calls sent to the downstream in one second.
	PeakSent int64
}

// Result is what happened in one simulation.
type Result struct {
	Phases []PhaseResult
	// Refusal is measured in the first failing phase (an outage, a slow
	// or a flapping downstream): for each environment that saw a failed
	// call there, the time from its first failed call to its first
	// refused one. SeenRefusal is the longest, SeenRefusalMedian and
	// SeenRefusalP99 the median and 99th percentile over those
	// environments; NeverRefused counts the environments that saw a
	// failure but never refused.
	SeenRefusal, SeenRefusalMedian, SeenRefusalP99 time.Duration
	NeverRefused                                   int
	// RefusingAll is measured like SeenRefusal, to the first moment the
	// environment's breaker refused every call (breaker.Refusing, checked
	// after each call and at every tick) instead of its first refused
	// call, which also waits for the next call to arrive: the slowest
	// environment, the median and the 99th percentile. NeverRefusingAll
	// counts the environments that saw a failure and never refused every
	// call.
	RefusingAll, RefusingAllMedian, RefusingAllP99 time.Duration
	NeverRefusingAll                               int
	// LateSent counts the calls sent to the downstream while it was
	// failing, in that phase, more than LateAfter after the sending
	// environment's first failed call, other than trial calls of a local
	// trip (LateTrials) and probe calls of a HALF_OPEN circuit
	// (LateProbes), which the breaker lets through on purpose.
	LateSent, LateTrials, LateProbes int64
	// FleetTrip is the time from the start of that phase to the circuit
	// being OPEN in the table (-1: never); FleetRefusal the time from
	// FleetTrip to the last environment's first refusal after it, among
	// those with a call after it (-1 when none).
	FleetTrip, FleetRefusal time.Duration
	// Recovered is the time from the end of the last failing phase to the
	// circuit being CLOSED again in the table; -1 when it never was.
	Recovered time.Duration
	// AfterClose counts the calls sent to the downstream in each of the
	// first seconds after the circuit closed again (see Recovered), the
	// second of the close first.
	AfterClose []int64
	// PeakItemReads and PeakItemWrites are the most units one item was
	// charged in one second, on PeakReadItem and PeakWriteItem.
	PeakItemReads, PeakItemWrites float64
	PeakReadItem, PeakWriteItem   string
	// Final is the circuit at the end.
	Final circuit.Circuit
	// Evidence weighs every fleet-wide evaluation of the window.
	Evidence Evidence
	// Simulated is the simulated time run: the phases' total, or less
	// when Config.Deadline stopped the simulation first.
	Simulated time.Duration
}

// FalseTrips counts the transitions to OPEN during phases whose failure
// rate is under at (a fraction, such as 0.8 × the threshold) and that are
// not slow or flapping.
func (r Result) FalseTrips(at float64) int {
	n := 0
	for _, p := range r.Phases {
		if !p.Slow && p.Flap == 0 && p.FailureRate < at {
			n += p.Opened
		}
	}
	return n
}

// UsageFunc returns the table's charged units and throttled requests so far.
type UsageFunc func() (reads, writes float64, throttled int64)

// Run runs the simulation. usage reports the table's charges (see
// ddbmodel.Table.Total, or Counter for another table).
func Run(ctx context.Context, cfg Config, usage UsageFunc) (Result, error) {
	if cfg.Envs < 1 || cfg.Rate <= 0 || len(cfg.Phases) == 0 {
		return Result{}, errors.New("fleetsim: need at least one environment, a rate and a phase")
	}
	if cfg.Service == "" {
		cfg.Service = "payments"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if cfg.Workers < 1 {
		cfg.Workers = 4 * runtime.GOMAXPROCS(0)
	}
	tick := cfg.Tick
	if tick <= 0 {
		tick = 10 * time.Millisecond
	}
	if time.Second%tick != 0 {
		return Result{}, errors.New("fleetsim: the tick must divide a second")
	}
	var db store.API = cfg.DB
	if cfg.PerInvocationFlush {
		db = dropBuckets{cfg.DB}
	}
	var transitionAt atomic.Int64 // the circuit's last transition, as last polled
	watch := &evidenceWatch{API: db, rates: cfg.Policy.Rates(), since: &transitionAt}
	db = watch
	st := store.New(db, cfg.Table).WithLogger(cfg.Logger)
	raw := store.New(cfg.DB, cfg.Table).WithLogger(cfg.Logger) // the baseline's own bucket writes
	// A deployed table: the updater's first check has created the circuit
	// item with its override attribute, and its read copies.
	if _, err := raw.MigrateOverride(ctx, cfg.Service, cfg.Start); err != nil {
		return Result{}, fmt.Errorf("fleetsim: create the circuit item: %w", err)
	}
	if cfg.ReadCopies == 0 {
		cfg.ReadCopies = store.DefaultReadCopies
	}
	if _, err := raw.SyncCopies(ctx, cfg.Service, cfg.ReadCopies, 1); err != nil {
		return Result{}, fmt.Errorf("fleetsim: create the read copies: %w", err)
	}
	truth := func(ctx context.Context) (circuit.Circuit, error) { // uncharged when DB can say so
		if p, ok := cfg.DB.(interface {
			Peek(ctx context.Context, id string) (circuit.Circuit, error)
		}); ok {
			return p.Peek(ctx, cfg.Service)
		}
		c, _, err := raw.Get(ctx, cfg.Service)
		return c, err
	}
	pols := policy.Policies{cfg.Service: cfg.Policy}
	rates := cfg.Policy.Rates()

	starts := make([]time.Time, len(cfg.Phases)+1)
	starts[0] = cfg.Start
	for i, p := range cfg.Phases {
		starts[i+1] = starts[i].Add(p.Duration)
	}
	end := starts[len(cfg.Phases)]
	phaseAt := func(t time.Time) int {
		for i := len(cfg.Phases) - 1; i >= 0; i-- {
			if !t.Before(starts[i]) {
				return i
			}
		}
		return 0
	}
	failPhase, lastFail := -1, -1
	for i, p := range cfg.Phases {
		if p.failing(0) {
			if failPhase < 0 {
				failPhase = i
			}
			lastFail = i
		}
	}

	envs := make([]*env, cfg.Envs)
	for i := range envs {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)*0x9e3779b97f4a7c15+1))
		e := newEnv(st, pols, cfg.Logger, fmt.Sprintf("env-%d", i), rng.IntN(1<<30))
		e.rng = rng
		e.next = cfg.Start.Add(expo(rng, cfg.Rate))
		e.lastBusy = -1
		envs[i] = e
	}

	res := Result{Phases: make([]PhaseResult, len(cfg.Phases)), FleetTrip: -1, FleetRefusal: -1, Recovered: -1}
	for i, p := range cfg.Phases {
		res.Phases[i].Phase = p
		res.Phases[i].FirstOpen = -1
	}
	// Counters per worker and phase, summed at the end: plain integers,
	// so that the workers never write the same cache line.
	workers := min(cfg.Workers, cfg.Envs)
	perWorker := make([][][8]int64, workers)
	for w := range perWorker {
		perWorker[w] = make([][8]int64, len(cfg.Phases))
	}
	sentPerSec := map[int64]int64{}
	const (
		cCalls = iota
		cSent
		cRefused
		cFailed
		cInvocations
		cBusy
		cSentDown
	)

	var late [3]atomic.Int64
	const (
		lateSent = iota
		lateTrials
		lateProbes
	)
	// checkRefusing notes the first moment e's breaker refuses every call
	// after its first failure in the first failing phase, at t.
	checkRefusing := func(e *env, t time.Time) {
		if failPhase < 0 || e.firstFail < 0 || e.refusingAll >= 0 || phaseAt(t) != failPhase {
			return
		}
		if e.b.Refusing(cfg.Service) {
			e.refusingAll = t.Sub(starts[failPhase])
		}
	}

	var tripAt time.Time
	var last circuit.Circuit
	var mu sync.Mutex
	var firstErr error
	// The updater's set-up above is not the fleet's: the phases count
	// from here.
	r0, w0, th0 := usage()
	lastUse := [3]float64{r0, w0, float64(th0)}
	phase := 0
	ctxRun, cancel := context.WithCancel(ctx)
	defer cancel()

	step := func(ctx context.Context, e *env, t time.Time, sent map[int64]int64, counts [][8]int64) {
		e.now.Store(t.UnixNano())
		i := phaseAt(t)
		p := cfg.Phases[i]
		pc := &counts[i]
		since := t.Sub(starts[i])
		pc[cInvocations]++
		if sec := t.Unix(); sec != e.lastBusy {
			e.lastBusy = sec
			pc[cBusy]++
		}
		// Probe outcomes due by now are reported first (ProbeLatency).
		for len(e.pending) > 0 && !e.pending[0].at.After(t) {
			r := e.pending[0]
			e.pending = e.pending[1:]
			if err := e.report(ctxRun, cfg.Service, r.ok, r.latency, r.probe); err != nil {
				cfg.Logger.Debug("report", "error", err.Error())
			}
		}
		// INVOKE: the refresh starts first; the function's lookup comes
		// while it runs; the flush runs with its budget.
		e.refreshDue()
		allowed, probe := e.lookup(ctxRun, cfg.Service)
		pc[cCalls]++
		if !allowed {
			pc[cRefused]++
			if i == failPhase && e.firstFail >= 0 && e.firstRefusal < 0 {
				e.firstRefusal = t.Sub(starts[i])
			}
			if !tripAt.IsZero() && !t.Before(tripAt) && e.refusedAfterTrip < 0 {
				e.refusedAfterTrip = t.Sub(tripAt)
			}
		} else {
			ok, latency := p.outcome(since, e.rng)
			pc[cSent]++
			sent[t.Unix()]++
			if p.failing(since) {
				pc[cSentDown]++
				if i == failPhase && e.firstFail >= 0 && since-e.firstFail > LateAfter {
					switch {
					case probe != "":
						late[lateProbes].Add(1)
					case e.b.LocalTrip(cfg.Service):
						late[lateTrials].Add(1)
					default:
						late[lateSent].Add(1)
					}
				}
			}
			if !ok {
				pc[cFailed]++
				if i == failPhase && e.firstFail < 0 {
					e.firstFail = since
				}
			}
			if probe != "" && cfg.ProbeLatency > 0 {
				e.pending = append(e.pending, pendingReport{t.Add(cfg.ProbeLatency), ok, latency, probe})
			} else if err := e.report(ctxRun, cfg.Service, ok, latency, probe); err != nil {
				cfg.Logger.Debug("report", "error", err.Error())
			}
			if cfg.PerInvocationFlush {
				c := circuit.Counts{Calls: 1}
				if !ok {
					c.Failures = 1
				}
				if latency >= rates.SlowCallDuration {
					c.Slow = 1
				}
				bs := t.Truncate(policy.BucketSize)
				_, _ = raw.AddCounts(ctxRun, cfg.Service, bs, e.rng.IntN(store.BucketShards), c, bs.Add(policy.BucketSize+rates.Window+time.Minute))
			}
		}
		e.flush(ctx)
		checkRefusing(e, t)
	}

	poll := func(now time.Time) error {
		c, err := truth(ctxRun)
		if err != nil {
			return fmt.Errorf("fleetsim: read the circuit: %w", err)
		}
		if c.Version != last.Version && c.State == circuit.Open {
			i := phaseAt(now)
			if res.Phases[i].Opened == 0 {
				res.Phases[i].FirstOpen = now.Sub(starts[i])
			}
			res.Phases[i].Opened++
			if tripAt.IsZero() && failPhase >= 0 && !now.Before(starts[failPhase]) {
				tripAt = now
				res.FleetTrip = now.Sub(starts[failPhase])
			}
		}
		if lastFail >= 0 && !now.Before(starts[lastFail+1]) && res.Recovered < 0 && c.State == circuit.Closed {
			res.Recovered = now.Sub(starts[lastFail+1])
		}
		last = c
		if !c.UpdatedAt.IsZero() {
			transitionAt.Store(c.UpdatedAt.UnixNano())
		}
		return nil
	}
	closePhase := func(i int) {
		r, w, th := usage()
		pr := &res.Phases[i]
		pr.ReadUnits, pr.WriteUnits, pr.Throttled = r-lastUse[0], w-lastUse[1], th-int64(lastUse[2])
		lastUse = [3]float64{r, w, float64(th)}
	}

	for t := cfg.Start; t.Before(end); t = t.Add(tick) {
		if !cfg.Deadline.IsZero() && time.Now().After(cfg.Deadline) {
			end = t // out of wall time: the run ends here
			break
		}
		if cfg.SetClock != nil {
			cfg.SetClock(t)
		}
		if i := phaseAt(t); i != phase {
			closePhase(phase)
			phase = i
		}
		if t.Sub(cfg.Start)%(100*time.Millisecond) == 0 {
			if err := poll(t); err != nil {
				return res, err
			}
		}
		tickEnd := t.Add(tick)
		var wg sync.WaitGroup
		sents := make([]map[int64]int64, workers)
		for w := range workers {
			wg.Add(1)
			sents[w] = map[int64]int64{}
			go func() {
				defer wg.Done()
				// The extension bounds each flush by a budget of real time
				// (100 ms); the table here answers at once, so it never
				// binds, and one generous bound per tick stands for it.
				fctx, cancel := context.WithTimeout(ctxRun, time.Minute)
				defer cancel()
				// Each worker runs a contiguous share of the environments.
				for _, e := range envs[w*len(envs)/workers : (w+1)*len(envs)/workers] {
					for e.next.Before(tickEnd) && e.next.Before(end) {
						step(fctx, e, e.next, sents[w], perWorker[w])
						e.next = e.next.Add(expo(e.rng, cfg.Rate))
					}
					if e.firstFail >= 0 && e.refusingAll < 0 && tickEnd.Before(end) {
						// Time alone starts the time rule: look again
						// at the tick's end.
						e.now.Store(tickEnd.UnixNano())
						checkRefusing(e, tickEnd)
					}
				}
			}()
		}
		wg.Wait()
		for _, m := range sents {
			for s, n := range m {
				sentPerSec[s] += n
			}
		}
		if err := ctx.Err(); err != nil {
			mu.Lock()
			firstErr = err
			mu.Unlock()
			break
		}
	}
	closePhase(phase)
	if err := poll(end); err != nil {
		return res, err
	}
	for _, e := range envs {
		e.close()
	}
	if firstErr != nil {
		return res, firstErr
	}
	for i := range res.Phases {
		pr := &res.Phases[i]
		for _, cs := range perWorker {
			pc := &cs[i]
			pr.Calls, pr.Sent, pr.Refused, pr.Failed = pr.Calls+pc[cCalls], pr.Sent+pc[cSent], pr.Refused+pc[cRefused], pr.Failed+pc[cFailed]
			pr.Invocations, pr.BusySeconds, pr.SentDown = pr.Invocations+pc[cInvocations], pr.BusySeconds+pc[cBusy], pr.SentDown+pc[cSentDown]
		}
		for s := starts[i].Unix(); s < starts[i+1].Unix(); s++ {
			pr.PeakSent = max(pr.PeakSent, sentPerSec[s])
		}
	}
	var seen []time.Duration
	for _, e := range envs {
		if e.firstFail < 0 {
			continue
		}
		if e.firstRefusal < 0 {
			res.NeverRefused++
			continue
		}
		seen = append(seen, e.firstRefusal-e.firstFail)
	}
	res.SeenRefusal, res.SeenRefusalMedian, res.SeenRefusalP99 = spread(seen)
	var all []time.Duration
	for _, e := range envs {
		switch {
		case e.firstFail < 0:
		case e.refusingAll < 0:
			res.NeverRefusingAll++
		default:
			all = append(all, e.refusingAll-e.firstFail)
		}
	}
	res.RefusingAll, res.RefusingAllMedian, res.RefusingAllP99 = spread(all)
	res.LateSent, res.LateTrials, res.LateProbes = late[lateSent].Load(), late[lateTrials].Load(), late[lateProbes].Load()
	if !tripAt.IsZero() {
		for _, e := range envs {
			if e.refusedAfterTrip > res.FleetRefusal {
				res.FleetRefusal = e.refusedAfterTrip
			}
		}
	}
	if res.Recovered >= 0 {
		closed := starts[lastFail+1].Add(res.Recovered).Unix()
		for s := closed; s < closed+afterCloseSeconds && s < end.Unix(); s++ {
			res.AfterClose = append(res.AfterClose, sentPerSec[s])
		}
	}
	res.Final = last
	res.Evidence = watch.evidence()
	res.Simulated = end.Sub(cfg.Start)
	return res, nil
}

// LateAfter is the time after an environment's first failed call after
// which no ordinary call of it should reach a failing downstream.
const LateAfter = time.Second

// afterCloseSeconds is how many seconds after a close Result.AfterClose
// follows.
const afterCloseSeconds = 15

// spread returns the largest, the median and the 99th percentile of ds
// (zeros when empty); it sorts ds.
func spread(ds []time.Duration) (maxD, median, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)-1], ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*99/100)]
}

// expo draws the time to the next Poisson arrival at rate per second.
func expo(rng *rand.Rand, rate float64) time.Duration {
	return time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
}

// dropBuckets hides the breaker's own bucket writes from the table, for
// the baseline, which writes every invocation's counts itself. They are
// answered as written, so the breaker still evaluates the window after a
// failure.
type dropBuckets struct{ store.API }

func (d dropBuckets) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if k, ok := in.Key[store.KeyAttribute].(*types.AttributeValueMemberS); ok && strings.Contains(k.Value, store.BucketInfix) {
		return &dynamodb.UpdateItemOutput{}, nil
	}
	return d.API.UpdateItem(ctx, in, opts...)
}

// Percentiles returns the minimum, median and maximum of xs.
func Percentiles(xs []float64) (lo, mid, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[0], s[len(s)/2], s[len(s)-1]
}

// RunOnModel runs cfg against a fresh ddbmodel table and fills the
// hottest item's peaks into the result.
func RunOnModel(ctx context.Context, cfg Config) (Result, *ddbmodel.Table, error) {
	var now atomic.Int64
	m := ddbmodel.New("fleet", func() time.Time { return time.Unix(0, now.Load()) })
	cfg.DB, cfg.Table, cfg.SetClock = m, "fleet", func(t time.Time) { now.Store(t.UnixNano()) }
	res, err := Run(ctx, cfg, m.Usage)
	res.PeakItemReads, res.PeakReadItem, res.PeakItemWrites, res.PeakWriteItem = m.Hottest()
	return res, m, err
}

// SteadyTick is the tick of a Steady simulation.
const SteadyTick = 100 * time.Millisecond

// Steady is the configuration of a long run at one steady error rate (make
// bench-fleet-hour): envs environments at rate calls/s each, a healthy
// phase as long as the window first (so that every environment's window
// holds its successes, as in a fleet that has been running), then d at
// failure rate p, independent per call. It runs in ticks of SteadyTick
// instead of 10 ms: each environment still runs through its own arrivals
// in time order on its own clock, with every lookup, report and flush, but
// the table's clock (per-second throttling) moves per tick and the
// environments see each other's writes up to a tick early or late.
func Steady(envs int, rate, p float64, d time.Duration, seed uint64) Config {
	return Config{
		Envs: envs, Rate: rate, Seed: seed, Tick: SteadyTick,
		Phases: []Phase{
			{Name: "healthy", Duration: policy.Policy{}.Rates().Window},
			{Name: "steady", Duration: d, FailureRate: p},
		},
	}
}
