// Command benchcmd measures the extension and prints one Markdown table:
// cache-hit lookup latency over loopback from another process beside a
// constant loopback HTTP server (the floor) and a direct DynamoDB GetItem
// against dynalite, lookups per second with 2 cores, time from process
// start to the first event/next call, peak resident memory, the stripped
// binary size, and the first lookup after a pause longer than the maximum
// age (CIRCUIT_BREAKER_MAX_AGE) beside a cache hit. Run it with
// "make bench" from the repository root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/benchenv"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

const token = "bench-token"

func main() {
	floor := flag.String("floor-server", "", "internal: serve the constant floor server on this address")
	lookups := flag.Int("n", 20000, "sequential lookups per latency row")
	dynamoN := flag.Int("dynamo-n", 2000, "sequential GetItem calls against dynalite")
	duration := flag.Duration("throughput-time", 3*time.Second, "duration of the throughput run")
	starts := flag.Int("starts", 20, "process starts measured")
	pauses := flag.Int("pauses", 200, "pauses longer than the maximum age measured per variant")
	flag.Parse()
	if *floor != "" {
		serveFloor(*floor)
		return
	}
	if err := run(*lookups, *dynamoN, *starts, *pauses, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// serveFloor is the floor: the smallest Go loopback HTTP server, answering
// a constant JSON body of the same size as a circuit answer.
func serveFloor(addr string) {
	body := []byte(`{"id":"bench","state":"CLOSED","allowed":true,"version":1,"updatedAt":"2026-01-02T03:04:05Z","stale":false,"ageMs":100}` + "\n")
	_ = http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
}

type row struct{ name, value, target string }

func run(n, dynamoN, starts, pauses int, dur time.Duration) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "cb-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := benchenv.BuildExtension(ctx, tmp, "")
	if err != nil {
		return err
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return err
	}
	// The layer's default architecture, built exactly as the construct does.
	armBin, err := benchenv.BuildExtension(ctx, tmp, "arm64")
	if err != nil {
		return err
	}
	armFi, err := os.Stat(armBin)
	if err != nil {
		return err
	}

	table := "circuits-bench"
	dyn, err := benchenv.Table(ctx, table, "bench")
	if err != nil {
		return err
	}
	defer dyn.Stop()
	db := dyn.Client()
	env := func(port int, services string, runtimeAPI string) []string {
		return []string{
			"AWS_LAMBDA_RUNTIME_API=" + runtimeAPI,
			"CIRCUIT_BREAKER_TABLE=" + table,
			"CIRCUIT_BREAKER_SERVICES=" + services,
			"CIRCUIT_BREAKER_PORT=" + strconv.Itoa(port),
			"CIRCUIT_BREAKER_LOG_LEVEL=warn",
			"AWS_REGION=us-east-1",
			"AWS_ACCESS_KEY_ID=local",
			"AWS_SECRET_ACCESS_KEY=local",
			"AWS_SESSION_TOKEN=" + token,
			"AWS_ENDPOINT_URL_DYNAMODB=" + dyn.Endpoint,
			"GOMAXPROCS=2",
		}
	}

	// Start to first event/next, without and with the prefetch.
	startNoPrefetch, err := measureStarts(bin, starts, func(api string) []string { return env(freePort(), "", api) })
	if err != nil {
		return err
	}
	startPrefetch, err := measureStarts(bin, starts, func(api string) []string { return env(freePort(), "bench", api) })
	if err != nil {
		return err
	}

	// The long-running extension.
	fake := extapitest.Start()
	defer fake.Close()
	port := freePort()
	ext := exec.Command(bin)
	ext.Env, ext.Stderr = env(port, "bench", fake.Addr), os.Stderr
	if err := ext.Start(); err != nil {
		return err
	}
	defer func() { _ = ext.Process.Kill(); _ = ext.Wait() }()
	select {
	case <-fake.FirstNext():
	case <-time.After(10 * time.Second):
		return fmt.Errorf("extension did not call event/next")
	}

	floorPort := freePort()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	floor := exec.Command(self, "-floor-server", "127.0.0.1:"+strconv.Itoa(floorPort))
	floor.Env = append(os.Environ(), "GOMAXPROCS=2")
	if err := floor.Start(); err != nil {
		return err
	}
	defer func() { _ = floor.Process.Kill(); _ = floor.Wait() }()
	if err := waitHTTP("http://127.0.0.1:" + strconv.Itoa(floorPort) + "/"); err != nil {
		return err
	}

	extURL := "http://127.0.0.1:" + strconv.Itoa(port) + "/circuits/bench"
	floorURL := "http://127.0.0.1:" + strconv.Itoa(floorPort) + "/circuits/bench"
	extLat, floorLat, err := pairedLatency(extURL, floorURL, n, latencyRounds)
	if err != nil {
		return err
	}
	// The same cache hit with the maximum age turned off: a busy sandbox
	// never waits, so the two should match within noise.
	off, err := startExtension(bin, env(freePort(), "bench", ""), "CIRCUIT_BREAKER_MAX_AGE=0")
	if err != nil {
		return err
	}
	defer off.stop()
	maxAgeLat, offLat, err := pairedLatency(extURL, off.url("bench"), n, latencyRounds)
	if err != nil {
		return err
	}
	off.stop()

	// The first lookup after a pause longer than the maximum age.
	pause, err := measurePauses(bin, env(freePort(), "bench", ""), pauses)
	if err != nil {
		return err
	}

	dynLat, err := dynamoLatency(db, table, dynamoN)
	if err != nil {
		return err
	}
	extRate, err := throughput(extURL, dur)
	if err != nil {
		return err
	}
	floorRate, err := throughput(floorURL, dur)
	if err != nil {
		return err
	}
	rss, err := peakRSS(ext.Process.Pid)
	if err != nil {
		return err
	}

	rows := []row{
		{"Cache-hit lookup, extension, p50 / p99", fmtDur(extLat.p50) + " / " + fmtDur(extLat.p99), fmt.Sprintf("p50 ≤ 1.5× floor (%.2f×)", float64(extLat.p50)/float64(floorLat.p50))},
		{"Floor: constant Go loopback HTTP server, p50 / p99", fmtDur(floorLat.p50) + " / " + fmtDur(floorLat.p99), ""},
		{"Cache-hit lookup, maximum age on (default 2s) / off (0), p50", fmtDur(maxAgeLat.p50) + " / " + fmtDur(offLat.p50), fmt.Sprintf("unchanged within noise (%.2f×)", float64(maxAgeLat.p50)/float64(offLat.p50))},
		{"Cache-hit lookup, maximum age on / off, p99", fmtDur(maxAgeLat.p99) + " / " + fmtDur(offLat.p99), ""},
		{"First lookup after a pause > maximum age, INVOKE first, p50 / p99", fmtDur(pause.invoke.p50) + " / " + fmtDur(pause.invoke.p99), ""},
		{"  added wait against a cache hit (" + fmtDur(pause.hit.p50) + "), p50 / p99", fmtDur(pause.invokeAdded.p50) + " / " + fmtDur(pause.invokeAdded.p99), ""},
		{"  share of the read done by the INVOKE when the lookup arrived, p50", fmt.Sprintf("%.0f %% (read %s p50; the INVOKE's read had started in %d of %d)", 100*pause.headStart, fmtDur(pause.read), pause.running, pause.samples), ""},
		{"First lookup after a pause > maximum age, no INVOKE (the lookup starts the read), p50 / p99", fmtDur(pause.alone.p50) + " / " + fmtDur(pause.alone.p99), ""},
		{"  added wait against a cache hit, p50 / p99", fmtDur(pause.aloneAdded.p50) + " / " + fmtDur(pause.aloneAdded.p99), ""},
		{"Direct GetItem against dynalite, p50 / p99", fmtDur(dynLat.p50) + " / " + fmtDur(dynLat.p99), ""},
		{"Lookups/s, extension with GOMAXPROCS=2", fmt.Sprintf("%.0f (floor: %.0f)", extRate, floorRate), ""},
		{"Process start → first event/next, p50 (no prefetch)", fmtDur(startNoPrefetch.p50), "< 10 ms"},
		{"Process start → first event/next, p50 (1 circuit prefetched from dynalite)", fmtDur(startPrefetch.p50), ""},
		{"Peak RSS of the extension after the run", fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20)), "< 15 MB"},
		{"Stripped binary size (" + runtime.GOOS + "/" + runtime.GOARCH + ")", fmt.Sprintf("%.2f MiB (%.2f MB)", float64(fi.Size())/(1<<20), float64(fi.Size())/1e6), "< 8 MB"},
		{"Stripped binary size (linux/arm64, the layer's default)", fmt.Sprintf("%.2f MiB (%.2f MB)", float64(armFi.Size())/(1<<20), float64(armFi.Size())/1e6), "< 8 MB"},
	}
	fmt.Printf("Measured %s on %s/%s, %d CPUs, %s; %d sequential lookups per latency row over one keep-alive connection, in 10 rounds alternating with the floor (or the other setting), %d GetItem calls, %d starts, %d pauses per variant.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), n, dynamoN, starts, pauses)
	fmt.Println("| Measurement | Result | Target |")
	fmt.Println("|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, r.value, r.target)
	}
	return nil
}

type dist struct{ p50, p99 time.Duration }

func percentiles(ds []time.Duration) dist {
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return dist{at(0.50), at(0.99)}
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

func get(c *http.Client, url string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set(api.HeaderToken, token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// latencyRounds is how many alternating rounds pairedLatency runs.
const latencyRounds = 10

// pairedLatency measures n sequential lookups against each URL, in rounds
// that alternate between the two, so that a change in the machine's load
// during the run weighs on both alike; the percentiles are over all of a
// URL's samples.
func pairedLatency(urlA, urlB string, n, rounds int) (dist, dist, error) {
	ca, cb := newClient(1), newClient(1)
	for range 1000 { // warm up both connections
		if err := get(ca, urlA); err != nil {
			return dist{}, dist{}, err
		}
		if err := get(cb, urlB); err != nil {
			return dist{}, dist{}, err
		}
	}
	per := max(1, n/rounds)
	var as, bs []time.Duration
	for range rounds {
		for _, side := range []struct {
			c   *http.Client
			url string
			out *[]time.Duration
		}{{ca, urlA, &as}, {cb, urlB, &bs}} {
			for range per {
				start := time.Now()
				if err := get(side.c, side.url); err != nil {
					return dist{}, dist{}, err
				}
				*side.out = append(*side.out, time.Since(start))
			}
		}
	}
	return percentiles(as), percentiles(bs), nil
}

func dynamoLatency(db *dynamodb.Client, table string, n int) (dist, error) {
	ctx := context.Background()
	in := &dynamodb.GetItemInput{
		TableName: aws.String(table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{store.KeyAttribute: &types.AttributeValueMemberS{Value: "bench"}},
	}
	for range 100 {
		if _, err := db.GetItem(ctx, in); err != nil {
			return dist{}, err
		}
	}
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		if _, err := db.GetItem(ctx, in); err != nil {
			return dist{}, err
		}
		ds[i] = time.Since(start)
	}
	return percentiles(ds), nil
}

// throughput runs 16 keep-alive clients against url for d.
func throughput(url string, d time.Duration) (float64, error) {
	const workers = 16
	c := newClient(workers)
	var count atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if err := get(c, url); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, err
	}
	return float64(count.Load()) / time.Since(start).Seconds(), nil
}

// measureStarts starts the extension n times against a fresh fake
// Extensions API and returns the time from cmd.Start to the first
// event/next call.
func measureStarts(bin string, n int, env func(runtimeAPI string) []string) (dist, error) {
	ds := make([]time.Duration, 0, n)
	for range n {
		fake := extapitest.Start()
		cmd := exec.Command(bin)
		cmd.Env, cmd.Stderr = env(fake.Addr), os.Stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			fake.Close()
			return dist{}, err
		}
		select {
		case <-fake.FirstNext():
			ds = append(ds, fake.FirstNextAt().Sub(start))
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			fake.Close()
			return dist{}, fmt.Errorf("no event/next within 10s")
		}
		fake.SendShutdown(time.Second)
		_ = cmd.Wait()
		fake.Close()
	}
	return percentiles(ds), nil
}

// extension is a long-running extension process against its own fake
// Extensions API.
type extension struct {
	cmd    *exec.Cmd
	fake   *extapitest.Server
	port   int
	stderr *lockedBuffer
	done   bool
}

// startExtension starts bin with env plus extra variables and waits for its
// first event/next.
func startExtension(bin string, env []string, extra ...string) (*extension, error) {
	e := &extension{fake: extapitest.Start(), stderr: &lockedBuffer{}}
	var rest []string
	for _, kv := range env {
		switch {
		case strings.HasPrefix(kv, "AWS_LAMBDA_RUNTIME_API="):
			kv = "AWS_LAMBDA_RUNTIME_API=" + e.fake.Addr
		case strings.HasPrefix(kv, "CIRCUIT_BREAKER_PORT="):
			e.port, _ = strconv.Atoi(strings.TrimPrefix(kv, "CIRCUIT_BREAKER_PORT="))
		}
		rest = append(rest, kv)
	}
	e.cmd = exec.Command(bin)
	e.cmd.Env, e.cmd.Stderr = append(rest, extra...), e.stderr
	if err := e.cmd.Start(); err != nil {
		e.fake.Close()
		return nil, err
	}
	select {
	case <-e.fake.FirstNext():
		return e, nil
	case <-time.After(10 * time.Second):
		e.stop()
		return nil, fmt.Errorf("extension did not call event/next: %s", e.stderr.String())
	}
}

func (e *extension) url(id string) string {
	return "http://127.0.0.1:" + strconv.Itoa(e.port) + "/circuits/" + id
}

func (e *extension) stop() {
	if e.done {
		return
	}
	e.done = true
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	e.fake.Close()
}

// lockedBuffer collects a process's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// pauseResult is the first lookup after a pause longer than the maximum
// age, with and without an INVOKE ahead of it, beside a cache hit.
type pauseResult struct {
	invoke, alone           dist // latency of the first lookup
	invokeAdded, aloneAdded dist // the same less the cache hit's p50
	hit                     dist // a cache hit right after
	read                    time.Duration
	headStart               float64 // share of the read run when the lookup arrived, p50
	running, samples        int     // lookups that found the INVOKE's read running or done, of all
}

// Scaled-down settings for the pause rows, so that one pause takes 150 ms
// rather than seconds; the wait is one read either way.
const (
	pauseRefresh = 50 * time.Millisecond
	pauseMaxAge  = 100 * time.Millisecond
	pauseLength  = 150 * time.Millisecond
)

// measurePauses measures the first lookup after a pause, n times with an
// INVOKE handed to the extension just before it (as the runtime gets the
// same event at the same moment) and n times without, so that the lookup
// starts the read itself; each in its own extension process.
func measurePauses(bin string, env []string, n int) (pauseResult, error) {
	inv, invHits, invWaits, err := pauseRun(bin, env, n, true)
	if err != nil {
		return pauseResult{}, err
	}
	alone, aloneHits, aloneWaits, err := pauseRun(bin, env, n, false)
	if err != nil {
		return pauseResult{}, err
	}
	r := pauseResult{invoke: percentiles(inv), alone: percentiles(alone), hit: percentiles(append(invHits, aloneHits...))}
	less := func(ds []time.Duration) dist {
		out := make([]time.Duration, len(ds))
		for i, d := range ds {
			out[i] = max(0, d-r.hit.p50)
		}
		return percentiles(out)
	}
	r.invokeAdded, r.aloneAdded = less(inv), less(alone)

	// The read's length, from the lookups that started it themselves.
	var reads []time.Duration
	for _, w := range aloneWaits {
		reads = append(reads, w.running+w.waited)
	}
	if len(reads) == 0 {
		return pauseResult{}, fmt.Errorf("no lookup after a pause waited for a read")
	}
	r.read = percentiles(reads).p50
	// The share of the INVOKE's read done when the lookup arrived; a
	// lookup that did not wait found it done.
	shares := make([]float64, 0, n)
	for _, w := range invWaits {
		shares = append(shares, float64(w.running)/float64(w.running+w.waited))
		if w.running > 0 {
			r.running++
		}
	}
	r.running += n - len(invWaits)
	r.samples = n
	for len(shares) < n {
		shares = append(shares, 1)
	}
	slices.Sort(shares)
	r.headStart = shares[len(shares)/2]
	return r, nil
}

// wait is the extension's own account of one lookup that waited for a
// fresh value: how long the read had run when the lookup arrived, and how
// long the lookup then waited.
type wait struct{ running, waited time.Duration }

// pauseRun runs an extension with a short refresh interval and maximum age
// and, n times, leaves it idle for longer than the maximum age, then looks
// the circuit up (after an INVOKE when invoke is set), then once more: a
// plain cache hit. It returns both latencies and the waits the extension
// logged.
func pauseRun(bin string, env []string, n int, invoke bool) (first, hits []time.Duration, waits []wait, err error) {
	e, err := startExtension(bin, env,
		"CIRCUIT_BREAKER_REFRESH_INTERVAL="+pauseRefresh.String(),
		"CIRCUIT_BREAKER_MAX_AGE="+pauseMaxAge.String(),
		"CIRCUIT_BREAKER_MISS_TIMEOUT=2s",
		"CIRCUIT_BREAKER_LOG_LEVEL=debug")
	if err != nil {
		return nil, nil, nil, err
	}
	defer e.stop()
	c := newClient(1)
	url := e.url("bench")
	for range 100 {
		if err := get(c, url); err != nil {
			return nil, nil, nil, err
		}
	}
	time.Sleep(pauseLength)
	start := len(e.stderr.String())
	for i := range n {
		time.Sleep(pauseLength)
		if invoke {
			e.fake.SendInvoke(fmt.Sprintf("req-%d", i))
		}
		t0 := time.Now()
		if err := get(c, url); err != nil {
			return nil, nil, nil, err
		}
		first = append(first, time.Since(t0))
		t0 = time.Now()
		if err := get(c, url); err != nil {
			return nil, nil, nil, err
		}
		hits = append(hits, time.Since(t0))
	}
	time.Sleep(100 * time.Millisecond) // let the last log lines arrive
	for _, line := range strings.Split(e.stderr.String()[start:], "\n") {
		var rec struct {
			Msg           string  `json:"msg"`
			ReadRunningMs float64 `json:"readRunningMs"`
			WaitedMs      float64 `json:"waitedMs"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "waited for a fresh value" {
			continue
		}
		ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
		if w := (wait{ms(rec.ReadRunningMs), ms(rec.WaitedMs)}); w.running+w.waited > 0 {
			waits = append(waits, w)
		}
	}
	return first, hits, waits, nil
}

// peakRSS reads the peak resident set size (VmHWM) of pid, in bytes.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak RSS needs /proc: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func waitHTTP(url string) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering", url)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}
