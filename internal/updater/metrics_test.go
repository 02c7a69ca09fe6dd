package updater

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
)

// TestMetricsForASequenceOfChecks runs checks that open the circuit and
// reads back the EMF records the updater wrote for each.
func TestMetricsForASequenceOfChecks(t *testing.T) {
	e := newEnv(t)
	svc := newService(t, 0)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var emf bytes.Buffer
	u := &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: clk.Now, Logger: e.logger, Metrics: metrics.NewWriter(&emf, "circuits-a")}

	type want struct{ failed, state, open, transitions float64 }
	steps := []struct {
		mode string
		want want
	}{
		{healthy, want{0, 0, 0, 0}},
		{fail500, want{1, 0, 0, 0}},
		{fail500, want{1, 0, 0, 0}},
		{fail500, want{1, 2, 1, 1}},
		{fail500, want{1, 2, 1, 0}},
	}
	for i, st := range steps {
		clk.Advance(time.Minute / 6)
		in, _ := json.Marshal(Input{ID: "orders", URL: svc.url(st.mode), Timeout: "1s", ConfirmInterval: "0s"})
		if _, err := u.Handle(context.Background(), in); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	lines := strings.Split(strings.TrimSpace(emf.String()), "\n")
	if len(lines) != len(steps) {
		t.Fatalf("%d EMF records for %d checks", len(lines), len(steps))
	}
	for i, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		got := want{rec[metrics.HealthCheckFailed].(float64), rec[metrics.CircuitState].(float64), rec[metrics.CircuitOpen].(float64), rec[metrics.Transitions].(float64)}
		if got != steps[i].want || rec[metrics.DimensionService] != "orders" || rec[metrics.DimensionTable] != "circuits-a" {
			t.Errorf("record %d = %+v (table %v, service %v), want %+v", i, got, rec[metrics.DimensionTable], rec[metrics.DimensionService], steps[i].want)
		}
		if _, ok := rec[metrics.HealthCheckLatency].(float64); !ok {
			t.Errorf("record %d has no latency", i)
		}
	}
}
