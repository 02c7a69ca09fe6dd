package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/buildflags"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// The fleet tests run the real extension binary as separate processes,
// each with its own fake Extensions API, against one dynalite table: the
// way several execution environments of one function share the table.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func extensionBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cb-ext-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "circuit-breaker")
		out, err := exec.Command("go", append(append([]string{"build"}, buildflags.Extension...), "-o", binPath, "github.com/circuitbreaked/lambda-circuit-breaker/extension")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	addr string
	fake *extapitest.Server
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

func startFleet(t *testing.T, n int, env map[string]string) []*proc {
	t.Helper()
	bin := extensionBinary(t)
	var ps []*proc
	for i := range n {
		fake := extapitest.Start()
		t.Cleanup(fake.Close)
		ln, err := listenAny()
		if err != nil {
			t.Fatal(err)
		}
		port := portOf(ln)
		ln.Close()
		p := &proc{addr: "127.0.0.1:" + port, fake: fake, logs: &syncBuffer{}, done: make(chan error, 1)}
		p.cmd = exec.Command(bin)
		p.cmd.Env = []string{"AWS_LAMBDA_RUNTIME_API=" + fake.Addr, "CIRCUIT_BREAKER_PORT=" + port, "CIRCUIT_BREAKER_REFRESH_INTERVAL=100ms"}
		for k, v := range env {
			p.cmd.Env = append(p.cmd.Env, k+"="+v)
		}
		p.cmd.Stderr = p.logs
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.done <- p.cmd.Wait() }()
		t.Cleanup(func() {
			select {
			case <-p.done:
			default:
				_ = p.cmd.Process.Kill()
				<-p.done
			}
			if t.Failed() {
				t.Logf("extension %d logs:\n%s", i, p.logs)
			}
		})
		ps = append(ps, p)
	}
	for _, p := range ps {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + p.addr + "/health")
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("extension at %s not ready: %v\n%s", p.addr, err, p.logs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return ps
}

func (p *proc) lookup(t *testing.T, id string) api.Circuit {
	t.Helper()
	code, body := get(t, p.addr, "/circuits/"+id, "tok")
	var c api.Circuit
	if code != 200 || json.Unmarshal(body, &c) != nil {
		t.Fatalf("GET %s = %d %s", id, code, body)
	}
	return c
}

func (p *proc) report(t *testing.T, id string, outs ...api.Outcome) api.Accepted {
	t.Helper()
	var body []byte
	if len(outs) == 1 {
		body, _ = json.Marshal(outs[0])
	} else {
		body, _ = json.Marshal(api.Outcomes{Outcomes: outs})
	}
	req, _ := http.NewRequest("POST", "http://"+p.addr+"/circuits/"+id+"/outcomes", bytes.NewReader(body))
	req.Header.Set(api.HeaderToken, "tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return api.Accepted{}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var a api.Accepted
	if resp.StatusCode != 202 || json.Unmarshal(data, &a) != nil {
		t.Errorf("POST outcomes = %d %s", resp.StatusCode, data)
	}
	return a
}

func outcome(ok bool, ms int64) api.Outcome { return api.Outcome{Success: &ok, LatencyMs: ms} }

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFleetFailuresTripTheCircuit(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := store.New(srv.Client(), table)
	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_SERVICES"] = "payments"
	fleet := startFleet(t, 3, env)
	for i, p := range fleet {
		if c := p.lookup(t, "payments"); c.State != "CLOSED" || !c.Allowed {
			t.Fatalf("extension %d before: %+v", i, c)
		}
		// 20 failures in 25 calls each: no single extension's counts are
		// improbable enough at 0.8 × the 50 % threshold, the fleet's are.
		for range 5 {
			p.report(t, "payments", outcome(false, 20), outcome(false, 20), outcome(false, 20), outcome(true, 20))
			p.report(t, "payments", outcome(false, 30))
		}
	}
	// Each INVOKE flushes within its budget, then evaluates the window;
	// on a busy machine the work may take more than one invocation, and
	// more than 10 s in all: wait up to 25 s, inside the 30 s window.
	next := time.Now()
	waitFor(t, "the circuit to open", 25*time.Second, func() bool {
		if time.Now().After(next) {
			for _, p := range fleet {
				p.fake.SendInvoke("flush")
			}
			next = time.Now().Add(300 * time.Millisecond)
		}
		c, _, err := st.Get(context.Background(), "payments")
		return err == nil && c.State == circuit.Open
	})
	c, _, _ := st.Get(context.Background(), "payments")
	// The flush that sees all 75 calls trips; every extension reported 4
	// failures in 5 calls.
	if c.Version != 1 || !regexp.MustCompile(`^failure rate 80% over 30s \(75 calls\)$`).MatchString(c.Reason) {
		t.Errorf("circuit = %+v; want one transition with the fleet's rate", c)
	}
	// The extension logs the transition after its write has landed, so
	// the table can show it first: wait for the line.
	transitions := 0
	waitFor(t, "the transition to be logged", 5*time.Second, func() bool {
		transitions = 0
		for _, p := range fleet {
			transitions += strings.Count(p.logs.String(), `"msg":"circuit transition"`)
		}
		return transitions > 0
	})
	if transitions != 1 {
		t.Errorf("%d transitions logged, want 1", transitions)
	}
	// Each extension serves OPEN after its next refresh.
	time.Sleep(150 * time.Millisecond)
	for _, p := range fleet {
		p.fake.SendInvoke("refresh")
	}
	for i, p := range fleet {
		waitFor(t, fmt.Sprintf("extension %d to serve OPEN", i), 5*time.Second, func() bool {
			c := p.lookup(t, "payments")
			return c.State == "OPEN" && !c.Allowed
		})
	}
}

func TestFleetLosesNoCounts(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := store.New(srv.Client(), table)
	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_LOG_LEVEL"] = "debug"
	fleet := startFleet(t, 3, env)
	const perProc, batches = 150, 4
	start := time.Now()
	var sent atomic.Int64
	var wg sync.WaitGroup
	for _, p := range fleet {
		for b := range batches {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < perProc/batches+1 && int(sent.Load()) < 3*perProc*2; i++ {
					if i%10 == 0 {
						outs := []api.Outcome{outcome(true, 1), outcome(false, 2), outcome(true, 3)}
						p.report(t, "orders", outs...)
						sent.Add(3)
					} else {
						p.report(t, "orders", outcome(b%2 == 0, 5))
						sent.Add(1)
					}
					if i == perProc/batches/2 && b == 0 {
						p.fake.SendInvoke("mid") // a flush while reports keep coming
					}
				}
			}()
		}
	}
	wg.Wait()
	// A generous deadline: this test is about counts adding up across
	// processes, on a machine that may be busy with other test packages;
	// the 2 s Lambda deadline is covered by the SHUTDOWN tests.
	for _, p := range fleet {
		p.fake.SendShutdown(6 * time.Second)
	}
	for i, p := range fleet {
		select {
		case err := <-p.done:
			p.done <- err
			if err != nil {
				t.Fatalf("extension %d exited with %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("extension %d did not exit", i)
		}
	}
	bs, err := st.GetBuckets(context.Background(), "orders", breaker.WindowStarts(time.Now(), time.Since(start).Truncate(5*time.Second)+10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var sum circuit.Counts
	for _, b := range bs {
		sum = sum.Add(b.Counts)
	}
	if sum.Calls != sent.Load() {
		t.Fatalf("table holds %d calls in %d buckets, %d were reported", sum.Calls, len(bs), sent.Load())
	}
	t.Logf("%d outcomes from 3 processes, %d in the table (%d buckets)", sent.Load(), sum.Calls, len(bs))
}

func TestFleetProbeLease(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	st := store.New(srv.Client(), table)
	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_POLICIES"] = `{"k2":{"halfOpenProbes":2,"successThreshold":1}}`
	// A busy test machine can make dynalite slower than the 100 ms default
	// wait; the fail mode would then answer instead of the lease. Wait long
	// enough, and deny when in doubt, so only leases admit callers.
	env["CIRCUIT_BREAKER_MISS_TIMEOUT"] = "5s"
	env["CIRCUIT_BREAKER_FAIL_MODE"] = "deny"
	fleet := startFleet(t, 3, env)
	var mover *proc // k1's prober: the extension that ended its cool-down
	for _, tc := range []struct {
		id string
		k  int
	}{{"k1", 1}, {"k2", 2}} {
		putCircuit(t, srv, table, circuit.Circuit{ID: tc.id, State: circuit.Open, Version: 1, OpenCount: 1, RetryAt: time.Now().Add(-time.Second)})
		var mu sync.Mutex
		var probes []api.Circuit
		var probers []*proc
		var wg sync.WaitGroup
		for g := range 20 {
			p := fleet[g%len(fleet)]
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := p.lookup(t, tc.id)
				if c.Allowed {
					mu.Lock()
					probes = append(probes, c)
					probers = append(probers, p)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		// The burst's lookups that the sandbox making the cool-down move
		// answered before its move landed were refused; the others wait
		// their turn (see breaker's claimDeferred). The mover fills the
		// remaining slots with its next lookups, and no sandbox ever gets
		// more than the k leases.
		if len(probes) < 1 || len(probes) > tc.k {
			t.Fatalf("%s: %d callers allowed in the burst, want 1 to %d", tc.id, len(probes), tc.k)
		}
		for deadline := time.Now().Add(5 * time.Second); len(probes) < tc.k && time.Now().Before(deadline); {
			if c := probers[0].lookup(t, tc.id); c.Allowed {
				probes = append(probes, c)
				probers = append(probers, probers[0])
			}
		}
		if len(probes) != tc.k {
			t.Fatalf("%s: %d callers allowed, want exactly %d", tc.id, len(probes), tc.k)
		}
		for _, p := range fleet {
			if c := p.lookup(t, tc.id); c.Allowed {
				t.Fatalf("%s: a lookup past the %d leases was allowed: %+v", tc.id, tc.k, c)
			}
		}
		for _, c := range probes {
			if !c.Probe || c.ProbeToken == "" || c.State != "HALF_OPEN" {
				t.Fatalf("%s: allowed answer %+v is not a probe", tc.id, c)
			}
		}
		if tc.id == "k1" {
			// The mover is the sandbox whose write ended the cool-down, as
			// its log says: a probe of the burst may have gone to another
			// sandbox whose drawn turn came early.
			const moved = `"service":"k1","from":"OPEN","to":"HALF_OPEN"`
			for deadline := time.Now().Add(5 * time.Second); mover == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				for _, p := range fleet {
					if strings.Contains(p.logs.String(), moved) {
						mover = p
					}
				}
			}
			if mover == nil {
				t.Fatal("k1: no sandbox logged the cool-down move")
			}
		}
		ok := outcome(true, 12)
		ok.ProbeToken = probes[0].ProbeToken
		a := probers[0].report(t, tc.id, ok)
		want := map[string]string{"k1": "HALF_OPEN", "k2": "CLOSED"}[tc.id] // successThreshold 2 vs 1
		if a.State != want {
			t.Fatalf("%s: probe outcome answer %+v, want state %s", tc.id, a, want)
		}
		c, _, _ := st.Get(context.Background(), tc.id)
		if string(c.State) != want {
			t.Fatalf("%s: table state %s, want %s", tc.id, c.State, want)
		}
	}
	// A failed probe reopens: k1 is HALF_OPEN with its lease released.
	// The extension that ended the cool-down claims the next probe; the
	// others take their turns later (see breaker's claimDeferred).
	time.Sleep(1100 * time.Millisecond) // local back-off after a busy claim
	c := mover.lookup(t, "k1")
	if !c.Probe {
		t.Fatalf("k1 second probe: %+v", c)
	}
	bad := outcome(false, 12)
	bad.ProbeToken = c.ProbeToken
	if a := mover.report(t, "k1", bad); a.State != "OPEN" {
		t.Fatalf("failed probe answer %+v, want OPEN", a)
	}
}
