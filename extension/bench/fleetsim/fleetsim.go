// Package fleetsim simulates a fleet of execution environments of one
// function guarded by the breaker: each environment is the extension's
// real breaker and cache, in this process, on a simulated clock, and all
// share one table. Calls arrive at a steady rate in every environment; a
// scripted downstream fails at a rate set per phase (healthy, some
// errors, an outage, recovery). Every DynamoDB call is counted by
// operation and phase, and writes per item and simulated second, for the
// hottest item's peak.
//
// The simulated clock moves from call to call in time order across the
// fleet; table calls take no simulated time. Each environment flushes on
// its INVOKE events, as the extension does, and refreshes its cache there.
package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Phase is a stretch of time with one downstream failure rate.
type Phase struct {
	// Name labels the phase in results.
	Name string
	// Duration is its simulated length.
	Duration time.Duration
	// FailureRate is the share of calls that fail, 0..1; 1 is an outage.
	FailureRate float64
}

// Config describes one simulation.
type Config struct {
	// Envs is the number of execution environments.
	Envs int
	// Rate is the calls per second in each environment.
	Rate float64
	// CallsPerInvoke is the number of calls per invocation; each
	// invocation begins with an INVOKE event (cache refresh and flush).
	CallsPerInvoke int
	// Service is the circuit's ID (default "payments").
	Service string
	// Policy is the service's policy.
	Policy policy.Policy
	// RefreshInterval is the cache's (default 1 s).
	RefreshInterval time.Duration
	// MaxAge is the cache's maximum age (CIRCUIT_BREAKER_MAX_AGE); 0
	// answers old values at once while the refresh runs.
	MaxAge time.Duration
	// LookupDuringRead makes each invocation's first lookup arrive while
	// the INVOKE's read is still in flight, as in Lambda, where the
	// runtime gets the event at the same moment as the extension; by
	// default the read ends first. It also checks the table at every call,
	// for SentWhileOpen: use it for small fleets.
	LookupDuringRead bool
	// EveryFlush writes every count at every flush, as the extension did
	// before healthy circuits became write-free (the baseline).
	EveryFlush bool
	// Phases run in order.
	Phases []Phase
	// Seed seeds the downstream's failures.
	Seed uint64
	// DB is the table's client; Table its name.
	DB    store.API
	Table string
	// Start is the simulated start (default: now, at a bucket start).
	Start time.Time
	// Logger receives the extensions' logs (default: discarded).
	Logger *slog.Logger
}

// PhaseResult is what happened during one phase.
type PhaseResult struct {
	Phase
	// Calls were attempted (looked up); Sent reached the downstream;
	// Refused were refused by the breaker; Failed failed downstream.
	Calls, Sent, Refused, Failed int64
	// Ops are the DynamoDB calls made during the phase.
	Ops Ops
	// Opened counts the circuit's transitions to OPEN during the phase.
	Opened int
	// SentWhileOpen counts calls sent, other than probes, while the table
	// held the circuit OPEN: calls let through by an old answer. Counted
	// with LookupDuringRead only.
	SentWhileOpen int64
	// TrueRate is the failure rate of the calls sent in the window that
	// ends with the phase; SeenRate the rate the table's window buckets
	// hold then (-1 with no calls there).
	TrueRate, SeenRate float64
}

// Result is what happened in one simulation.
type Result struct {
	Phases []PhaseResult
	// FirstRefusal is the time from the start of the first outage phase
	// to the first refused call; FleetRefusal to the moment every
	// environment had refused one. -1 when it never happened.
	FirstRefusal, FleetRefusal time.Duration
	// Recovered is the time from the end of the first outage phase to the
	// circuit being CLOSED again in the table; -1 when it never was.
	Recovered time.Duration
	// PeakItemWrites is the most writes one item took in one simulated
	// second; PeakItem is that item's key.
	PeakItemWrites int
	PeakItem       string
	// Final is the circuit at the end.
	Final circuit.Circuit
}

type env struct {
	b            *breaker.Breaker
	c            *cache.Cache
	firstRefusal time.Time
}

// Run runs the simulation.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Envs < 1 || cfg.Rate <= 0 || len(cfg.Phases) == 0 {
		return Result{}, errors.New("fleetsim: need at least one environment, a rate and a phase")
	}
	if cfg.Service == "" {
		cfg.Service = "payments"
	}
	if cfg.CallsPerInvoke < 1 {
		cfg.CallsPerInvoke = 1
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Now().Truncate(policy.BucketSize)
	}
	var nowNanos atomic.Int64
	nowNanos.Store(cfg.Start.UnixNano())
	clock := func() time.Time { return time.Unix(0, nowNanos.Load()) }

	cnt := newCounter(cfg.DB, clock, len(cfg.Phases))
	st := store.New(cnt, cfg.Table).WithLogger(cfg.Logger)
	raw := store.New(cfg.DB, cfg.Table).WithLogger(cfg.Logger) // uncounted: the simulation's own reads
	stf := func(context.Context) (*store.Store, error) { return st, nil }
	pols := policy.Policies{cfg.Service: cfg.Policy}
	envs := make([]*env, cfg.Envs)
	for i := range envs {
		c := cache.New(st, cache.Options{
			RefreshInterval: cfg.RefreshInterval, MaxAge: cfg.MaxAge, MissTimeout: 5 * time.Second, FetchTimeout: 5 * time.Second,
			Now: clock, Logger: cfg.Logger,
		})
		b := breaker.New(stf, c, breaker.Options{
			Policies: pols, FailAllow: true, Now: clock, Logger: cfg.Logger, EveryFlush: cfg.EveryFlush,
			ClaimTimeout: 5 * time.Second, Holder: fmt.Sprintf("env-%d", i),
		})
		envs[i] = &env{b: b, c: c}
	}

	res := Result{Phases: make([]PhaseResult, len(cfg.Phases)), FirstRefusal: -1, FleetRefusal: -1, Recovered: -1}
	ends := make([]time.Time, len(cfg.Phases))
	at := cfg.Start
	outage := -1
	for i, p := range cfg.Phases {
		res.Phases[i].Phase = p
		at = at.Add(p.Duration)
		ends[i] = at
		if outage < 0 && p.FailureRate >= 1 {
			outage = i
		}
	}
	end := at
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	sent := map[int64]circuit.Counts{} // by bucket start: what really happened
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	rates := cfg.Policy.WithDefaults().Rates()
	var last circuit.Circuit
	phase := 0
	nextPoll := cfg.Start
	refusedEnvs := 0

	poll := func() error { // transitions to OPEN, once per simulated second
		c, _, err := raw.Get(ctx, cfg.Service)
		if err != nil {
			return fmt.Errorf("fleetsim: poll: %w", err)
		}
		if c.Version != last.Version && c.State == circuit.Open {
			res.Phases[phase].Opened++
		}
		if outage >= 0 && phase > outage && res.Recovered < 0 && c.State == circuit.Closed {
			res.Recovered = clock().Sub(ends[outage])
		}
		last = c
		return nil
	}
	endPhase := func(i int) error {
		starts := breaker.WindowStarts(ends[i].Add(-time.Nanosecond), rates.Window)
		var truth circuit.Counts
		for _, s := range starts {
			truth = truth.Add(sent[s.Unix()])
		}
		bs, err := raw.GetBuckets(ctx, cfg.Service, starts)
		if err != nil {
			return fmt.Errorf("fleetsim: read window: %w", err)
		}
		var seen circuit.Counts
		for _, b := range bs {
			seen = seen.Add(b.Counts)
		}
		res.Phases[i].TrueRate, res.Phases[i].SeenRate = rate(truth), rate(seen)
		return nil
	}

	for k := 0; ; k++ {
		base := cfg.Start.Add(time.Duration(k) * interval)
		if !base.Before(end) {
			break
		}
		for i, e := range envs {
			t := base.Add(interval * time.Duration(i) / time.Duration(cfg.Envs))
			if !t.Before(end) {
				break
			}
			for phase < len(ends)-1 && !t.Before(ends[phase]) {
				if err := endPhase(phase); err != nil {
					return res, err
				}
				phase++
				cnt.setPhase(phase)
			}
			nowNanos.Store(t.UnixNano())
			if !t.Before(nextPoll) {
				if err := poll(); err != nil {
					return res, err
				}
				nextPoll = nextPoll.Add(time.Second)
			}
			pr := &res.Phases[phase]
			invoke := func() error { // the rest of the INVOKE: reads end, then the flush
				if err := e.c.Wait(ctx); err != nil {
					return err
				}
				_, _ = e.b.Flush(ctx) // errors are counted in the table, or retried
				return nil
			}
			// Whether the table held the circuit OPEN when this call was
			// decided (before this environment's own flush).
			openBefore := false
			if cfg.LookupDuringRead {
				cur, _, err := raw.Get(ctx, cfg.Service)
				if err != nil {
					return res, fmt.Errorf("fleetsim: read the circuit: %w", err)
				}
				openBefore = cur.EffectiveState(t) == circuit.Open
			}
			isInvoke := k%cfg.CallsPerInvoke == 0
			if isInvoke {
				e.c.RefreshDue()
				if !cfg.LookupDuringRead {
					if err := invoke(); err != nil {
						return res, err
					}
				}
			}
			d := e.b.Lookup(ctx, cfg.Service)
			if isInvoke && cfg.LookupDuringRead {
				if err := invoke(); err != nil {
					return res, err
				}
			}
			pr.Calls++
			if !d.Allowed {
				pr.Refused++
				if outage >= 0 && phase == outage && e.firstRefusal.IsZero() {
					e.firstRefusal = t
					since := t.Sub(cfg.Start.Add(sumDurations(cfg.Phases[:outage])))
					if res.FirstRefusal < 0 {
						res.FirstRefusal = since
					}
					if refusedEnvs++; refusedEnvs == cfg.Envs {
						res.FleetRefusal = since
					}
				}
				continue
			}
			if openBefore && d.Probe == "" {
				pr.SentWhileOpen++
			}
			failed := rng.Float64() < pr.FailureRate
			pr.Sent++
			c := circuit.Counts{Calls: 1}
			if failed {
				pr.Failed++
				c.Failures = 1
			}
			bs := t.Truncate(policy.BucketSize).Unix()
			sent[bs] = sent[bs].Add(c)
			ok := !failed
			if _, err := e.b.Report(ctx, cfg.Service, []api.Outcome{{Success: &ok, LatencyMs: 20, ProbeToken: d.Probe}}); err != nil {
				cfg.Logger.Debug("report", "error", err.Error())
			}
		}
	}
	if err := endPhase(len(ends) - 1); err != nil {
		return res, err
	}
	if err := poll(); err != nil {
		return res, err
	}
	res.Final = last
	cnt.mu.Lock()
	for i := range res.Phases {
		res.Phases[i].Ops = cnt.ops[i]
	}
	res.PeakItemWrites, res.PeakItem = cnt.peak, cnt.peakKey
	cnt.mu.Unlock()
	return res, nil
}

func rate(c circuit.Counts) float64 {
	if c.Calls == 0 {
		return -1
	}
	return float64(c.Failures) / float64(c.Calls)
}

func sumDurations(ps []Phase) time.Duration {
	var d time.Duration
	for _, p := range ps {
		d += p.Duration
	}
	return d
}
