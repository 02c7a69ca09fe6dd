// Command clientbenchcmd measures the cost of a cache-hit lookup through
// each of the extension's clients (Go, Python, Node.js) against the real
// extension binary beside dynalite, and prints one Markdown table with the
// medians and their ratio to the Go client's, measured in the same run.
// Run it with "make bench-clients" from the repository root.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/bench/benchenv"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/client"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/clients"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
)

const (
	token   = "client-bench-token"
	service = "bench"
)

// pythonLoop and nodeLoop time n calls of one operation ("allowed" or
// "state") through the client from the layer, after a warm-up, and print
// the durations in nanoseconds and the number of answers the failure
// policy gave (the extension did not answer within the timeout) as JSON.
const pythonLoop = `
import json, sys, time
import lambda_circuit_breaker as cb
op, n = sys.argv[1], int(sys.argv[2])
c = cb.Client()
f = c.allowed if op == "allowed" else c.state
for _ in range(500):
    f("bench")
out, fail = [], 0
for _ in range(n):
    t = time.perf_counter_ns()
    r = f("bench")
    out.append(time.perf_counter_ns() - t)
    if r is False:
        sys.exit("the extension refused the call")
    if isinstance(r, dict) and (not r.get("allowed") or r.get("failMode")):
        fail += 1
print(json.dumps({"ns": out, "fail": fail}))
`

const nodeLoop = `
const cb = require("lambda-circuit-breaker");
const [op, n] = [process.argv[1], Number(process.argv[2])];
const c = new cb.Client();
(async () => {
  for (let i = 0; i < 500; i++) await c[op]("bench");
  const out = [];
  let fail = 0;
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    const r = await c[op]("bench");
    out.push(Number(process.hrtime.bigint() - t));
    if (r === false) throw new Error("the extension refused the call");
    if (typeof r === "object" && (!r.allowed || r.failMode)) fail++;
  }
  console.log(JSON.stringify({ ns: out, fail }));
  c.close();
})();
`

func main() {
	n := flag.Int("n", 10000, "timed lookups per client and operation")
	rounds := flag.Int("rounds", 5, "rounds alternating between the clients")
	flag.Parse()
	if err := run(*n, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "bench-clients:", err)
		os.Exit(1)
	}
}

func run(n, rounds int) error {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "cb-client-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bin, err := benchenv.BuildExtension(ctx, tmp, "")
	if err != nil {
		return err
	}
	layer := filepath.Join(tmp, "layer")
	if err := clients.Write(layer); err != nil {
		return err
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		return fmt.Errorf("python3: %w", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}

	table := "circuits-client-bench"
	dyn, err := benchenv.Table(ctx, table, service)
	if err != nil {
		return err
	}
	defer dyn.Stop()

	fake := extapitest.Start()
	defer fake.Close()
	port := freePort()
	env := []string{
		"CIRCUIT_BREAKER_PORT=" + strconv.Itoa(port),
		"AWS_SESSION_TOKEN=" + token,
		"CIRCUIT_BREAKER_SERVICES=" + service,
	}
	ext := exec.Command(bin)
	ext.Env = append([]string{
		"AWS_LAMBDA_RUNTIME_API=" + fake.Addr,
		"CIRCUIT_BREAKER_TABLE=" + table,
		"CIRCUIT_BREAKER_LOG_LEVEL=warn",
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=local",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_ENDPOINT_URL_DYNAMODB=" + dyn.Endpoint,
		"GOMAXPROCS=2",
	}, env...)
	ext.Stderr = os.Stderr
	if err := ext.Start(); err != nil {
		return err
	}
	defer func() { _ = ext.Process.Kill(); _ = ext.Wait() }()
	select {
	case <-fake.FirstNext():
	case <-time.After(20 * time.Second):
		return fmt.Errorf("extension did not call event/next")
	}

	langEnv := append(os.Environ(), env...)
	langEnv = append(langEnv, "PYTHONPATH="+filepath.Join(layer, "python"), "NODE_PATH="+filepath.Join(layer, "nodejs", "node_modules"), "PYTHONDONTWRITEBYTECODE=1")
	goClient := client.New(client.WithBaseURL("http://127.0.0.1:"+strconv.Itoa(port)), client.WithToken(token))

	type series map[string][]time.Duration // operation -> samples
	samples := map[string]series{"Go": {}, "Python": {}, "Node.js": {}}
	failed := map[string]int{}
	ops := []string{"allowed", "state"}
	per := max(1, n/rounds)
	for range rounds {
		for _, op := range ops {
			ds, k, err := goLoop(goClient, op, per)
			if err != nil {
				return err
			}
			samples["Go"][op] = append(samples["Go"][op], ds...)
			failed["Go"] += k
			ds, k, err = langLoop(langEnv, py, []string{"-c", pythonLoop, op, strconv.Itoa(per)})
			if err != nil {
				return fmt.Errorf("python: %w", err)
			}
			samples["Python"][op] = append(samples["Python"][op], ds...)
			failed["Python"] += k
			ds, k, err = langLoop(langEnv, node, []string{"-e", nodeLoop, op, strconv.Itoa(per)})
			if err != nil {
				return fmt.Errorf("node: %w", err)
			}
			samples["Node.js"][op] = append(samples["Node.js"][op], ds...)
			failed["Node.js"] += k
		}
	}

	pyVersion, _ := exec.Command(py, "--version").Output()
	nodeVersion, _ := exec.Command(node, "--version").Output()
	fmt.Printf("Measured %s on %s/%s, %d CPUs; %s, Python %s, Node.js %s; %d cache-hit lookups per client and call, in %d rounds alternating between the clients, each client over its own keep-alive connection to one extension.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(),
		trimVersion(string(pyVersion), "Python "), trimVersion(string(nodeVersion), "v"), per*rounds, rounds)
	fmt.Println("| Client | `allowed` p50 / p99 | `state` p50 / p99 | p50 against Go (`allowed` / `state`) | answers past the timeout |")
	fmt.Println("|---|---|---|---|---|")
	goA, goS := median(samples["Go"]["allowed"]), median(samples["Go"]["state"])
	for _, name := range []string{"Go", "Python", "Node.js"} {
		a, s := samples[name]["allowed"], samples[name]["state"]
		fmt.Printf("| %s | %s / %s | %s / %s | %.2f× / %.2f× | %d of %d |\n", name,
			fmtDur(median(a)), fmtDur(pct(a, 0.99)), fmtDur(median(s)), fmtDur(pct(s, 0.99)),
			float64(median(a))/float64(goA), float64(median(s))/float64(goS), failed[name], len(a)+len(s))
	}
	return nil
}

// goLoop times n calls of op through the Go client (Allow for "allowed",
// State for "state"), after a warm-up, and counts the answers the failure
// policy gave.
func goLoop(c *client.Client, op string, n int) ([]time.Duration, int, error) {
	ctx := context.Background()
	// call reports whether the failure policy answered.
	call := func() (bool, error) {
		if op == "allowed" {
			ok, err := c.Allow(ctx, service)
			if err == nil && !ok {
				return false, fmt.Errorf("the extension refused the call")
			}
			return err != nil, nil
		}
		st, err := c.State(ctx, service)
		if err == nil && !st.Allowed {
			return false, fmt.Errorf("the extension refused the call: %+v", st)
		}
		return err != nil || st.FailMode, nil
	}
	for range 500 {
		if _, err := call(); err != nil {
			return nil, 0, err
		}
	}
	out := make([]time.Duration, 0, n)
	fails := 0
	for range n {
		start := time.Now()
		failed, err := call()
		if err != nil {
			return nil, 0, err
		}
		out = append(out, time.Since(start))
		if failed {
			fails++
		}
	}
	return out, fails, nil
}

// langLoop runs one interpreter loop and decodes its samples and the
// count of answers the failure policy gave.
func langLoop(env []string, bin string, args []string) ([]time.Duration, int, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env, cmd.Stderr = env, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, 0, err
	}
	var res struct {
		NS   []int64 `json:"ns"`
		Fail int     `json:"fail"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, 0, fmt.Errorf("decode samples: %w", err)
	}
	ds := make([]time.Duration, len(res.NS))
	for i, v := range res.NS {
		ds[i] = time.Duration(v)
	}
	return ds, res.Fail, nil
}

func median(ds []time.Duration) time.Duration { return pct(ds, 0.5) }

func pct(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

func trimVersion(s, prefix string) string {
	return strings.TrimPrefix(strings.TrimSpace(s), prefix)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
