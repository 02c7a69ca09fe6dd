package server

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/outcomes"
)

type stubReporter struct {
	mu   sync.Mutex
	got  map[string][]api.Outcome
	reqs int
}

func (s *stubReporter) Report(_ context.Context, id string, outs []api.Outcome) (api.Accepted, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.got == nil {
		s.got = map[string][]api.Outcome{}
	}
	s.reqs++
	s.got[id] = append(s.got[id], outs...)
	res := api.Accepted{Accepted: len(outs)}
	for _, o := range outs {
		if o.ProbeToken != "" {
			res.State = "CLOSED"
		}
	}
	return res, nil
}

func TestOutcomes(t *testing.T) {
	many := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = `{"success":false,"latencyMs":12}`
		}
		return `{"outcomes":[` + strings.Join(parts, ",") + `]}`
	}
	auth := map[string]string{api.HeaderToken: token}
	tests := []struct {
		name     string
		method   string
		target   string
		header   map[string]string
		body     string
		status   int
		contains string
		accepted int
	}{
		{"one success", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"latencyMs":120}`, 202, `"accepted":1`, 1},
		{"one failure", "POST", "/circuits/svc/outcomes", auth, `{"success":false}`, 202, `"accepted":1`, 1},
		{"probe outcome", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"latencyMs":5,"probeToken":"abc"}`, 202, `"state":"CLOSED"`, 1},
		{"batch", "POST", "/circuits/svc/outcomes", auth, many(3), 202, `"accepted":3`, 3},
		{"batch at limit", "POST", "/circuits/svc/outcomes", auth, many(api.MaxOutcomes), 202, `"accepted":100`, 100},
		{"batch over limit", "POST", "/circuits/svc/outcomes", auth, many(api.MaxOutcomes + 1), 413, "at most 100", 0},
		{"body over 16 KiB", "POST", "/circuits/svc/outcomes", auth, `{"outcomes":[` + strings.Repeat(" ", api.MaxOutcomeBodyBytes) + `]}`, 413, "too large", 0},
		{"empty batch", "POST", "/circuits/svc/outcomes", auth, `{"outcomes":[]}`, 400, "empty", 0},
		{"missing success", "POST", "/circuits/svc/outcomes", auth, `{"latencyMs":3}`, 400, "success is required", 0},
		{"missing success in batch", "POST", "/circuits/svc/outcomes", auth, `{"outcomes":[{"success":true},{"latencyMs":1}]}`, 400, "outcomes[1]", 0},
		{"negative latency", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"latencyMs":-1}`, 400, "latencyMs -1", 0},
		{"huge latency", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"latencyMs":3600001}`, 400, "out of range", 0},
		{"string success", "POST", "/circuits/svc/outcomes", auth, `{"success":"yes"}`, 400, "body must be", 0},
		{"unknown field", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"ok":1}`, 400, "unknown field", 0},
		{"both forms", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"outcomes":[{"success":true}]}`, 400, "not both", 0},
		{"not JSON", "POST", "/circuits/svc/outcomes", auth, `success`, 400, "body must be", 0},
		{"trailing", "POST", "/circuits/svc/outcomes", auth, `{"success":true} {}`, 400, "trailing", 0},
		{"no body", "POST", "/circuits/svc/outcomes", auth, ``, 400, "body must be", 0},
		{"bad probe token", "POST", "/circuits/svc/outcomes", auth, `{"success":true,"probeToken":"a b"}`, 400, "probeToken", 0},
		{"bad id", "POST", "/circuits/-x/outcomes", auth, `{"success":true}`, 400, "must start", 0},
		{"no token", "POST", "/circuits/svc/outcomes", nil, `{"success":true}`, 401, "X-Circuit-Breaker-Token", 0},
		{"forwarded", "POST", "/circuits/svc/outcomes", map[string]string{api.HeaderToken: token, "X-Forwarded-For": "1.2.3.4"}, `{"success":true}`, 403, "forwarded", 0},
		{"GET not allowed", "GET", "/circuits/svc/outcomes", auth, "", 405, "not allowed", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &stubReporter{}
			h := NewHandler(join(&stubLooker{}, rep), Options{Token: token})
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.contains) {
				t.Fatalf("= %d %s, want %d containing %s", rec.Code, rec.Body, tt.status, tt.contains)
			}
			if got := len(rep.got["svc"]); got != tt.accepted {
				t.Errorf("reporter got %d outcomes, want %d", got, tt.accepted)
			}
			if tt.status == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q", rec.Header().Get("Allow"))
			}
		})
	}
}

type fullReporter struct{ stubReporter }

func (f *fullReporter) Report(context.Context, string, []api.Outcome) (api.Accepted, error) {
	return api.Accepted{}, fmt.Errorf("3 outcomes refused: %w", outcomes.ErrFull)
}

// Outcomes the extension does not count are refused where the caller
// sees it: for a service the function is not attached to (403), or when
// memory holds the most circuits it keeps (503).
func TestOutcomesNotTaken(t *testing.T) {
	tests := []struct {
		name     string
		rep      reporter
		services []string
		id       string
		status   int
		contains string
	}{
		{"attached", &stubReporter{}, []string{"svc", "other"}, "svc", 202, `"accepted":1`},
		{"not attached", &stubReporter{}, []string{"svc"}, "made-up", 403, "CIRCUIT_BREAKER_SERVICES"},
		{"no list: any service", &stubReporter{}, nil, "made-up", 202, `"accepted":1`},
		{"memory full", &fullReporter{}, nil, "svc", 503, "too many circuits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(join(&stubLooker{}, tt.rep), Options{Token: token, Services: tt.services})
			req := httptest.NewRequest("POST", "/circuits/"+tt.id+"/outcomes", strings.NewReader(`{"success":false}`))
			req.Header.Set(api.HeaderToken, token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.contains) {
				t.Fatalf("= %d %s, want %d containing %s", rec.Code, rec.Body, tt.status, tt.contains)
			}
			if stub, ok := tt.rep.(*stubReporter); ok && tt.status == 403 && stub.reqs != 0 {
				t.Errorf("refused outcomes reached the reporter")
			}
		})
	}
}

func TestRenderProbe(t *testing.T) {
	l := &stubLooker{}
	d := l.Lookup(context.Background(), "svc")
	d.Probe = "tok123"
	c := Render(d)
	if !c.Probe || c.ProbeToken != "tok123" {
		t.Fatalf("Render = %+v", c)
	}
}

// refusingReporter takes no outcome, as the breaker once stopped.
type refusingReporter struct{}

func (refusingReporter) Report(context.Context, string, []api.Outcome) (api.Accepted, error) {
	return api.Accepted{}, errors.New("stopped for shutdown; outcomes not counted")
}

// Outcomes the reporter refused are answered 503, never 202.
func TestOutcomesRefused(t *testing.T) {
	h := NewHandler(join(&stubLooker{}, refusingReporter{}), Options{Token: token})
	req := httptest.NewRequest("POST", "/circuits/svc/outcomes", strings.NewReader(`{"success":false}`))
	req.Header.Set(api.HeaderToken, token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "not counted") {
		t.Fatalf("= %d %s, want 503 saying the outcomes were not counted", rec.Code, rec.Body)
	}
}
