// Command detectcmd measures how long callers keep calling a failed
// service: the time from the downstream service starting to fail, under
// steady traffic of 20 calls per second, to the first caller being refused
// and to every sandbox refusing. It compares passive detection (the
// extension's outcome counts) with health checks alone (the updater on a
// short schedule, scaled to rate(1 minute)).
//
// Everything runs on loopback: dynalite, a stand-in downstream service,
// two extension processes (the real binary, each with a fake Extensions
// API, as two execution environments), and the updater in this process.
// Run it from the repository root with
// "go run ./extension/bench/detectcmd" (about five minutes).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/benchenv"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

const token = "detect-token"

func main() {
	runs := flag.Int("runs", 3, "measurements per mode")
	rate := flag.Int("rate", 20, "calls per second across the sandboxes")
	check := flag.Duration("check", time.Second, "health-check period of the health-check-only mode (scaled to 1 minute)")
	flag.Parse()
	if err := run(*runs, *rate, *check); err != nil {
		fmt.Fprintln(os.Stderr, "detectcmd:", err)
		os.Exit(1)
	}
}

type sandbox struct {
	fake *extapitest.Server
	cb   *client.Client
	cmd  *exec.Cmd
}

func run(runs, rate int, check time.Duration) error {
	ctx := context.Background()
	db, err := dynalite.Launch()
	if err != nil {
		return err
	}
	defer db.Stop()
	table := "detect"
	if err := dynalite.CreateTable(ctx, db.Client(), table); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "detect-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := benchenv.BuildExtension(ctx, dir, "")
	if err != nil {
		return err
	}

	var failing atomic.Bool
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer down.Close()

	var boxes []*sandbox
	for i := range 2 {
		port := 4300 + i + int(time.Now().UnixNano()%500)*2
		fake := extapitest.Start()
		defer fake.Close()
		cmd := exec.Command(bin)
		cmd.Env = []string{
			"AWS_LAMBDA_RUNTIME_API=" + fake.Addr, "CIRCUIT_BREAKER_PORT=" + strconv.Itoa(port),
			"CIRCUIT_BREAKER_TABLE=" + table, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=local",
			"AWS_SECRET_ACCESS_KEY=local", "AWS_SESSION_TOKEN=" + token, "AWS_ENDPOINT_URL_DYNAMODB=" + db.Endpoint,
			"CIRCUIT_BREAKER_LOG_LEVEL=warn",
			// The rate rows turn the local trip off (1000 consecutive
			// failures), to show the rate alone.
			`CIRCUIT_BREAKER_POLICIES=` + `{"fast-0":{"window":"10s","fastTripFailures":1000},"fast-1":{"window":"10s","fastTripFailures":1000},"fast-2":{"window":"10s","fastTripFailures":1000},"fast-3":{"window":"10s","fastTripFailures":1000},"fast-4":{"window":"10s","fastTripFailures":1000},"rate-0":{"fastTripFailures":1000},"rate-1":{"fastTripFailures":1000},"rate-2":{"fastTripFailures":1000},"rate-3":{"fastTripFailures":1000},"rate-4":{"fastTripFailures":1000}}`,
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		boxes = append(boxes, &sandbox{fake: fake, cmd: cmd,
			cb: client.New(client.WithBaseURL("http://127.0.0.1:"+strconv.Itoa(port)), client.WithToken(token))})
	}
	for _, b := range boxes {
		deadline := time.Now().Add(10 * time.Second)
		for b.cb.Health(ctx) != nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("extension not ready")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	st := store.New(db.Client(), table).WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil)))
	var passive, rate30, fast, hc []result
	for r := range runs {
		failing.Store(false)
		// A full healthy window first: the window then holds 30 s of
		// successes that the failures must outweigh.
		res, err := measure(ctx, boxes, down.URL, fmt.Sprintf("passive-%d", r), rate, 35*time.Second, &failing, nil)
		if err != nil {
			return err
		}
		passive = append(passive, res)
		failing.Store(false)
		res, err = measure(ctx, boxes, down.URL, fmt.Sprintf("rate-%d", r), rate, 35*time.Second, &failing, nil)
		if err != nil {
			return err
		}
		rate30 = append(rate30, res)
		failing.Store(false)
		res, err = measure(ctx, boxes, down.URL, fmt.Sprintf("fast-%d", r), rate, 15*time.Second, &failing, nil)
		if err != nil {
			return err
		}
		fast = append(fast, res)
	}
	for r := range runs {
		failing.Store(false)
		id := fmt.Sprintf("checks-%d", r)
		// One check per tick, no confirmation checks: the rows model
		// one scheduled check each period.
		cfg, err := updater.ParseInput([]byte(fmt.Sprintf(`{"ID":%q,"URL":%q,"ConfirmInterval":"0s"}`, id, down.URL)))
		if err != nil {
			return err
		}
		u := updater.New(st, slog.New(slog.NewJSONHandler(io.Discard, nil)))
		u.Prober = healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()) // the service runs on 127.0.0.1
		res, err := measure(ctx, boxes, down.URL, id, rate, 3*time.Second, &failing, func(stop <-chan struct{}) {
			t := time.NewTicker(check)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					_, _ = u.Run(ctx, cfg)
				}
			}
		})
		if err != nil {
			return err
		}
		hc = append(hc, res)
	}
	print(passive, rate30, fast, hc, rate, check, runs)
	return nil
}

type result struct {
	firstRefused, allRefused time.Duration
	callsToFailed            int
}

// measure runs steady traffic on the circuit id, round robin over the
// sandboxes (one INVOKE event per call, as Lambda sends), lets the
// downstream fail after a healthy warm-up, and times the refusals. With
// checker set, outcomes are not reported (health checks alone): the calls
// use Allow and the checker runs beside the traffic.
func measure(ctx context.Context, boxes []*sandbox, url, id string, rate int, warmup time.Duration, failing *atomic.Bool, checker func(stop <-chan struct{})) (result, error) {
	failing.Store(false)
	stop := make(chan struct{})
	if checker != nil {
		go checker(stop)
	}
	defer close(stop)
	interval := time.Second / time.Duration(rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	var failedAt time.Time
	var res result
	refused := make([]bool, len(boxes))
	hc := &http.Client{Timeout: 3 * time.Second}
	call := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	for i := 0; ; i++ {
		<-tick.C
		if failedAt.IsZero() && time.Since(start) >= warmup {
			failing.Store(true)
			failedAt = time.Now()
		}
		b := boxes[i%len(boxes)]
		b.fake.SendInvoke(fmt.Sprintf("%s-%d", id, i))
		var wasRefused, called bool
		if checker == nil {
			_ = b.cb.Do(ctx, id, func(ctx context.Context) error { called = true; return call(ctx) },
				func(_ context.Context, err error) error { return nil })
			wasRefused = !called
		} else {
			allowed, _ := b.cb.Allow(ctx, id)
			if allowed {
				called = true
				_ = call(ctx)
			}
			wasRefused = !allowed
		}
		if failedAt.IsZero() {
			continue
		}
		if called {
			res.callsToFailed++
		}
		if wasRefused {
			if res.firstRefused == 0 {
				res.firstRefused = time.Since(failedAt)
			}
			refused[i%len(boxes)] = true
			if !slices.Contains(refused, false) {
				res.allRefused = time.Since(failedAt)
				return res, nil
			}
		}
		if time.Since(failedAt) > 5*time.Minute {
			return res, fmt.Errorf("%s: not refused after 5 minutes", id)
		}
	}
}

func print(passive, rate30, fast, hc []result, rate int, check time.Duration, runs int) {
	med := func(rs []result, f func(result) time.Duration) time.Duration {
		var ds []time.Duration
		for _, r := range rs {
			ds = append(ds, f(r))
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	medCalls := func(rs []result) int {
		var ns []int
		for _, r := range rs {
			ns = append(ns, r.callsToFailed)
		}
		slices.Sort(ns)
		return ns[len(ns)/2]
	}
	first := func(r result) time.Duration { return r.firstRefused }
	all := func(r result) time.Duration { return r.allRefused }
	scale := float64(time.Minute) / float64(check)
	fmt.Printf("Measured %s on %s/%s, %d CPUs, %s; %d calls/s over 2 extension processes, medians of %d runs; health checks every %s (scaled ×%.0f to rate(1 minute)).\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), rate, runs, check, scale)
	fmt.Println("| Detection | First caller refused | Every sandbox refuses | Calls sent to the failed service |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| Passive, defaults: local trip after 10 consecutive failures, or 5 that began 0.6 s before, in each sandbox (after 35s healthy) | %s | %s | %d |\n", round(med(passive, first)), round(med(passive, all)), medCalls(passive))
	fmt.Printf("| Passive, rate alone (50%% over 30s; local trip off, after 35s healthy) | %s | %s | %d |\n", round(med(rate30, first)), round(med(rate30, all)), medCalls(rate30))
	fmt.Printf("| Passive, rate alone, window 10s (after 15s healthy) | %s | %s | %d |\n", round(med(fast, first)), round(med(fast, all)), medCalls(fast))
	fmt.Printf("| Health checks alone, every %s (measured) | %s | %s | %d |\n", check, round(med(hc, first)), round(med(hc, all)), medCalls(hc))
	fmt.Printf("| Health checks alone, rate(1 minute) (scaled) | ≈ %s | ≈ %s | ≈ %d |\n",
		round(time.Duration(float64(med(hc, first))*scale)), round(time.Duration(float64(med(hc, all))*scale)), int(float64(medCalls(hc))*scale))
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(10 * time.Millisecond)
}
