package e2e

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
)

// result mirrors the probe function's output.
type result struct {
	Answers []struct {
		Circuit struct {
			ID       string `json:"id"`
			State    string `json:"state"`
			Allowed  bool   `json:"allowed"`
			Version  int64  `json:"version"`
			Stale    bool   `json:"stale"`
			AgeMs    int64  `json:"ageMs"`
			FailMode bool   `json:"failMode"`
		} `json:"circuit"`
		Allowed bool   `json:"allowed"`
		Error   string `json:"error"`
	} `json:"answers"`
	NoTokenStatus   int `json:"noTokenStatus"`
	ForwardedStatus int `json:"forwardedStatus"`
}

func put(t *testing.T, db *dynamodb.Client, table string, c circuit.Circuit) {
	t.Helper()
	item, err := store.Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: &table, Item: item}); err != nil {
		t.Fatal(err)
	}
}

func invoke(t *testing.T, emu *rie.Emulator, ids ...string) result {
	t.Helper()
	payload, _ := json.Marshal(map[string]any{"ids": ids})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := emu.Invoke(ctx, payload)
	if err != nil {
		t.Fatal(err)
	}
	var r result
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("function output %s: %v", out, err)
	}
	if len(r.Answers) != len(ids) {
		t.Fatalf("function output %s: want %d answers", out, len(ids))
	}
	for i, a := range r.Answers {
		if a.Error != "" {
			t.Fatalf("answer for %s: %s", ids[i], a.Error)
		}
	}
	return r
}

func TestExtensionUnderEmulator(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	put(t, db, table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 5, UpdatedAt: time.Now(), Reason: "5 consecutive failures"})
	put(t, db, table, circuit.Circuit{ID: "search", State: circuit.Closed, Version: 2, Override: circuit.ForcedOpen, OverrideReason: "maintenance"})

	fn := rie.Build(t, "./internal/testutil/rie/probefn")
	ext := rie.Build(t, "./extension")
	port := rie.FreePort(t)
	emu := rie.Start(t, rie.Config{
		Function:   fn,
		Extensions: map[string]string{"circuit-breaker": ext},
		Env: map[string]string{
			"CIRCUIT_BREAKER_TABLE":            table,
			"CIRCUIT_BREAKER_SERVICES":         "payments,search",
			"CIRCUIT_BREAKER_PORT":             strconv.Itoa(port),
			"CIRCUIT_BREAKER_REFRESH_INTERVAL": "100ms",
			"CIRCUIT_BREAKER_LOG_LEVEL":        "debug",
			"AWS_REGION":                       "us-east-1",
			"AWS_ACCESS_KEY_ID":                "local",
			"AWS_SECRET_ACCESS_KEY":            "local",
			"AWS_SESSION_TOKEN":                "e2e-session-token",
			"AWS_ENDPOINT_URL_DYNAMODB":        srv.Endpoint,
		},
	})

	// First invocation: the extension prefetched both circuits during init.
	r := invoke(t, emu, "payments", "search", "never-written")
	want := []struct {
		id      string
		state   string
		allowed bool
		version int64
	}{
		{"payments", "OPEN", false, 5},
		{"search", "OPEN", false, 2}, // FORCED_OPEN override wins
		{"never-written", "CLOSED", true, 0},
	}
	for i, w := range want {
		c := r.Answers[i].Circuit
		if c.ID != w.id || c.State != w.state || c.Allowed != w.allowed || c.Version != w.version || c.Stale || c.FailMode {
			t.Errorf("answer %d = %+v, want %+v", i, c, w)
		}
	}
	if r.NoTokenStatus != 401 {
		t.Errorf("request without token: %d, want 401", r.NoTokenStatus)
	}
	if r.ForwardedStatus != 403 {
		t.Errorf("forwarded request: %d, want 403", r.ForwardedStatus)
	}
	if !strings.Contains(emu.Logs(), `"msg":"ready"`) {
		t.Error("extension did not log ready")
	}

	// The circuit closes in the table; INVOKE events refresh the cache.
	put(t, db, table, circuit.Circuit{ID: "payments", State: circuit.Closed, Version: 6})
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(150 * time.Millisecond)
		r = invoke(t, emu, "payments")
		if c := r.Answers[0].Circuit; c.Version == 6 && c.Allowed && c.State == "CLOSED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("extension did not pick up the new state: %+v", r.Answers[0])
		}
	}

	// SIGTERM to the emulator: the extension gets SHUTDOWN and exits cleanly.
	emu.Stop(t)
	logs := emu.Logs()
	for _, want := range []string{`"msg":"shutdown"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("extension logs lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("emulator output:\n%s", logs)
	}
}

// TestFirstInvocationAfterPauseSeesNewState: a circuit opens in the table
// while the sandbox is idle; the first invocation after a pause longer than
// the maximum age (the defaults: 1s refresh, 2s maximum age) is told OPEN,
// for a circuit listed in CIRCUIT_BREAKER_SERVICES and for one the function
// only looked up before.
func TestFirstInvocationAfterPauseSeesNewState(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	for _, id := range []string{"listed", "looked-up"} {
		put(t, db, table, circuit.Circuit{ID: id, State: circuit.Closed, Version: 1})
	}
	port := rie.FreePort(t)
	emu := rie.Start(t, rie.Config{
		Function:   rie.Build(t, "./internal/testutil/rie/probefn"),
		Extensions: map[string]string{"circuit-breaker": rie.Build(t, "./extension")},
		Env: map[string]string{
			"CIRCUIT_BREAKER_TABLE":     table,
			"CIRCUIT_BREAKER_SERVICES":  "listed",
			"CIRCUIT_BREAKER_PORT":      strconv.Itoa(port),
			"CIRCUIT_BREAKER_LOG_LEVEL": "debug",
			// Generous for a loaded machine: the test is about the answer.
			"CIRCUIT_BREAKER_MISS_TIMEOUT": "2s",
			"AWS_REGION":                   "us-east-1",
			"AWS_ACCESS_KEY_ID":            "local",
			"AWS_SECRET_ACCESS_KEY":        "local",
			"AWS_SESSION_TOKEN":            "e2e-session-token",
			"AWS_ENDPOINT_URL_DYNAMODB":    srv.Endpoint,
		},
	})
	r := invoke(t, emu, "listed", "looked-up")
	for _, a := range r.Answers {
		if a.Circuit.State != "CLOSED" || !a.Circuit.Allowed {
			t.Fatalf("before: %+v, want CLOSED", a.Circuit)
		}
	}
	for _, id := range []string{"listed", "looked-up"} {
		put(t, db, table, circuit.Circuit{ID: id, State: circuit.Open, Version: 2, UpdatedAt: time.Now(), RetryAt: time.Now().Add(time.Hour), Reason: "e2e"})
	}
	time.Sleep(3 * time.Second) // longer than the 2s maximum age
	r = invoke(t, emu, "listed", "looked-up")
	for _, a := range r.Answers {
		c := a.Circuit
		if c.State != "OPEN" || c.Allowed || c.Version != 2 || c.Stale || c.FailMode || c.AgeMs > 2000 {
			t.Errorf("first invocation after the pause: %+v, want the fresh OPEN v2", c)
		}
	}
	// How far the INVOKE's read had got when the function's lookup came.
	for _, line := range strings.Split(emu.Logs(), "\n") {
		if strings.Contains(line, `"msg":"waited for a fresh value"`) {
			t.Log(line)
		}
	}
	if t.Failed() {
		t.Logf("emulator output:\n%s", emu.Logs())
	}
}

// slowReads is a reverse proxy in front of dynalite that holds reads
// (GetItem, BatchGetItem) for a settable delay, or until the client gives
// up.
type slowReads struct {
	delay atomic.Int64 // nanoseconds
	proxy *httputil.ReverseProxy
}

func (s *slowReads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if d := time.Duration(s.delay.Load()); d > 0 && (strings.HasSuffix(target, ".GetItem") || strings.HasSuffix(target, ".BatchGetItem")) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	s.proxy.ServeHTTP(w, r)
}

// TestFreezeWithReadInFlight freezes the extension (SIGSTOP, as Lambda's
// freezer stops a sandbox between invocations) while the INVOKE's read is
// held by a slow table, past the read's 2 s deadline and the 1 s maximum
// staleness. On thaw that read is no answer, not a failure: the next
// invocation is told the known OPEN state, never the failure policy.
func TestFreezeWithReadInFlight(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	put(t, db, table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 1, UpdatedAt: time.Now(), RetryAt: time.Now().Add(time.Hour)})
	target, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowReads{proxy: httputil.NewSingleHostReverseProxy(target)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &http.Server{Handler: slow, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = proxy.Serve(ln) }()
	t.Cleanup(func() { _ = proxy.Close() })

	emu := rie.Start(t, rie.Config{
		Function:   rie.Build(t, "./internal/testutil/rie/probefn"),
		Extensions: map[string]string{"circuit-breaker": rie.Build(t, "./extension")},
		Env: map[string]string{
			"CIRCUIT_BREAKER_TABLE":            table,
			"CIRCUIT_BREAKER_SERVICES":         "payments",
			"CIRCUIT_BREAKER_PORT":             strconv.Itoa(rie.FreePort(t)),
			"CIRCUIT_BREAKER_REFRESH_INTERVAL": "100ms",
			"CIRCUIT_BREAKER_MAX_STALENESS":    "1s",
			"CIRCUIT_BREAKER_FAIL_MODE":        "allow",
			"CIRCUIT_BREAKER_LOG_LEVEL":        "debug",
			"AWS_REGION":                       "us-east-1",
			"AWS_ACCESS_KEY_ID":                "local",
			"AWS_SECRET_ACCESS_KEY":            "local",
			"AWS_SESSION_TOKEN":                "e2e-session-token",
			"AWS_ENDPOINT_URL_DYNAMODB":        "http://" + ln.Addr().String(),
		},
	})
	if c := invoke(t, emu, "payments").Answers[0].Circuit; c.State != "OPEN" || c.Allowed || c.Stale {
		t.Fatalf("before: %+v, want the fresh OPEN state", c)
	}

	slow.delay.Store(int64(time.Minute))
	time.Sleep(300 * time.Millisecond) // the value is due, and older than the maximum age
	// This INVOKE starts a read the table holds; the lookup stops waiting
	// after the miss timeout and the function ends with the read in flight.
	if c := invoke(t, emu, "payments").Answers[0].Circuit; c.State != "OPEN" || c.Allowed || c.FailMode {
		t.Fatalf("with the read held: %+v, want the known OPEN state", c)
	}
	time.Sleep(100 * time.Millisecond) // the extension is back in event/next
	if _, err := emu.Signal("circuit-breaker", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // frozen past the read's 2 s deadline
	slow.delay.Store(0)
	if _, err := emu.Signal("circuit-breaker", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c := invoke(t, emu, "payments").Answers[0].Circuit
	if c.State != "OPEN" || c.Allowed || c.FailMode {
		t.Errorf("first invocation after the freeze: %+v, want the OPEN state, not the failure policy", c)
	}
	t.Logf("after the freeze: %+v", c)
	if !strings.Contains(emu.Logs(), "read cut by a freeze; reading again") {
		t.Errorf("the extension did not take the cut read for a freeze")
	}
	if t.Failed() {
		t.Logf("emulator output:\n%s", emu.Logs())
	}
}
