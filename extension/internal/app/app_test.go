package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi/extapitest"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
)

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type run struct {
	fake  *extapitest.Server
	logs  *syncBuffer
	emf   *syncBuffer
	code  chan int
	addr  chan string
	token string
}

func start(t *testing.T, env map[string]string) *run {
	t.Helper()
	return startWith(t, env, nil)
}

// startWith is start with prepare, if set, called on the fake Extensions
// API before the extension starts.
func startWith(t *testing.T, env map[string]string, prepare func(*extapitest.Server)) *run {
	t.Helper()
	fake := extapitest.Start()
	t.Cleanup(fake.Close)
	if prepare != nil {
		prepare(fake)
	}
	r := &run{fake: fake, logs: &syncBuffer{}, emf: &syncBuffer{}, code: make(chan int, 1), addr: make(chan string, 1), token: env["AWS_SESSION_TOKEN"]}
	full := map[string]string{"AWS_LAMBDA_RUNTIME_API": fake.Addr, "CIRCUIT_BREAKER_PORT": "0"}
	for k, v := range env {
		full[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		r.code <- Run(ctx, Options{
			Getenv:  func(k string) string { return full[k] },
			Name:    "circuit-breaker",
			Stderr:  r.logs,
			Stdout:  r.emf,
			OnReady: func(addr string) { r.addr <- addr },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.code:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			t.Logf("extension logs:\n%s", r.logs)
		}
	})
	return r
}

func (r *run) waitReady(t *testing.T) string {
	t.Helper()
	select {
	case a := <-r.addr:
		return a
	case c := <-r.code:
		r.code <- c
		t.Fatalf("extension exited with %d before ready", c)
	case <-time.After(10 * time.Second):
		t.Fatal("extension not ready in 10s")
	}
	return ""
}

func (r *run) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case c := <-r.code:
		r.code <- c
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("extension did not exit in 10s")
	}
	return -1
}

func get(t *testing.T, addr, path, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	if token != "" {
		req.Header.Set(api.HeaderToken, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func putCircuit(t *testing.T, srv *dynalite.Server, table string, c circuit.Circuit) {
	t.Helper()
	item, err := store.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().PutItem(context.Background(), &dynamodbPutItemInput{TableName: &table, Item: item}); err != nil {
		t.Fatal(err)
	}
}

func dynaliteEnv(srv *dynalite.Server, table string) map[string]string {
	return map[string]string{
		"CIRCUIT_BREAKER_TABLE":     table,
		"AWS_REGION":                "us-east-1",
		"AWS_ACCESS_KEY_ID":         "local",
		"AWS_SECRET_ACCESS_KEY":     "local",
		"AWS_SESSION_TOKEN":         "tok",
		"AWS_ENDPOINT_URL_DYNAMODB": srv.Endpoint,
	}
}

func TestLifecycleWithDynalite(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	putCircuit(t, srv, table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 3, UpdatedAt: now, Reason: "5 failures", RetryAt: now.Add(time.Minute)})

	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_SERVICES"] = "payments, search"
	r := start(t, env)
	addr := r.waitReady(t)
	<-r.fake.FirstNext()

	regs := r.fake.Registrations()
	if len(regs) != 1 || regs[0].Name != "circuit-breaker" || len(regs[0].Events) != 2 ||
		regs[0].Events[0] != extapi.Invoke || regs[0].Events[1] != extapi.Shutdown {
		t.Fatalf("registrations = %+v", regs)
	}

	// Prefetched: answered from the cache.
	code, body := get(t, addr, "/circuits/payments", "tok")
	var c api.Circuit
	if err := json.Unmarshal(body, &c); err != nil || code != 200 {
		t.Fatalf("GET payments = %d %s", code, body)
	}
	if c.State != "OPEN" || c.Allowed || c.Version != 3 || c.Stale || c.UpdatedAt == nil || !c.UpdatedAt.Equal(now) {
		t.Errorf("payments = %+v", c)
	}
	code, body = get(t, addr, "/circuits?ids=search,payments", "tok")
	var many api.Circuits
	if err := json.Unmarshal(body, &many); err != nil || code != 200 || len(many.Circuits) != 2 {
		t.Fatalf("GET many = %d %s", code, body)
	}
	if many.Circuits[0].ID != "search" || many.Circuits[0].State != "CLOSED" || !many.Circuits[0].Allowed || many.Circuits[1].Allowed {
		t.Errorf("many = %+v", many)
	}
	// Unknown circuit: read on first lookup.
	if code, body = get(t, addr, "/circuits/other", "tok"); code != 200 || !strings.Contains(string(body), `"state":"CLOSED"`) {
		t.Errorf("GET other = %d %s", code, body)
	}
	if code, _ = get(t, addr, "/circuits/payments", ""); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}

	// The circuit closes; an INVOKE refreshes it.
	putCircuit(t, srv, table, circuit.Circuit{ID: "payments", State: circuit.Closed, Version: 4, UpdatedAt: now})
	time.Sleep(1100 * time.Millisecond) // the default refresh interval
	r.fake.SendInvoke("req-1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body = get(t, addr, "/circuits/payments", "tok")
		if strings.Contains(string(body), `"version":4`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not refreshed after INVOKE: %s", body)
		}
		time.Sleep(10 * time.Millisecond)
	}

	r.fake.SendShutdown(2 * time.Second)
	if code := r.exitCode(t); code != 0 {
		t.Fatalf("exit code %d after SHUTDOWN, want 0", code)
	}
	if _, err := http.Get("http://" + addr + "/health"); err == nil {
		t.Error("server still listening after SHUTDOWN")
	}
	if len(r.fake.Reports()) != 0 {
		t.Errorf("errors reported: %+v", r.fake.Reports())
	}
}

func TestInitErrors(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		errType string
		message string
	}{
		{"missing table", map[string]string{}, ErrTypeConfig, "CIRCUIT_BREAKER_TABLE is required"},
		{"bad fail mode", map[string]string{"CIRCUIT_BREAKER_TABLE": "t", "CIRCUIT_BREAKER_FAIL_MODE": "maybe"}, ErrTypeConfig, "want allow or deny"},
		{"bad duration", map[string]string{"CIRCUIT_BREAKER_TABLE": "t", "CIRCUIT_BREAKER_REFRESH_INTERVAL": "soon"}, ErrTypeConfig, "CIRCUIT_BREAKER_REFRESH_INTERVAL"},
		{"bad service", map[string]string{"CIRCUIT_BREAKER_TABLE": "t", "CIRCUIT_BREAKER_SERVICES": "ok,not ok"}, ErrTypeConfig, "may hold only"},
		{"no credentials", map[string]string{"CIRCUIT_BREAKER_TABLE": "t", "AWS_REGION": "us-east-1"}, ErrTypeConfig, "neither AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set"},
		{"no token inside Lambda", map[string]string{"CIRCUIT_BREAKER_TABLE": "t", "AWS_REGION": "us-east-1", "AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds"}, ErrTypeConfig, "neither AWS_SESSION_TOKEN nor AWS_CONTAINER_AUTHORIZATION_TOKEN is set inside Lambda"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, tt.env)
			if code := r.exitCode(t); code == 0 {
				t.Fatal("exit code 0 after an init error")
			}
			reps := r.fake.Reports()
			if len(reps) != 1 || reps[0].Path != "init/error" || reps[0].ErrorType != tt.errType || !strings.Contains(reps[0].ErrorMessage, tt.message) {
				t.Fatalf("reports = %+v, want one init/error %s containing %q", reps, tt.errType, tt.message)
			}
			if r.fake.NextCalls() != 0 {
				t.Error("event/next called after an init error")
			}
		})
	}
}

func TestListenFailureIsInitError(t *testing.T) {
	ln, err := listenAny()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := start(t, map[string]string{"CIRCUIT_BREAKER_TABLE": "t", "CIRCUIT_BREAKER_PORT": portOf(ln), "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
	if code := r.exitCode(t); code == 0 {
		t.Fatal("exit code 0")
	}
	if reps := r.fake.Reports(); len(reps) != 1 || reps[0].ErrorType != ErrTypeListen {
		t.Fatalf("reports = %+v", reps)
	}
}

func TestDynamoDBDownUsesFailMode(t *testing.T) {
	for _, mode := range []string{"allow", "deny"} {
		t.Run(mode, func(t *testing.T) {
			r := start(t, map[string]string{
				"CIRCUIT_BREAKER_TABLE":            "t",
				"CIRCUIT_BREAKER_FAIL_MODE":        mode,
				"CIRCUIT_BREAKER_SERVICES":         "a",
				"CIRCUIT_BREAKER_MISS_TIMEOUT":     "50ms",
				"AWS_REGION":                       "us-east-1",
				"AWS_ACCESS_KEY_ID":                "x",
				"AWS_SECRET_ACCESS_KEY":            "x",
				"AWS_ENDPOINT_URL_DYNAMODB":        "http://127.0.0.1:1", // nothing listens
				"AWS_SESSION_TOKEN":                "",
				"CIRCUIT_BREAKER_LOG_LEVEL":        "debug",
				"CIRCUIT_BREAKER_MAX_STALENESS":    "5s",
				"CIRCUIT_BREAKER_MAX_CIRCUITS":     "10",
				"CIRCUIT_BREAKER_REFRESH_INTERVAL": "1s",
			})
			addr := r.waitReady(t)
			code, body := get(t, addr, "/circuits/a", "")
			var c api.Circuit
			if err := json.Unmarshal(body, &c); err != nil || code != 200 {
				t.Fatalf("GET = %d %s", code, body)
			}
			if c.Allowed != (mode == "allow") || !c.FailMode || !c.Stale {
				t.Errorf("circuit = %+v, want fail mode %s", c, mode)
			}
			r.fake.SendShutdown(time.Second)
			if code := r.exitCode(t); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

func TestNameFromArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, DefaultName},
		{[]string{"/opt/extensions/circuit-breaker"}, "circuit-breaker"},
		{[]string{"./my-ext"}, "my-ext"},
		{[]string{""}, DefaultName},
	}
	for _, tt := range tests {
		if got := NameFromArgs(tt.args); got != tt.want {
			t.Errorf("NameFromArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

// TestLookupMetricsOnInvoke checks the EMF lines the extension writes on
// INVOKE for the lookups since the previous one.
func TestLookupMetricsOnInvoke(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	putCircuit(t, srv, table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 2, UpdatedAt: time.Now().UTC(), RetryAt: time.Now().Add(time.Hour)})
	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_SERVICES"] = "payments"
	r := start(t, env)
	addr := r.waitReady(t)
	<-r.fake.FirstNext()
	for i := 0; i < 4; i++ {
		get(t, addr, "/circuits/payments", "tok")
	}
	get(t, addr, "/circuits/search", "tok")
	r.fake.SendInvoke("req-1")
	type record struct {
		Service                    string `json:"ServiceId"`
		Table                      string
		CacheHits, CacheMisses     float64
		StaleAnswers, CallsRefused float64
		CircuitOpen, CircuitState  float64
		AWS                        struct{ CloudWatchMetrics []struct{ Namespace string } } `json:"_aws"`
	}
	var recs map[string]record
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs = map[string]record{}
		for _, line := range strings.Split(strings.TrimSpace(r.emf.String()), "\n") {
			var rec record
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Service != "" {
				recs[rec.Service] = rec
			}
		}
		if len(recs) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p, s := recs["payments"], recs["search"]
	if p.CircuitOpen != 1 || p.CircuitState != 2 || s.CircuitOpen != 0 || s.CircuitState != 0 {
		t.Errorf("state metrics: payments open=%v state=%v, search open=%v state=%v", p.CircuitOpen, p.CircuitState, s.CircuitOpen, s.CircuitState)
	}
	if p.CacheHits != 4 || p.CallsRefused != 4 || p.CacheMisses != 0 || len(p.AWS.CloudWatchMetrics) != 1 || p.AWS.CloudWatchMetrics[0].Namespace != "LambdaCircuitBreaker" {
		t.Errorf("payments record = %+v, want 4 hits, all refused", p)
	}
	if s.CacheMisses != 1 || s.CallsRefused != 0 {
		t.Errorf("search record = %+v, want one miss, allowed", s)
	}
	if p.Table != table || s.Table != table {
		t.Errorf("Table dimension = %q and %q, want the state table %q, which tells breakers apart", p.Table, s.Table, table)
	}
	r.fake.SendShutdown(2 * time.Second)
	if code := r.exitCode(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if n := strings.Count(r.emf.String(), "\n"); n != 2 {
		t.Errorf("%d EMF lines in all, want 2 (nothing was looked up after the INVOKE)", n)
	}
}

// TestOldValueWaitsForTheInvokeRead: after a pause longer than the maximum
// age, the INVOKE starts the read and the first lookup answers from it,
// and the wait is counted in the metrics.
func TestOldValueWaitsForTheInvokeRead(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	putCircuit(t, srv, table, circuit.Circuit{ID: "payments", State: circuit.Closed, Version: 1})
	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_SERVICES"] = "payments"
	env["CIRCUIT_BREAKER_REFRESH_INTERVAL"] = "50ms"
	env["CIRCUIT_BREAKER_MAX_AGE"] = "100ms"
	env["CIRCUIT_BREAKER_MISS_TIMEOUT"] = "5s" // generous on a loaded machine: the assertion is on the answer
	r := start(t, env)
	addr := r.waitReady(t)
	<-r.fake.FirstNext()
	putCircuit(t, srv, table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 2, RetryAt: time.Now().Add(time.Hour)})
	time.Sleep(300 * time.Millisecond) // idle: the prefetched value is now older than the maximum age
	r.fake.SendInvoke("req-1")
	status, body := get(t, addr, "/circuits/payments", "tok")
	var c struct {
		State   string
		Allowed bool
		Version int64
		Stale   bool
		AgeMs   int64
	}
	if err := json.Unmarshal(body, &c); status != 200 || err != nil {
		t.Fatalf("GET = %d %s", status, body)
	}
	if c.State != "OPEN" || c.Allowed || c.Version != 2 || c.Stale || c.AgeMs > 100 {
		t.Errorf("first lookup after the pause = %s, want the fresh OPEN v2", body)
	}
	r.fake.SendInvoke("req-2")
	// The lookup waited for the INVOKE's read, or, on a loaded machine
	// where it came only after that read had ended, was answered at once
	// from the fresh value: either way one lookup, never a stale answer.
	var waits, hits, stale float64
	waitUntil := time.Now().Add(5 * time.Second)
	for waits+hits+stale == 0 && time.Now().Before(waitUntil) {
		waits, hits, stale = 0, 0, 0
		for _, line := range strings.Split(strings.TrimSpace(r.emf.String()), "\n") {
			var rec struct{ CacheWaits, CacheHits, StaleAnswers float64 }
			if json.Unmarshal([]byte(line), &rec) == nil {
				waits += rec.CacheWaits
				hits += rec.CacheHits
				stale += rec.StaleAnswers
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if waits+hits != 1 || stale != 0 {
		t.Errorf("CacheWaits = %v, CacheHits = %v, StaleAnswers = %v; want one wait (or one hit) and no stale answer", waits, hits, stale)
	}
	r.fake.SendShutdown(2 * time.Second)
	if code := r.exitCode(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// slowTable delays every call to the table by delay while slow is set,
// or until the caller's context ends.
type slowTable struct {
	store.API
	delay time.Duration
	slow  atomic.Bool
}

func (s *slowTable) wait(ctx context.Context) error {
	if !s.slow.Load() {
		return nil
	}
	select {
	case <-time.After(s.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *slowTable) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.API.GetItem(ctx, in, opts...)
}

func (s *slowTable) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.API.BatchGetItem(ctx, in, opts...)
}

func (s *slowTable) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.API.UpdateItem(ctx, in, opts...)
}

// untilNext sends an INVOKE and returns the time until the extension's
// next event/next call: the time the invocation is held.
func untilNext(t *testing.T, fake *extapitest.Server, id string) time.Duration {
	t.Helper()
	before := fake.NextCalls()
	start := time.Now()
	fake.SendInvoke(id)
	for fake.NextCalls() <= before {
		if time.Since(start) > 10*time.Second {
			t.Fatal("no event/next within 10 s of an INVOKE")
		}
		time.Sleep(200 * time.Microsecond)
	}
	return time.Since(start)
}

func report(t *testing.T, addr, id string, outs []api.Outcome) int {
	t.Helper()
	body, _ := json.Marshal(api.Outcomes{Outcomes: outs})
	req, _ := http.NewRequest("POST", "http://"+addr+"/circuits/"+id+"/outcomes", bytes.NewReader(body))
	req.Header.Set(api.HeaderToken, "tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// tableCalls sums the calls of every bucket item in the table.
func tableCalls(t *testing.T, srv *dynalite.Server, table string) int64 {
	t.Helper()
	var sum int64
	p := dynamodb.NewScanPaginator(srv.Client(), &dynamodb.ScanInput{TableName: &table})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range page.Items {
			id, _ := item["id"].(*types.AttributeValueMemberS)
			n, ok := item["calls"].(*types.AttributeValueMemberN)
			if id == nil || !ok || !strings.Contains(id.Value, store.BucketInfix) {
				continue
			}
			v, _ := strconv.ParseInt(n.Value, 10, 64)
			sum += v
		}
	}
	return sum
}

// With the table 3 s slow, an INVOKE holds the invocation no longer than
// the flush budget; the counts it could not write wait for the next
// INVOKE, which writes them once the table is back.
func TestInvokeWithinBudgetWhenTableIsSlow(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	slow := &slowTable{API: srv.Client(), delay: 3 * time.Second}
	env := dynaliteEnv(srv, table)
	env["CIRCUIT_BREAKER_SERVICES"] = "payments"
	fake := extapitest.Start()
	t.Cleanup(fake.Close)
	full := map[string]string{"AWS_LAMBDA_RUNTIME_API": fake.Addr, "CIRCUIT_BREAKER_PORT": "0"}
	maps.Copy(full, env)
	addrc := make(chan string, 1)
	code := make(chan int, 1)
	logs := &syncBuffer{}
	go func() {
		code <- Run(context.Background(), Options{
			Getenv: func(k string) string { return full[k] }, Name: "circuit-breaker", Stderr: logs, Stdout: io.Discard,
			NewDynamoDB: func(context.Context) (store.API, error) { return slow, nil },
			OnReady:     func(a string) { addrc <- a },
		})
	}()
	addr := <-addrc
	<-fake.FirstNext()
	outs := make([]api.Outcome, 20)
	for i := range outs {
		ok := i%2 == 0 // 50 %: due at once, the window is evaluated
		outs[i] = api.Outcome{Success: &ok, LatencyMs: 10}
	}
	if c := report(t, addr, "payments", outs); c != 202 {
		t.Fatalf("report = %d", c)
	}
	slow.slow.Store(true)
	var worst time.Duration
	for i := range 3 {
		worst = max(worst, untilNext(t, fake, fmt.Sprintf("slow-%d", i)))
	}
	t.Logf("INVOKE to event/next with the table 3 s slow: %s at worst (budget %s)", worst, flushBudget)
	// Generous for a busy machine, far below the 3 s the table takes.
	if worst > flushBudget+400*time.Millisecond {
		t.Errorf("an INVOKE was held %s with the table slow; the budget is %s", worst, flushBudget)
	}
	if got := tableCalls(t, srv, table); got != 0 {
		t.Fatalf("the slow table holds %d calls already", got)
	}
	slow.slow.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for tableCalls(t, srv, table) != 20 {
		if time.Now().After(deadline) {
			t.Fatalf("the table holds %d calls after the table recovered, want 20\n%s", tableCalls(t, srv, table), logs)
		}
		untilNext(t, fake, "fast")
		time.Sleep(50 * time.Millisecond)
	}
	fake.SendShutdown(2 * time.Second)
	if c := <-code; c != 0 {
		t.Fatalf("exit %d", c)
	}
}

// A flood of 10,000 service IDs with 100 outcomes each: every outcome the
// extension accepted reaches the table, and every other one was refused
// to its caller (403 for a service the function is not attached to, 503
// when memory holds the most circuits it keeps), never dropped silently.
func TestOutcomeFloodReachesTheTableOrIsRefused(t *testing.T) {
	const ids, perID = 10_000, 100
	outs := make([]api.Outcome, perID)
	for i := range outs {
		ok := i != 0 // one failure: the window is written
		outs[i] = api.Outcome{Success: &ok, LatencyMs: 5}
	}
	for _, tc := range []struct {
		name     string
		services int
		refusal  int
	}{{"attached services", 300, 403}, {"no list", 0, 503}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := dynalite.Start(t)
			table := srv.NewTable(t)
			env := dynaliteEnv(srv, table)
			if tc.services > 0 {
				names := make([]string, tc.services)
				for i := range names {
					names[i] = fmt.Sprintf("svc-%d", i)
				}
				env["CIRCUIT_BREAKER_SERVICES"] = strings.Join(names, ",")
			} else {
				env["CIRCUIT_BREAKER_MAX_CIRCUITS"] = "300"
			}
			r := start(t, env)
			addr := r.waitReady(t)
			<-r.fake.FirstNext()
			var accepted, refused int64
			var mu sync.Mutex
			var wg sync.WaitGroup
			next := make(chan int)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						c := report(t, addr, fmt.Sprintf("svc-%d", i), outs)
						mu.Lock()
						switch c {
						case 202:
							accepted += perID
						case tc.refusal:
							refused += perID
						default:
							t.Errorf("svc-%d: status %d", i, c)
						}
						mu.Unlock()
					}
				}()
			}
			for i := range ids {
				next <- i
				if i%100 == 0 { // invocations go on while outcomes arrive
					untilNext(t, r.fake, fmt.Sprintf("during-%d", i))
				}
			}
			close(next)
			wg.Wait()
			if accepted == 0 || refused == 0 || accepted+refused != ids*perID {
				t.Fatalf("accepted %d, refused %d of %d", accepted, refused, ids*perID)
			}
			// Invocations write what is due within their budget; SHUTDOWN
			// writes the rest.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) && tableCalls(t, srv, table) < accepted*9/10 {
				untilNext(t, r.fake, "after")
				time.Sleep(20 * time.Millisecond)
			}
			r.fake.SendShutdown(10 * time.Second)
			if c := r.exitCode(t); c != 0 {
				t.Fatalf("exit %d", c)
			}
			// On a loaded machine flushes may fall behind by more than the
			// window; such counts are dropped, each drop logged with its
			// calls. Every accepted outcome is in the table or so logged.
			dropped := droppedCalls(t, r.logs.String())
			if got := tableCalls(t, srv, table); got+dropped != accepted || dropped > accepted/2 {
				t.Fatalf("the table holds %d calls and %d were logged as dropped; %d were accepted", got, dropped, accepted)
			}
			if tc.refusal == 503 && !strings.Contains(r.logs.String(), `"msg":"outcomes refused`) ||
				tc.refusal == 503 && !strings.Contains(r.emf.String(), `"OutcomesRefused"`) {
				t.Errorf("refusals for lack of memory not logged or counted in a metric")
			}
			t.Logf("%d outcomes accepted and in the table, %d refused with %d", accepted, refused, tc.refusal)
		})
	}
}

// droppedCalls sums the calls of the extension's log lines that report
// counts dropped as older than the window.
func droppedCalls(t *testing.T, logs string) int64 {
	t.Helper()
	var n int64
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Msg   string `json:"msg"`
			Calls int64  `json:"calls"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "outcome counts dropped: older than the window" {
			n += l.Calls
		}
	}
	return n
}
