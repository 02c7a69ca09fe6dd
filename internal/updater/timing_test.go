package updater

import (
	"encoding/json"
	"testing"
	"time"
)

// TestFunctionTimeout checks the longest run and the function timeout
// derived from the settings.
func TestFunctionTimeout(t *testing.T) {
	tests := []struct {
		name    string
		inputs  []string
		maxRun  time.Duration // of the first input
		timeout time.Duration
	}{
		// 3 checks of 4s+1s, 2 pauses of 5s.
		{"defaults", []string{`{}`}, 25 * time.Second, 27 * time.Second},
		{"confirmation off", []string{`{"ConfirmInterval":"0s"}`}, 5 * time.Second, 7 * time.Second},
		{"one failure opens", []string{`{"FailureThreshold":1}`}, 5 * time.Second, 7 * time.Second},
		{"short checks", []string{`{"Timeout":"1s","ConfirmInterval":"2s","FailureThreshold":5}`}, 18 * time.Second, 20 * time.Second},
		{"rounded up", []string{`{"Timeout":"1500ms","ConfirmInterval":"0s"}`}, 2500 * time.Millisecond, 5 * time.Second},
		{"capped by the window", []string{`{"Timeout":"30s","FailureThreshold":10}`}, RunWindow, 57 * time.Second},
		{"check interval", []string{`{"CheckInterval":"10s"}`}, RunWindow, 57 * time.Second},
		{"longest service wins", []string{`{"ConfirmInterval":"0s"}`, `{}`, `{"FailureThreshold":1}`}, 5 * time.Second, 27 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfgs []Config
			for _, in := range tt.inputs {
				var m map[string]any
				if err := json.Unmarshal([]byte(in), &m); err != nil {
					t.Fatal(err)
				}
				m["ID"], m["URL"] = "a", "http://h"
				data, _ := json.Marshal(m)
				cfg, err := ParseInput(data)
				if err != nil {
					t.Fatal(err)
				}
				cfgs = append(cfgs, cfg)
			}
			if got := cfgs[0].MaxRun(); got != tt.maxRun {
				t.Errorf("MaxRun = %s, want %s", got, tt.maxRun)
			}
			got := FunctionTimeout(cfgs...)
			if got != tt.timeout {
				t.Errorf("FunctionTimeout = %s, want %s", got, tt.timeout)
			}
			if got >= time.Minute {
				t.Errorf("FunctionTimeout %s would overlap the next run of a rule every minute", got)
			}
		})
	}
}
