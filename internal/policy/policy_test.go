package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
		check   func(t *testing.T, ps Policies)
	}{
		{name: "empty", in: "", check: func(t *testing.T, ps Policies) {
			p := ps.For("x")
			if p.Passive.FailureRateThreshold != 50 || p.Passive.MinimumCalls != 10 || p.Passive.Window != 30*time.Second || p.Passive.HalfOpenProbes != 1 || p.Breaker.SuccessThreshold != 2 {
				t.Errorf("defaults = %+v", p)
			}
		}},
		{name: "full example", in: `{"payments":{"failureRateThreshold":50,"minimumCalls":10,"window":"30s","slowCallRateThreshold":100,"slowCallDuration":"3s","halfOpenProbes":1,"successThreshold":2,"failureThreshold":3,"openCooldown":"30s","maxOpenCooldown":"5m"}}`},
		{name: "partial", in: `{"payments":{"halfOpenProbes":2,"window":"10s"}}`, check: func(t *testing.T, ps Policies) {
			p := ps.For("payments")
			if p.Passive.HalfOpenProbes != 2 || p.Passive.Window != 10*time.Second || p.Passive.MinimumCalls != 10 {
				t.Errorf("payments = %+v", p)
			}
		}},
		{name: "not an object", in: `[1]`, wantErr: "JSON object"},
		{name: "unknown field", in: `{"a":{"windw":"30s"}}`, wantErr: "unknown field"},
		{name: "bad duration", in: `{"a":{"window":"30"}}`, wantErr: "duration"},
		{name: "number duration", in: `{"a":{"window":30}}`, wantErr: "duration string"},
		{name: "bad id", in: `{"a b":{}}`, wantErr: "may hold only"},
		{name: "rate too high", in: `{"a":{"failureRateThreshold":101}}`, wantErr: "FailureRateThreshold 101"},
		{name: "window not bucket multiple", in: `{"a":{"window":"12s"}}`, wantErr: "Window 12s"},
		{name: "window too long", in: `{"a":{"window":"10m"}}`, wantErr: "Window 10m0s"},
		{name: "probes", in: `{"a":{"halfOpenProbes":11}}`, wantErr: "HalfOpenProbes 11"},
		{name: "fast trip too long", in: `{"a":{"fastTripFailures":1001}}`, wantErr: "FastTripFailures 1001"},
		{name: "fast trip negative", in: `{"a":{"fastTripFailures":-1}}`, wantErr: "FastTripFailures -1"},
		{name: "fast trip", in: `{"a":{"fastTripFailures":25}}`, check: func(t *testing.T, ps Policies) {
			if got, def := ps.For("a").Rates().FastTripFailures, ps.For("b").Rates().FastTripFailures; got != 25 || def != 10 {
				t.Errorf("fast trip of a = %d, of a service with defaults = %d", got, def)
			}
		}},
		{name: "probe timeout too short", in: `{"a":{"probeTimeout":"500ms"}}`, wantErr: "ProbeTimeout 500ms"},
		{name: "probe timeout too long", in: `{"a":{"probeTimeout":"16m"}}`, wantErr: "ProbeTimeout 16m0s"},
		{name: "probe timeout", in: `{"a":{"probeTimeout":"45s"}}`, check: func(t *testing.T, ps Policies) {
			if got := ps.For("a").Passive.ProbeTimeout; got != 45*time.Second {
				t.Errorf("probeTimeout = %s, want 45s", got)
			}
			if got := ps.For("other").Passive.ProbeTimeout; got != DefaultProbeTimeout {
				t.Errorf("default probeTimeout = %s, want %s", got, DefaultProbeTimeout)
			}
		}},
		{name: "negative minimum", in: `{"a":{"minimumCalls":-1}}`, wantErr: "MinimumCalls -1"},
		{name: "cool-down", in: `{"a":{"openCooldown":"10m","maxOpenCooldown":"1m"}}`, wantErr: "MaxOpenCooldown"},
		{name: "trailing", in: `{} {}`, wantErr: "trailing"},
		{name: "zero duration", in: `{"a":{"window":"0s"}}`, wantErr: `window: duration "0s" must be positive`},
		{name: "number for an int", in: `{"a":{"minimumCalls":"ten"}}`, wantErr: "minimumCalls: want a JSON int"},
		{name: "null keeps the default", in: `{"a":{"window":null}}`, check: func(t *testing.T, ps Policies) {
			if got := ps.For("a").Passive.Window; got != circuit.DefaultWindow {
				t.Errorf("window = %s, want the default %s", got, circuit.DefaultWindow)
			}
		}},
		{name: "keys are exact", in: `{"a":{"Window":"10s"}}`, wantErr: `unknown field "Window"`},
		{name: "every error named", in: `{"a":{"halfOpenProbes":11},"b":{"minimumCalls":-1}}`, wantErr: `service "b": MinimumCalls -1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if tt.check != nil {
				tt.check(t, ps)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	ps := Policies{"payments": {Passive: circuit.RateSettings{Window: 10 * time.Second, HalfOpenProbes: 2, SlowCallDuration: 1500 * time.Millisecond}}}
	text := ps.String()
	if text != `{"payments":{"window":"10s","slowCallDuration":"1.5s","halfOpenProbes":2}}` {
		t.Fatalf("String = %s", text)
	}
	back, err := Parse(text)
	if err != nil || back["payments"] != ps["payments"] {
		t.Fatalf("Parse(String) = %+v, %v", back, err)
	}
}
