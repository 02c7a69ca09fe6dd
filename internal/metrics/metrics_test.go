package metrics

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEmitWritesOneValidEMFLine(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "circuits-a")
	w.now = func() time.Time { return time.UnixMilli(1_700_000_000_123) }
	err := w.Emit("payments", []Value{{HealthCheckLatency, Milliseconds, 42}, {CircuitOpen, None, 1}}, map[string]any{"outcome": "timeout"})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	var rec struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Table     string  `json:"Table"`
		ServiceID string  `json:"ServiceId"`
		Latency   float64 `json:"HealthCheckLatency"`
		Open      float64 `json:"CircuitOpen"`
		Outcome   string  `json:"outcome"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	cw := rec.AWS.CloudWatchMetrics
	if rec.AWS.Timestamp != 1_700_000_000_123 || len(cw) != 1 || cw[0].Namespace != Namespace {
		t.Fatalf("bad _aws block: %+v", rec.AWS)
	}
	if len(cw[0].Dimensions) != 1 || !slices.Equal(cw[0].Dimensions[0], []string{DimensionTable, DimensionService}) ||
		rec.Table != "circuits-a" || rec.ServiceID != "payments" {
		t.Errorf("dimensions %v, table %q, service %q", cw[0].Dimensions, rec.Table, rec.ServiceID)
	}
	if len(cw[0].Metrics) != 2 || cw[0].Metrics[0].Name != CircuitOpen || cw[0].Metrics[1].Unit != "Milliseconds" {
		t.Errorf("metric definitions %+v", cw[0].Metrics)
	}
	if rec.Latency != 42 || rec.Open != 1 || rec.Outcome != "timeout" {
		t.Errorf("values %+v", rec)
	}
}

func TestEmitIsSafeConcurrently(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, "circuits")
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				_ = w.Emit("a", []Value{{Transitions, Count, 1}}, nil)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines, want 1000", len(lines))
	}
	for _, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("interleaved line: %s", l)
		}
	}
}

func TestStateValue(t *testing.T) {
	for state, want := range map[string]float64{"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2, "": -1} {
		if got := StateValue(state); got != want {
			t.Errorf("StateValue(%q) = %v, want %v", state, got, want)
		}
	}
}

func TestEmitNothing(t *testing.T) {
	var buf bytes.Buffer
	if err := NewWriter(&buf, "circuits").Emit("a", nil, nil); err != nil || buf.Len() != 0 {
		t.Fatalf("Emit(no values) wrote %q, %v", buf.String(), err)
	}
}
