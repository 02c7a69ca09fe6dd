package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
)

// recordingExtension answers lookups with the given circuit JSON and
// records reported outcomes.
type recordingExtension struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []api.Outcome
	status  int
	lookups int
}

func newRecordingExtension(t *testing.T, answer string) *recordingExtension {
	t.Helper()
	x := &recordingExtension{status: http.StatusAccepted}
	x.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodPost {
			var o api.Outcome
			body, _ := io.ReadAll(r.Body)
			if err := json.Unmarshal(body, &o); err != nil || r.Header.Get(api.HeaderToken) != "tok" {
				w.WriteHeader(400)
				_, _ = w.Write([]byte(`{"message":"bad"}`))
				return
			}
			x.mu.Lock()
			x.got = append(x.got, o)
			status := x.status
			x.mu.Unlock()
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"accepted":1}`))
			return
		}
		x.mu.Lock()
		x.lookups++
		x.mu.Unlock()
		_, _ = w.Write([]byte(answer))
	}))
	t.Cleanup(x.srv.Close)
	return x
}

func (x *recordingExtension) outcomes() []api.Outcome {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]api.Outcome(nil), x.got...)
}

func TestDoReportsOutcomes(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name      string
		answer    string
		callErr   error
		sleep     time.Duration
		reported  bool
		success   bool
		probe     string
		fallback  bool
		openState string
	}{
		{name: "success", answer: `{"id":"s","state":"CLOSED","allowed":true}`, reported: true, success: true, sleep: 20 * time.Millisecond},
		{name: "failure", answer: `{"id":"s","state":"CLOSED","allowed":true}`, callErr: boom, reported: true, fallback: true},
		{name: "probe", answer: `{"id":"s","state":"HALF_OPEN","allowed":true,"probe":true,"probeToken":"t1"}`, reported: true, success: true, probe: "t1"},
		{name: "denied: no call, no report", answer: `{"id":"s","state":"HALF_OPEN","allowed":false,"reason":"cool-down over"}`, fallback: true, openState: "HALF_OPEN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := newRecordingExtension(t, tt.answer)
			c := New(WithBaseURL(x.srv.URL), WithToken("tok"), WithTimeout(time.Second))
			var fbErr error
			_ = c.Do(context.Background(), "s", func(context.Context) error {
				time.Sleep(tt.sleep)
				return tt.callErr
			}, func(_ context.Context, err error) error { fbErr = err; return nil })
			got := x.outcomes()
			if !tt.reported {
				if len(got) != 0 {
					t.Fatalf("reported %+v, want nothing", got)
				}
			} else {
				if len(got) != 1 || got[0].Success == nil || *got[0].Success != tt.success || got[0].ProbeToken != tt.probe {
					t.Fatalf("reported %+v, want success=%v probe=%q", got, tt.success, tt.probe)
				}
				if got[0].LatencyMs < tt.sleep.Milliseconds() {
					t.Errorf("latency %d ms, want at least %d", got[0].LatencyMs, tt.sleep.Milliseconds())
				}
			}
			if (fbErr != nil) != tt.fallback {
				t.Errorf("fallback err = %v, want fallback %v", fbErr, tt.fallback)
			}
			var oe *OpenError
			if tt.openState != "" && (!errors.As(fbErr, &oe) || oe.Circuit.State != tt.openState || !errors.Is(fbErr, ErrOpen)) {
				t.Errorf("fallback err = %#v, want *OpenError with state %s", fbErr, tt.openState)
			}
		})
	}
}

func TestDoNoReportWhenExtensionDown(t *testing.T) {
	c := New(WithBaseURL("http://127.0.0.1:1"), WithToken("tok"), WithTimeout(50*time.Millisecond), WithFailMode("deny"))
	var fbErr error
	called := false
	_ = c.Do(context.Background(), "s", func(context.Context) error { called = true; return nil },
		func(_ context.Context, err error) error { fbErr = err; return nil })
	var oe *OpenError
	if called || !errors.As(fbErr, &oe) || !oe.Circuit.FailMode {
		t.Fatalf("called=%v fallback=%v; want fallback with FailMode under deny", called, fbErr)
	}
}

func TestReportErrors(t *testing.T) {
	x := newRecordingExtension(t, `{}`)
	x.status = http.StatusBadRequest
	c := New(WithBaseURL(x.srv.URL), WithToken("tok"))
	_, err := c.Report(context.Background(), "s", true, time.Millisecond, "")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 400 {
		t.Fatalf("Report = %v, want *Error 400", err)
	}
	// A cancelled caller context still delivers the report.
	x.status = http.StatusAccepted
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Report(ctx, "s", false, time.Millisecond, ""); err != nil {
		t.Fatalf("Report with cancelled ctx = %v", err)
	}
}
