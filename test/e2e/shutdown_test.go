package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
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
// outcome reported to the extension is lost. It needs the extension's
// outcome API (POST /circuits/{id}/outcomes) and skips until the
// extension has it.
func TestShutdownFlushesReportedOutcomes(t *testing.T) {
	s := newStack(t)
	fn, port := s.startFunction(t, fnOptions{})
	if r := call(t, fn); r.StatusCode != 200 {
		t.Fatalf("call: %s", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(port)+"/circuits/"+guardedService+"/outcomes", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Circuit-Breaker-Token", sessionToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("ask the extension: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		t.Skipf("the extension has no outcome API yet (POST /circuits/{id}/outcomes: %d)", resp.StatusCode)
	}
	// TODO: report outcomes, shut down and check that every one reached
	// the table; the outcome API landed too late for this change.
	t.Skipf("the outcome API exists (status %d) but this flush check is not written yet", resp.StatusCode)
}
