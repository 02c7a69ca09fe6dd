package updater

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// FuzzParseInput checks that ParseInput never panics, that whatever it
// accepts is valid, and that an accepted input survives a round trip
// through the exported Input type (what the construct marshals).
func FuzzParseInput(f *testing.F) {
	for _, seed := range []string{
		`{"ID":"mock-api","URL":"https://x/api/resource/health"}`,
		`{"ID": "mock-api", "URL": "https://x/api/resource/health", "Timeout": "4s", "SlowCallThreshold": "3s", "ExpectedStatus": "200-299", "FailureThreshold": 3, "SuccessThreshold": 2, "OpenCooldown": "30s", "MaxOpenCooldown": "5m"}`,
		`{"ID":"a","URL":"http://127.0.0.1:8080/h","ExpectedStatus":"200-299,304"}`,
		`{"ID":"a","URL":"http://h","Timeout":"1ms","SlowCallThreshold":"1ms"}`,
		`{"ID":"a","URL":"http://h","OpenCooldown":"24h"}`,
		`{"ID":"a","URL":"http://h","ConfirmInterval":"0s","CheckInterval":"10s"}`,
		`{"ID":"a","URL":"http://h","ConfirmInterval":"30s","CheckInterval":"1s"}`,
		`{"ID":"a","URL":"ftp://h"}`,
		`{"id":"a","URL":"http://h"}`,
		`{"ID":"a","ID":"a","URL":"http://h"}`,
		`{"ID":"a","URL":"http://h","FailureThreshold":1e2}`,
		`{"ID":"a","URL":"http://h"}x`,
		`[1,2]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseInput(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "updater: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if err := circuit.ValidateID(cfg.ID); err != nil {
			t.Fatalf("accepted bad ID %q: %v", cfg.ID, err)
		}
		if err := cfg.Probe.Validate(); err != nil {
			t.Fatalf("accepted bad probe: %v", err)
		}
		if err := cfg.Settings.Validate(); err != nil {
			t.Fatalf("accepted bad settings: %v", err)
		}
		in := Input{
			ID:                cfg.ID,
			URL:               cfg.Probe.URL,
			Timeout:           cfg.Probe.Timeout.String(),
			SlowCallThreshold: cfg.Probe.SlowCallThreshold.String(),
			ExpectedStatus:    cfg.Probe.ExpectedStatus.String(),
			FailureThreshold:  cfg.Settings.FailureThreshold,
			SuccessThreshold:  cfg.Settings.SuccessThreshold,
			OpenCooldown:      cfg.Settings.OpenCooldown.String(),
			MaxOpenCooldown:   cfg.Settings.MaxOpenCooldown.String(),
			ConfirmInterval:   cfg.ConfirmInterval.String(),
		}
		if cfg.CheckInterval > 0 {
			in.CheckInterval = cfg.CheckInterval.String()
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(in); err != nil {
			t.Fatal(err)
		}
		if buf.Len() > MaxInputBytes {
			return // the canonical form can be longer than a short original
		}
		again, err := ParseInput(buf.Bytes())
		if err != nil {
			t.Fatalf("re-marshalled input %s rejected: %v", buf.Bytes(), err)
		}
		if !sameConfig(cfg, again) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", cfg, again)
		}
	})
}
