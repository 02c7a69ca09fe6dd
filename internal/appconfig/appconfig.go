// Package appconfig reads the monitored services of the CDK app from
// infra/services.json, the one file that both the deployed stack and the
// local stack read, so the two do not drift.
//
// A service's settings come in three groups, each declared once:
// HealthCheck here, and circuit.Settings and circuit.RateSettings. Their
// JSON form is flat (see policy.UnmarshalFlat):
//
//	{"services": [{"id": "orders", "url": "https://orders.example.com/health",
//	  "schedule": "rate(1 minute)", "timeout": "2s", "disableConfirmation": true,
//	  "failureThreshold": 5, "openCooldown": "1m", "failureRateThreshold": 25,
//	  "readCopies": 8}]}
package appconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// DefaultPath is the configuration file, relative to the repository root.
const DefaultPath = "infra/services.json"

// File is the content of the configuration file.
type File struct {
	// Services are the monitored services.
	Services []Service `json:"services"`
}

// Service is one monitored service. Durations are positive Go duration
// strings ("4s", "5m"); a key left out keeps its default.
type Service struct {
	// ID names the circuit.
	ID string `json:"id"`
	// URL is the health-check URL; empty means the mock API's health path.
	URL string `json:"url"`
	// Schedule is an EventBridge schedule expression; default rate(1 minute).
	Schedule string `json:"schedule"`
	// HealthCheck tunes the updater's check.
	HealthCheck HealthCheck `json:",inline"`
	// Breaker tunes the state machine, for the updater and the extension.
	Breaker circuit.Settings `json:",inline"`
	// Passive tunes detection from the calls that attached functions
	// report.
	Passive circuit.RateSettings `json:",inline"`
	// ReadCopies is how many items hold the circuit for the extensions'
	// refreshes, the circuit item included (1..16; 0 keeps the default,
	// store.DefaultReadCopies): see the construct's
	// MonitoredService.ReadCopies.
	ReadCopies int `json:"readCopies"`
}

// UnmarshalJSON reads one flat object; unknown keys are an error.
func (s *Service) UnmarshalJSON(b []byte) error { return policy.UnmarshalFlat(b, s) }

// MarshalJSON writes one flat object, zero fields left out.
func (s Service) MarshalJSON() ([]byte, error) { return policy.MarshalFlat(s) }

// Load reads and validates the configuration file at path.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("appconfig: %w", err)
	}
	return Parse(data)
}

// Parse decodes and validates a configuration, rejecting unknown keys and
// settings out of range.
func Parse(data []byte) (File, error) {
	var f File
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("appconfig: parse: %w", err)
	}
	if len(f.Services) == 0 {
		return File{}, fmt.Errorf("appconfig: no services: list at least one under \"services\"")
	}
	for i, s := range f.Services {
		if err := circuit.ValidateID(s.ID); err != nil {
			return File{}, fmt.Errorf("appconfig: services[%d]: %w", i, err)
		}
		if err := s.Validate(); err != nil {
			return File{}, fmt.Errorf("appconfig: service %q: %w", s.ID, err)
		}
	}
	return f, nil
}

// Validate checks the three groups of settings, defaults applied, and
// ReadCopies.
func (s Service) Validate() error {
	var copies error
	if s.ReadCopies < 0 || s.ReadCopies > store.MaxReadCopies {
		copies = fmt.Errorf("readCopies: %d is out of range 1..%d", s.ReadCopies, store.MaxReadCopies)
	}
	return errors.Join(s.HealthCheck.Validate(), s.Breaker.WithDefaults().Validate(), s.Passive.WithDefaults().Validate(), copies)
}
