package updater

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// MaxInputBytes bounds the input document (EventBridge allows 8192
// characters of constant input).
const MaxInputBytes = 8192

// Input is the EventBridge rule's constant input for one monitored
// service, as the construct writes it. Marshalled with encoding/json it
// produces exactly the keys ParseInput accepts; zero optional fields are
// left out and take their defaults.
//
//	{"ID": "mock-api", "URL": "https://x/api/resource/health",
//	 "Timeout": "4s", "SlowCallThreshold": "3s", "ExpectedStatus": "200-299",
//	 "FailureThreshold": 3, "SuccessThreshold": 2,
//	 "OpenCooldown": "30s", "MaxOpenCooldown": "5m",
//	 "ConfirmInterval": "5s", "CheckInterval": "10s"}
type Input struct {
	// ID is the service ID (required): 1 to 64 letters, digits, '-' or
	// '_', starting with a letter or digit. It is the circuit's key.
	ID string `json:"ID"`
	// URL is the health URL to GET (required): absolute http or https,
	// without credentials.
	URL string `json:"URL"`
	// Timeout bounds the whole check, as a Go duration (1ms..30s,
	// default "4s").
	Timeout string `json:"Timeout,omitempty"`
	// SlowCallThreshold fails a check slower than this, as a Go duration
	// (1ms..Timeout, default "3s", or Timeout when Timeout is shorter).
	SlowCallThreshold string `json:"SlowCallThreshold,omitempty"`
	// ExpectedStatus lists the healthy statuses as codes and ranges, such
	// as "200-299,304" (default "200-299").
	ExpectedStatus string `json:"ExpectedStatus,omitempty"`
	// FailureThreshold is how many consecutive failed checks open the
	// circuit (1..100, default 3).
	FailureThreshold int `json:"FailureThreshold,omitempty"`
	// SuccessThreshold is how many consecutive successful checks close a
	// circuit on trial, counting the first trial (1..100, default 2).
	SuccessThreshold int `json:"SuccessThreshold,omitempty"`
	// OpenCooldown is how long the first opening lasts before a trial, as
	// a Go duration (1s..24h, default "30s", or MaxOpenCooldown when that
	// is shorter); it doubles with each further opening until the circuit
	// closes again.
	OpenCooldown string `json:"OpenCooldown,omitempty"`
	// MaxOpenCooldown caps the growing cool-down, as a Go duration
	// (OpenCooldown..24h, default "5m", or OpenCooldown when longer).
	MaxOpenCooldown string `json:"MaxOpenCooldown,omitempty"`
	// ConfirmInterval spaces the confirmation checks that follow a failed
	// check of a CLOSED circuit within the same invocation, as a Go
	// duration (0s..30s, default "5s"); "0s" turns confirmation off.
	ConfirmInterval string `json:"ConfirmInterval,omitempty"`
	// CheckInterval makes one invocation check every interval for up to
	// RunWindow, as a Go duration (1s..30s); empty means one scheduled
	// check per invocation.
	CheckInterval string `json:"CheckInterval,omitempty"`
	// ReadCopies is how many items hold the circuit for the extensions'
	// refreshes, the circuit item counting as one (1..16, default 4): each
	// extension reads one of them, so each takes 1/ReadCopies of the reads
	// (see store.SyncCopies).
	ReadCopies int `json:"ReadCopies,omitempty"`
}

// wireInput mirrors Input with pointers, so that an explicit zero or empty
// value is told apart from a missing key.
type wireInput struct {
	ID                *string `json:"ID"`
	URL               *string `json:"URL"`
	Timeout           *string `json:"Timeout"`
	SlowCallThreshold *string `json:"SlowCallThreshold"`
	ExpectedStatus    *string `json:"ExpectedStatus"`
	FailureThreshold  *int    `json:"FailureThreshold"`
	SuccessThreshold  *int    `json:"SuccessThreshold"`
	OpenCooldown      *string `json:"OpenCooldown"`
	MaxOpenCooldown   *string `json:"MaxOpenCooldown"`
	ConfirmInterval   *string `json:"ConfirmInterval"`
	CheckInterval     *string `json:"CheckInterval"`
	ReadCopies        *int    `json:"ReadCopies"`
}

// inputKeys are the accepted keys, matched case-sensitively.
var inputKeys = map[string]bool{
	"ID": true, "URL": true, "Timeout": true, "SlowCallThreshold": true, "ExpectedStatus": true,
	"FailureThreshold": true, "SuccessThreshold": true, "OpenCooldown": true, "MaxOpenCooldown": true,
	"ConfirmInterval": true, "CheckInterval": true, "ReadCopies": true,
}

// Config is a parsed, validated and defaulted Input.
type Config struct {
	// ID is the service ID.
	ID string
	// Probe is the health check to run, defaults applied.
	Probe healthcheck.Probe
	// Settings are the breaker rules, defaults applied.
	Settings circuit.Settings
	// ConfirmInterval spaces confirmation checks; 0 turns them off.
	ConfirmInterval time.Duration
	// CheckInterval is the time between two regular checks within one
	// invocation; 0 means one regular check per invocation.
	CheckInterval time.Duration
	// ReadCopies is the number of items that hold the circuit for reads,
	// the circuit item included.
	ReadCopies int
}

// ParseInput parses and validates the rule's input. Keys are
// case-sensitive; unknown, duplicate or null keys, trailing data, missing
// ID or URL and values out of range are errors. Every error mentions the
// offending key.
func ParseInput(data []byte) (Config, error) {
	if len(data) > MaxInputBytes {
		return Config{}, fmt.Errorf("updater: input is %d bytes, more than %d", len(data), MaxInputBytes)
	}
	if err := checkKeys(data); err != nil {
		return Config{}, fmt.Errorf("updater: bad input: %w", err)
	}
	var w wireInput
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Config{}, fmt.Errorf("updater: bad input: %w", err)
	}
	return w.config()
}

// Config validates in and applies the defaults, as ParseInput does for
// its JSON form.
func (in Input) Config() (Config, error) {
	w := wireInput{ID: &in.ID, URL: &in.URL}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	integer := func(n int) *int {
		if n == 0 {
			return nil
		}
		return &n
	}
	w.Timeout, w.SlowCallThreshold, w.ExpectedStatus = str(in.Timeout), str(in.SlowCallThreshold), str(in.ExpectedStatus)
	w.OpenCooldown, w.MaxOpenCooldown = str(in.OpenCooldown), str(in.MaxOpenCooldown)
	w.ConfirmInterval, w.CheckInterval = str(in.ConfirmInterval), str(in.CheckInterval)
	w.FailureThreshold, w.SuccessThreshold = integer(in.FailureThreshold), integer(in.SuccessThreshold)
	w.ReadCopies = integer(in.ReadCopies)
	return w.config()
}

// checkKeys walks the top-level object: it must be one JSON object whose
// keys are known, distinct and not null, with nothing after it.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("not a JSON object (starts with %v)", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed JSON: %w", err)
		}
		k, _ := tok.(string)
		if !inputKeys[k] {
			return fmt.Errorf("unknown key %q (keys are case-sensitive: ID, URL, Timeout, SlowCallThreshold, ExpectedStatus, FailureThreshold, SuccessThreshold, OpenCooldown, MaxOpenCooldown, ConfirmInterval, CheckInterval, ReadCopies)", k)
		}
		if seen[k] {
			return fmt.Errorf("duplicate key %q", k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("malformed value of %q: %w", k, err)
		}
		if string(v) == "null" {
			return fmt.Errorf("%s is null; leave the key out to use the default", k)
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func (w wireInput) config() (Config, error) {
	var errs []error
	var cfg Config
	switch {
	case w.ID == nil:
		errs = append(errs, errors.New("ID is missing"))
	default:
		if err := circuit.ValidateID(*w.ID); err != nil {
			errs = append(errs, fmt.Errorf("ID: %w", err))
		}
		cfg.ID = *w.ID
	}
	if w.URL == nil {
		errs = append(errs, errors.New("URL is missing"))
	} else if err := healthcheck.ValidateURL(*w.URL); err != nil {
		errs = append(errs, fmt.Errorf("URL: %w", err))
	} else {
		cfg.Probe.URL = *w.URL
	}

	parse := func(key string, v *string) (time.Duration, bool) {
		d, err := time.ParseDuration(*v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not a Go duration such as \"4s\" or \"500ms\"", key, *v))
			return 0, false
		}
		return d, true
	}
	duration := func(key string, v *string, dst *time.Duration) {
		if v == nil {
			return
		}
		d, ok := parse(key, v)
		if !ok {
			return
		}
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: %q must be positive", key, *v))
			return
		}
		*dst = d
	}
	between := func(key string, v *string, lo, hi time.Duration, dst *time.Duration) {
		if v == nil {
			return
		}
		d, ok := parse(key, v)
		if !ok {
			return
		}
		if d < lo || d > hi {
			errs = append(errs, fmt.Errorf("%s: %q is out of range %s..%s", key, *v, lo, hi))
			return
		}
		*dst = d
	}
	threshold := func(key string, v *int, dst *int) {
		if v == nil {
			return
		}
		if *v < circuit.MinThreshold || *v > circuit.MaxThreshold {
			errs = append(errs, fmt.Errorf("%s: %d is out of range %d..%d", key, *v, circuit.MinThreshold, circuit.MaxThreshold))
			return
		}
		*dst = *v
	}
	duration("Timeout", w.Timeout, &cfg.Probe.Timeout)
	duration("SlowCallThreshold", w.SlowCallThreshold, &cfg.Probe.SlowCallThreshold)
	duration("OpenCooldown", w.OpenCooldown, &cfg.Settings.OpenCooldown)
	duration("MaxOpenCooldown", w.MaxOpenCooldown, &cfg.Settings.MaxOpenCooldown)
	cfg.ConfirmInterval = DefaultConfirmInterval
	between("ConfirmInterval", w.ConfirmInterval, 0, MaxConfirmInterval, &cfg.ConfirmInterval)
	between("CheckInterval", w.CheckInterval, MinCheckInterval, MaxCheckInterval, &cfg.CheckInterval)
	threshold("FailureThreshold", w.FailureThreshold, &cfg.Settings.FailureThreshold)
	threshold("SuccessThreshold", w.SuccessThreshold, &cfg.Settings.SuccessThreshold)
	cfg.ReadCopies = store.DefaultReadCopies
	if w.ReadCopies != nil {
		if *w.ReadCopies < 1 || *w.ReadCopies > store.MaxReadCopies {
			errs = append(errs, fmt.Errorf("ReadCopies: %d is out of range 1..%d", *w.ReadCopies, store.MaxReadCopies))
		} else {
			cfg.ReadCopies = *w.ReadCopies
		}
	}
	if w.ExpectedStatus != nil {
		s, err := healthcheck.ParseStatusSet(*w.ExpectedStatus)
		if err != nil {
			errs = append(errs, fmt.Errorf("ExpectedStatus: %w", err))
		}
		cfg.Probe.ExpectedStatus = s
	}
	if len(errs) == 0 {
		cfg.Probe = cfg.Probe.WithDefaults()
		cfg.Settings = cfg.Settings.WithDefaults()
		if err := cfg.Probe.Validate(); err != nil {
			errs = append(errs, err)
		}
		if err := cfg.Settings.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("updater: bad input: %w", err)
	}
	return cfg, nil
}
