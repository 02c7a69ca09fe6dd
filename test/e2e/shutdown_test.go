package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// extensionLog is one JSON log line of the extension.
type extensionLog struct {
	Time         time.Time `json:"time"`
	Msg          string    `json:"msg"`
	Extension    string    `json:"extension"`
	DeadlineInMs int64     `json:"deadlineInMs"`
}

// extensionLogs returns the extension's log lines with the message msg.
func extensionLogs(logs, msg string) []extensionLog {
	var out []extensionLog
	for _, line := range strings.Split(logs, "\n") {
		var l extensionLog
		if json.Unmarshal([]byte(line), &l) == nil && l.Extension == extensionName && l.Msg == msg {
			out = append(out, l)
		}
	}
	return out
}

// TestShutdownExitsWithinDeadline sends SIGTERM to the emulator after an
// invocation: the extension gets SHUTDOWN, stops, and the emulator (which
// waits for its extensions up to the 2 s deadline) exits well within it.
func TestShutdownExitsWithinDeadline(t *testing.T) {
	s := newStack(t)
	fn, _ := s.startFunction(t, fnOptions{})
	if r := call(t, fn); r.StatusCode != 200 {
		t.Fatalf("call: %s", r)
	}
	took, err := fn.Shutdown(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	logs := fn.Logs()
	shut, stopped := extensionLogs(logs, "shutdown"), extensionLogs(logs, "stopped")
	if len(shut) != 1 || len(stopped) != 1 {
		t.Fatalf("extension logged %d shutdown and %d stopped lines, want one each", len(shut), len(stopped))
	}
	if shut[0].DeadlineInMs <= 0 || shut[0].DeadlineInMs > shutdownDeadline.Milliseconds() {
		t.Errorf("SHUTDOWN deadline %dms, want within %s", shut[0].DeadlineInMs, shutdownDeadline)
	}
	flush := stopped[0].Time.Sub(shut[0].Time)
	if flush >= time.Duration(shut[0].DeadlineInMs)*time.Millisecond {
		t.Errorf("the extension stopped %s after SHUTDOWN, past its %dms deadline", flush, shut[0].DeadlineInMs)
	}
	if took >= shutdownDeadline {
		t.Errorf("the emulator exited %s after SIGTERM, not within the %s deadline (an extension was waited for)", took, shutdownDeadline)
	}
	for _, bad := range []string{"Extension.Crash", "timed out", "killed"} {
		if strings.Contains(logs, bad) {
			t.Errorf("emulator logs mention %q at shutdown", bad)
		}
	}
	t.Logf("SHUTDOWN: extension stopped %s after the event; emulator exited %s after SIGTERM",
		flush.Round(time.Microsecond), took.Round(time.Millisecond))
}

// TestShutdownFlushesReportedOutcomes is the second half of SHUTDOWN: no
// outcome reported to the extension is lost. Outcomes are reported after
// the last invocation, so only the SHUTDOWN flush can write them; the
// counter buckets in the table must then add up to exactly what was sent.
func TestShutdownFlushesReportedOutcomes(t *testing.T) {
	s := newStack(t)
	const service = "reported" // not the function's own circuit, so its calls do not mix in
	// Attached to both: outcomes for a service the function is not
	// attached to are refused.
	fn, port := s.startFunction(t, fnOptions{env: map[string]string{"CIRCUIT_BREAKER_SERVICES": guardedService + "," + service}})
	if r := call(t, fn); r.StatusCode != 200 {
		t.Fatalf("call: %s", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	post := func(n, failEvery int) {
		var batch []string
		for i := 0; i < n; i++ {
			ok := failEvery == 0 || i%failEvery != 0
			batch = append(batch, `{"success":`+strconv.FormatBool(ok)+`,"latencyMs":`+strconv.Itoa(5+i%40)+`}`)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(port)+"/circuits/"+service+"/outcomes",
			strings.NewReader(`{"outcomes":[`+strings.Join(batch, ",")+`]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Circuit-Breaker-Token", sessionToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("report outcomes: %v", err)
		}
		var acc struct{ Accepted int }
		_ = json.NewDecoder(resp.Body).Decode(&acc)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || acc.Accepted != n {
			t.Fatalf("report %d outcomes: status %d, accepted %d", n, resp.StatusCode, acc.Accepted)
		}
	}
	start := time.Now()
	post(100, 4) // 25 failures
	post(100, 0)
	post(37, 3) // 13 failures
	const wantCalls, wantFailures = 237, 38

	took, err := fn.Shutdown(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took >= shutdownDeadline {
		t.Errorf("the emulator exited %s after SIGTERM, past the %s deadline", took, shutdownDeadline)
	}

	// Every 5 s bucket from a little before the reports to now.
	var starts []time.Time
	for b := start.Add(-10 * time.Second).Truncate(5 * time.Second); !b.After(time.Now().Add(5 * time.Second)); b = b.Add(5 * time.Second) {
		starts = append(starts, b)
	}
	buckets, err := store.New(s.db.Client(), s.table).GetBuckets(ctx, service, starts)
	if err != nil {
		t.Fatal(err)
	}
	var calls, failures int64
	for _, b := range buckets {
		calls += b.Calls
		failures += b.Failures
	}
	if calls != wantCalls || failures != wantFailures {
		t.Fatalf("the table holds %d calls and %d failures after SHUTDOWN, want %d and %d: outcomes were lost", calls, failures, wantCalls, wantFailures)
	}
	t.Logf("SHUTDOWN flushed %d outcomes (%d failures) in %d bucket(s); emulator exited %s after SIGTERM", calls, failures, len(buckets), took.Round(time.Millisecond))
}
