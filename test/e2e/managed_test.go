package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
)

const (
	circuitctlPkg = "./infra/circuitctl"
	// workers is the sandbox's AWS_LAMBDA_MAX_CONCURRENCY.
	workers = 4
)

// barrier answers a GET once n requests of the same round have arrived,
// so that the invocations that send them are known to run at once; a
// round not complete within limit answers 504.
type barrier struct {
	n     int
	limit time.Duration
	mu    sync.Mutex
	count int
	round chan struct{}
}

func (b *barrier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	if b.round == nil {
		b.round = make(chan struct{})
	}
	round := b.round
	b.count++
	if b.count%b.n == 0 {
		close(b.round)
		b.round = nil
	}
	b.mu.Unlock()
	select {
	case <-round:
		w.WriteHeader(http.StatusOK)
	case <-time.After(b.limit):
		w.WriteHeader(http.StatusGatewayTimeout)
	case <-r.Context().Done():
	}
}

// miResult mirrors the probe function's output with the fields these
// tests read.
type miResult struct {
	Answers []struct {
		Circuit struct {
			State   string `json:"state"`
			Allowed bool   `json:"allowed"`
			Version int64  `json:"version"`
			Stale   bool   `json:"stale"`
			AgeMs   int64  `json:"ageMs"`
		} `json:"circuit"`
		Error string `json:"error"`
	} `json:"answers"`
	NoTokenStatus int      `json:"noTokenStatus"`
	BeforeStatus  int      `json:"beforeStatus"`
	Reported      int      `json:"reported"`
	ReportErrors  []string `json:"reportErrors"`
}

// miInvoke invokes the probe function. An invocation that finds every
// runtime worker busy is refused at once by the emulator
// (Runtime.Unavailable), where Lambda would route it to another
// environment: it is sent again, until invokeLimit.
func miInvoke(emu *rie.Emulator, event map[string]any) (miResult, error) {
	payload, _ := json.Marshal(event)
	ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
	defer cancel()
	var out []byte
	var err error
	for {
		out, err = emu.Invoke(ctx, payload)
		if err == nil || !strings.Contains(err.Error(), "Runtime.Unavailable") || ctx.Err() != nil {
			break
		}
		select {
		case <-time.After(20 * time.Millisecond): // a worker is busy with another invocation
		case <-ctx.Done():
		}
	}
	if err != nil {
		return miResult{}, err
	}
	var r miResult
	if err := json.Unmarshal(out, &r); err != nil {
		return miResult{}, fmt.Errorf("function output %s: %w", out, err)
	}
	if len(r.Answers) == 0 {
		return r, fmt.Errorf("function output %s: no answer", out)
	}
	return r, nil
}

// windowCounts sums the counts the table holds for id over the last two
// minutes.
func windowCounts(t *testing.T, st *store.Store, id string) circuit.Counts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var starts []time.Time
	last := time.Now().Truncate(circuit.BucketSize)
	for i := range int(2 * time.Minute / circuit.BucketSize) {
		starts = append(starts, last.Add(-time.Duration(i)*circuit.BucketSize).UTC())
	}
	bs, err := st.GetBuckets(ctx, id, starts)
	if err != nil {
		t.Fatal(err)
	}
	var sum circuit.Counts
	for _, b := range bs {
		sum = sum.Add(b.Counts)
	}
	return sum
}

// circuitctl runs the operator command against the table.
func circuitctl(t *testing.T, endpoint, table string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t, circuitctlPkg), append([]string{"--table", table, "--endpoint", endpoint}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_CONFIG_FILE="+os.DevNull, "AWS_SHARED_CREDENTIALS_FILE="+os.DevNull, "AWS_EC2_METADATA_DISABLED=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("circuitctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestManagedInstances runs the extension in a Lambda Managed Instances
// sandbox (the emulator's mode, 4 runtime workers, credentials from the
// container endpoint): it registers for SHUTDOWN only and gets no INVOKE
// event, yet
//
//   - 8 invocations sent at once, which the 4 workers take 4 at a time,
//     all get answers from it;
//   - the failures they report reach the table with no INVOKE or SHUTDOWN;
//   - an override set with circuitctl is read within 2 s with no request
//     in between, and the next invocation answers it;
//   - SHUTDOWN writes the counts still pending.
func TestManagedInstances(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	st := store.New(db, table)
	put(t, db, table, circuit.Circuit{ID: "payments", State: circuit.Closed, Version: 1})
	tl, endpoint := newTableLog(t, srv.Endpoint)
	creds := rie.StartCredentialsEndpoint(t, rie.Credentials{AccessKeyID: "AKIDMANAGED", SecretAccessKey: "secret", SessionToken: "managed-session"})
	gate := &barrier{n: workers, limit: 20 * time.Second}
	gateSrv := httptest.NewServer(gate)
	t.Cleanup(gateSrv.Close)

	emu := rie.Start(t, rie.Config{
		Function:       binary(t, probePkg),
		Extensions:     map[string]string{extensionName: binary(t, extensionPkg)},
		MaxConcurrency: workers,
		Env: creds.SnapStartEnv(map[string]string{
			"CIRCUIT_BREAKER_TABLE":     table,
			"CIRCUIT_BREAKER_SERVICES":  "payments,search,orders",
			"CIRCUIT_BREAKER_PORT":      strconv.Itoa(rie.FreePort(t)),
			"CIRCUIT_BREAKER_LOG_LEVEL": "debug",
			// Generous for a loaded machine: the tests are about answers.
			"CIRCUIT_BREAKER_MISS_TIMEOUT": "2s",
			"AWS_REGION":                   "us-east-1",
			"AWS_ENDPOINT_URL_DYNAMODB":    endpoint,
		}),
	})
	// The emulator initialises at start in this mode.
	waitLog(t, emu, 20*time.Second, `"msg":"ready"`)

	t.Run("concurrent invocations answered", func(t *testing.T) {
		const n = 2 * workers
		var wg sync.WaitGroup
		results := make([]miResult, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = miInvoke(emu, map[string]any{
					"ids": []string{"payments"}, "before": gateSrv.URL, "tag": fmt.Sprint(i),
					"failures": map[string]int{"search": 1},
				})
			}()
		}
		wg.Wait()
		for i, r := range results {
			if errs[i] != nil {
				t.Errorf("invocation %d: %v", i, errs[i])
				continue
			}
			a := r.Answers[0]
			if a.Error != "" || a.Circuit.State != "CLOSED" || !a.Circuit.Allowed || a.Circuit.Version != 1 {
				t.Errorf("invocation %d: answer %+v, want the table's CLOSED v1", i, a)
			}
			if r.BeforeStatus != http.StatusOK {
				t.Errorf("invocation %d: not %d at once (barrier %d)", i, workers, r.BeforeStatus)
			}
			if r.Reported != 1 || len(r.ReportErrors) != 0 {
				t.Errorf("invocation %d: reported %d, errors %v; want 1 accepted", i, r.Reported, r.ReportErrors)
			}
			if r.NoTokenStatus != http.StatusUnauthorized {
				t.Errorf("invocation %d: request without the token got %d, want 401", i, r.NoTokenStatus)
			}
		}
	})

	t.Run("reported outcomes reach the table", func(t *testing.T) {
		took := pollUntil(t, 20*time.Second, 100*time.Millisecond, func() (bool, string) {
			c := windowCounts(t, st, "search")
			return c.Failures == 2*workers, fmt.Sprintf("table holds %+v for search, want %d failures", c, 2*workers)
		})
		t.Logf("outcomes in the table %s after the invocations", took.Round(time.Millisecond))
	})

	t.Run("override seen within 2s with no INVOKE", func(t *testing.T) {
		if _, err := miInvoke(emu, map[string]any{"ids": []string{"payments"}}); err != nil {
			t.Fatal(err)
		}
		circuitctl(t, srv.Endpoint, table, "open", "payments", "--reason", "e2e: known-bad deploy")
		set := time.Now()
		read := tl.waitFor(t, 2*time.Second, "for payments after the override", func(c tableCall) bool {
			return reads(c, "payments") && c.Start.After(set)
		})
		// The reply has reached the extension; its answer may take a few
		// more milliseconds to reach the cache.
		var last miResult
		pollUntil(t, 5*time.Second, 10*time.Millisecond, func() (bool, string) {
			r, err := miInvoke(emu, map[string]any{"ids": []string{"payments"}})
			if err != nil {
				t.Fatal(err)
			}
			last = r
			a := r.Answers[0].Circuit
			return a.State == "OPEN" && !a.Allowed && !a.Stale, fmt.Sprintf("%+v", a)
		})
		seen := time.Since(set)
		t.Logf("read %s, seen %s after circuitctl returned", read.End.Sub(set).Round(time.Millisecond), seen.Round(time.Millisecond))
		if seen > 2*time.Second {
			t.Errorf("override seen %s after it was set, want within 2s (last answer %+v)", seen, last.Answers[0].Circuit)
		}
		for _, c := range tl.all() {
			if c.AccessKeyID != "AKIDMANAGED" {
				t.Errorf("table call %+v not signed with the endpoint's credentials", c)
			}
		}
	})

	t.Run("SHUTDOWN flushes what is pending", func(t *testing.T) {
		// One failure in four calls: under the failure rate threshold, so
		// the bucket is written when it ends, or at SHUTDOWN. Report it
		// early in a bucket, so that it is still filling at SHUTDOWN.
		if wait := circuit.BucketSize - time.Duration(time.Now().UnixNano())%circuit.BucketSize; wait < circuit.BucketSize {
			time.Sleep(wait)
		}
		bucket := time.Now().Truncate(circuit.BucketSize)
		r, err := miInvoke(emu, map[string]any{"ids": []string{"payments"},
			"failures": map[string]int{"orders": 1}, "successes": map[string]int{"orders": 3}})
		if err != nil || r.Reported != 4 {
			t.Fatalf("reporting: %+v, %v", r, err)
		}
		if c := windowCounts(t, st, "orders"); c.Calls != 0 {
			t.Fatalf("table holds %+v for orders before SHUTDOWN, want nothing yet", c)
		}
		stopped := time.Now()
		emu.Stop(t)
		if stopped.Truncate(circuit.BucketSize) != bucket {
			t.Logf("the bucket ended before SHUTDOWN (a loaded machine); the flush checked is the last one either way")
		}
		if c := windowCounts(t, st, "orders"); c.Calls != 4 || c.Failures != 1 {
			t.Errorf("table holds %+v for orders after SHUTDOWN, want 4 calls, 1 failure", c)
		}
	})

	logs := emu.Logs()
	if strings.Contains(logs, `"msg":"invoke"`) {
		t.Error("the extension got an INVOKE event")
	}
	if !strings.Contains(logs, `"msg":"shutdown"`) || !strings.Contains(logs, `"msg":"stopped"`) {
		t.Error("the extension did not stop on SHUTDOWN")
	}
	if strings.Contains(logs, "registration for INVOKE refused") {
		t.Error("the extension asked for INVOKE in Managed Instances")
	}
}
