package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
)

// tableCall is one DynamoDB call that reached the table.
type tableCall struct {
	Op           string // GetItem, BatchGetItem, UpdateItem, ...
	AccessKeyID  string // from the SigV4 Authorization header
	SessionToken string // X-Amz-Security-Token
	Body         string // the request's JSON, such as the keys read
	Start, End   time.Time
}

// tableLog is a reverse proxy in front of dynalite that records every
// call: its operation, the credentials it was signed with, and when it
// started and ended.
type tableLog struct {
	mu    sync.Mutex
	calls []tableCall
	cond  chan struct{} // closed and replaced on each recorded call
}

func newTableLog(t *testing.T, endpoint string) (*tableLog, string) {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	l := &tableLog{cond: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := tableCall{Start: time.Now(), SessionToken: r.Header.Get("X-Amz-Security-Token")}
		c.Op = r.Header.Get("X-Amz-Target")
		c.Op = c.Op[strings.LastIndex(c.Op, ".")+1:]
		_, cred, _ := strings.Cut(r.Header.Get("Authorization"), "Credential=")
		c.AccessKeyID, _, _ = strings.Cut(cred, "/")
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.Body = string(body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
		c.End = time.Now()
		l.mu.Lock()
		l.calls = append(l.calls, c)
		close(l.cond)
		l.cond = make(chan struct{})
		l.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return l, srv.URL
}

// all returns the calls recorded so far.
func (l *tableLog) all() []tableCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tableCall(nil), l.calls...)
}

// waitFor waits up to limit for a recorded call that matches f and
// returns it.
func (l *tableLog) waitFor(t *testing.T, limit time.Duration, what string, f func(tableCall) bool) tableCall {
	t.Helper()
	deadline := time.After(limit)
	for {
		l.mu.Lock()
		for _, c := range l.calls {
			if f(c) {
				l.mu.Unlock()
				return c
			}
		}
		ch := l.cond
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no table call %s within %s; calls: %+v", what, limit, l.all())
		}
	}
}

func isRead(c tableCall) bool { return c.Op == "GetItem" || c.Op == "BatchGetItem" }

// reads reports whether c is a read of circuit id's item.
func reads(c tableCall, id string) bool {
	return isRead(c) && strings.Contains(c.Body, strconv.Quote(id))
}

// waitLog waits up to limit until the emulator's output holds want.
func waitLog(t *testing.T, emu *rie.Emulator, limit time.Duration, want string) {
	t.Helper()
	pollUntil(t, limit, 20*time.Millisecond, func() (bool, string) {
		return strings.Contains(emu.Logs(), want), "no " + want + " in the output"
	})
}

// TestSnapStartLikeEnvironment runs the extension as Lambda runs it in a
// SnapStart sandbox: no AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or
// AWS_SESSION_TOKEN, credentials from a container endpoint on loopback.
// The init succeeds, the table is read with the endpoint's credentials
// (the endpoint saw the authorization token, dynalite's proxy saw the
// endpoint's key and session token), the Go client's requests carry
// AWS_CONTAINER_AUTHORIZATION_TOKEN and are answered, and a request
// without the token gets 401.
func TestSnapStartLikeEnvironment(t *testing.T) {
	srv := dynalite.Start(t)
	table := srv.NewTable(t)
	put(t, srv.Client(), table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 4, UpdatedAt: time.Now(), RetryAt: time.Now().Add(time.Hour), Reason: "e2e"})
	tl, endpoint := newTableLog(t, srv.Endpoint)
	creds := rie.StartCredentialsEndpoint(t, rie.Credentials{AccessKeyID: "AKIDSNAPSTART", SecretAccessKey: "secret", SessionToken: "snapstart-session"})

	emu := rie.Start(t, rie.Config{
		Function:   binary(t, probePkg),
		Extensions: map[string]string{extensionName: binary(t, extensionPkg)},
		Env: creds.SnapStartEnv(map[string]string{
			"CIRCUIT_BREAKER_TABLE":        table,
			"CIRCUIT_BREAKER_SERVICES":     "payments",
			"CIRCUIT_BREAKER_PORT":         strconv.Itoa(rie.FreePort(t)),
			"CIRCUIT_BREAKER_MISS_TIMEOUT": "2s", // a loaded machine: the test is about the answer
			"CIRCUIT_BREAKER_LOG_LEVEL":    "debug",
			"AWS_LAMBDA_FUNCTION_NAME":     "snapstart-fn", // inside Lambda: the token check must stay on
			"AWS_REGION":                   "us-east-1",
			"AWS_ENDPOINT_URL_DYNAMODB":    endpoint,
		}),
	})

	r := invoke(t, emu, "payments")
	if c := r.Answers[0].Circuit; c.State != "OPEN" || c.Allowed || c.Version != 4 || c.Stale || c.FailMode {
		t.Errorf("answer = %+v, want the table's OPEN v4", c)
	}
	if r.NoTokenStatus != http.StatusUnauthorized {
		t.Errorf("request without the token: %d, want 401", r.NoTokenStatus)
	}
	reqs := creds.Requests()
	if len(reqs) == 0 {
		t.Fatal("the credentials endpoint was never called")
	}
	for _, q := range reqs {
		if q.Authorization != creds.Token || q.Status != http.StatusOK {
			t.Errorf("endpoint request %+v, want the container token and 200", q)
		}
	}
	reads := 0
	for _, c := range tl.all() {
		if c.AccessKeyID != "AKIDSNAPSTART" || c.SessionToken != "snapstart-session" {
			t.Errorf("table call %+v not signed with the endpoint's credentials", c)
		}
		if isRead(c) {
			reads++
		}
	}
	if reads == 0 {
		t.Error("no read reached the table")
	}
	if strings.Contains(emu.Logs(), "Extension.ConfigInvalid") {
		t.Error("the init reported a configuration error")
	}
}

// TestSnapStartLikeEnvironmentWithoutCredentials: a sandbox with neither
// static keys nor a credentials endpoint fails the init with a message
// that says what is missing, instead of serving the failure policy.
func TestSnapStartLikeEnvironmentWithoutCredentials(t *testing.T) {
	emu := rie.Start(t, rie.Config{
		Function:   binary(t, probePkg),
		Extensions: map[string]string{extensionName: binary(t, extensionPkg)},
		Env: map[string]string{
			"CIRCUIT_BREAKER_TABLE":             "t",
			"CIRCUIT_BREAKER_PORT":              strconv.Itoa(rie.FreePort(t)),
			"AWS_LAMBDA_FUNCTION_NAME":          "snapstart-fn",
			"AWS_REGION":                        "us-east-1",
			"AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok",
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
	defer cancel()
	if _, err := emu.Invoke(ctx, []byte(`{"ids":["payments"]}`)); err == nil {
		t.Error("invoke succeeded without credentials, want the init to fail")
	}
	waitLog(t, emu, 10*time.Second, "no AWS credentials: neither AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY nor AWS_CONTAINER_CREDENTIALS_FULL_URI is set")
}

// TestProvisionedConcurrencyTiming: the init runs (the extension
// prefetches the circuit), then the sandbox waits longer than the maximum
// age before its first invocation while the circuit opens in the table.
// The first invocation answers the table's current state, not what the
// init prefetched.
func TestProvisionedConcurrencyTiming(t *testing.T) {
	srv := dynalite.Start(t)
	db := srv.Client()
	table := srv.NewTable(t)
	put(t, db, table, circuit.Circuit{ID: "payments", State: circuit.Closed, Version: 1})
	tl, endpoint := newTableLog(t, srv.Endpoint)
	const maxAge = time.Second
	emu := rie.Start(t, rie.Config{
		Function:   binary(t, probePkg),
		Extensions: map[string]string{extensionName: binary(t, extensionPkg)},
		HoldInit:   true,
		Env: map[string]string{
			"CIRCUIT_BREAKER_TABLE":            table,
			"CIRCUIT_BREAKER_SERVICES":         "payments",
			"CIRCUIT_BREAKER_PORT":             strconv.Itoa(rie.FreePort(t)),
			"CIRCUIT_BREAKER_REFRESH_INTERVAL": "500ms",
			"CIRCUIT_BREAKER_MAX_AGE":          maxAge.String(),
			"CIRCUIT_BREAKER_MISS_TIMEOUT":     "2s", // a loaded machine: the test is about the answer
			"CIRCUIT_BREAKER_LOG_LEVEL":        "debug",
			"AWS_REGION":                       "us-east-1",
			"AWS_ACCESS_KEY_ID":                "local",
			"AWS_SECRET_ACCESS_KEY":            "local",
			"AWS_SESSION_TOKEN":                sessionToken,
			"AWS_ENDPOINT_URL_DYNAMODB":        endpoint,
		},
	})
	// The invocation starts the init, which the gate holds after the
	// extension's own init.
	type outcome struct {
		r   result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), invokeLimit)
		defer cancel()
		out, err := emu.Invoke(ctx, []byte(`{"ids":["payments"]}`))
		var o outcome
		if o.err = err; err == nil {
			o.err = json.Unmarshal(out, &o.r)
		}
		done <- o
	}()
	waitLog(t, emu, 20*time.Second, `"msg":"ready"`)
	prefetch := tl.waitFor(t, 5*time.Second, "for the prefetch", isRead)
	// The prefetch is done before "ready": one read, or two when the
	// sandbox's read copy does not exist (this table has none) and it
	// reads the circuit item instead.
	prefetched := len(tl.all())
	for quiet := time.Now(); time.Since(quiet) < 300*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if n := len(tl.all()); n != prefetched {
			prefetched, quiet = n, time.Now() // a second read still arriving
		}
	}

	put(t, db, table, circuit.Circuit{ID: "payments", State: circuit.Open, Version: 2, UpdatedAt: time.Now(), RetryAt: time.Now().Add(time.Hour), Reason: "opened while the sandbox waited"})
	// The pause of provisioned concurrency: no event, past the maximum age.
	time.Sleep(maxAge + 500*time.Millisecond)
	if n := len(tl.all()); n != prefetched || n > 2 {
		t.Errorf("%d table calls before the first invocation, want only the prefetch's %d (at most 2)", n, prefetched)
	}
	if err := emu.ReleaseInit(); err != nil {
		t.Fatal(err)
	}
	var o outcome
	select {
	case o = <-done:
	case <-time.After(invokeLimit + 5*time.Second):
		t.Fatal("the first invocation did not return")
	}
	if o.err != nil || len(o.r.Answers) != 1 {
		t.Fatalf("first invocation: %+v, %v", o.r, o.err)
	}
	c := o.r.Answers[0].Circuit
	if c.State != "OPEN" || c.Allowed || c.Version != 2 || c.Stale || c.FailMode || c.AgeMs > maxAge.Milliseconds() {
		t.Errorf("first invocation %s after the prefetch: %+v, want the table's OPEN v2", time.Since(prefetch.End).Round(time.Millisecond), c)
	}
}
