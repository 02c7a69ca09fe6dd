// Package mockapi is a local stand-in for the stack's mock API (API
// Gateway mock integrations): the same paths, /api/resource and
// /api/resource/health, with the same bodies, plus a control endpoint that
// switches it between healthy, failing, hanging and slow.
//
// Control:
//
//	GET  /control                     {"mode":"healthy","delay":"1.5s","requests":12}
//	POST /control/mode  body: failing  (or healthy, hang, slow)
//	POST /control/mode?delay=2s  body: slow
package mockapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is how the stand-in answers the API paths.
type Mode string

// The modes.
const (
	// Healthy answers 200 with the mock integration's body.
	Healthy Mode = "healthy"
	// Failing answers 503, as the mock API with mode=failing.
	Failing Mode = "failing"
	// Hang never answers: it holds the request until the client gives up,
	// the mode changes or MaxHang passes.
	Hang Mode = "hang"
	// Slow answers 200 after the configured delay.
	Slow Mode = "slow"
)

// Paths of the API, as deployed under the stage.
const (
	ResourcePath = "/api/resource"
	HealthPath   = "/api/resource/health"
	ControlPath  = "/control"
	ModePath     = "/control/mode"
)

// Bodies of the mock integrations.
const (
	resourceBody = `{"message": "Hello from the mock service"}`
	healthBody   = `{"status": "healthy"}`
	failingBody  = `{"message": "The mock service is failing (stage variable mode=failing)"}`
)

// Defaults of the Server.
const (
	DefaultDelay   = 1500 * time.Millisecond
	DefaultMaxHang = 5 * time.Minute
	maxDelay       = time.Minute
)

// ParseMode parses a mode name, ignoring case and surrounding space.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Healthy, Failing, Hang, Slow:
		return m, nil
	default:
		return "", fmt.Errorf("mockapi: unknown mode %q: want healthy, failing, hang or slow", s)
	}
}

// Server is the stand-in, an http.Handler. The zero value is not usable;
// call New.
type Server struct {
	// MaxHang bounds a hanging request.
	MaxHang time.Duration
	// OnModeChange, if set, is called after every mode change.
	OnModeChange func(m Mode, delay time.Duration)

	mu       sync.Mutex
	mode     Mode
	delay    time.Duration
	changed  chan struct{} // closed and replaced on every mode change
	requests atomic.Int64
	mux      *http.ServeMux
}

// New returns a healthy stand-in.
func New() *Server {
	s := &Server{MaxHang: DefaultMaxHang, mode: Healthy, delay: DefaultDelay, changed: make(chan struct{})}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET "+ResourcePath, s.api(resourceBody))
	s.mux.HandleFunc("GET "+HealthPath, s.api(healthBody))
	s.mux.HandleFunc("GET "+ControlPath, s.getControl)
	s.mux.HandleFunc("POST "+ModePath, s.setMode)
	s.mux.HandleFunc("PUT "+ModePath, s.setMode)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Mode returns the current mode and slow delay.
func (s *Server) Mode() (Mode, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode, s.delay
}

// Requests returns how many API requests (not control requests) arrived.
func (s *Server) Requests() int64 { return s.requests.Load() }

// SetMode switches the mode; a positive delay also sets the slow delay
// (at most one minute). Requests hanging in the old mode are released.
func (s *Server) SetMode(m Mode, delay time.Duration) error {
	if _, err := ParseMode(string(m)); err != nil {
		return err
	}
	if delay < 0 || delay > maxDelay {
		return fmt.Errorf("mockapi: delay %s out of range 0..%s", delay, maxDelay)
	}
	s.mu.Lock()
	s.mode = m
	if delay > 0 {
		s.delay = delay
	}
	delay = s.delay
	close(s.changed)
	s.changed = make(chan struct{})
	hook := s.OnModeChange
	s.mu.Unlock()
	if hook != nil {
		hook(m, delay)
	}
	return nil
}

func (s *Server) state() (Mode, time.Duration, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode, s.delay, s.changed
}

func (s *Server) api(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		mode, delay, changed := s.state()
		switch mode {
		case Failing:
			writeJSON(w, http.StatusServiceUnavailable, failingBody)
			return
		case Hang:
			t := time.NewTimer(s.MaxHang)
			defer t.Stop()
			select {
			case <-r.Context().Done():
				return
			case <-changed:
			case <-t.C:
			}
			http.Error(w, `{"message": "released from hang"}`, http.StatusGatewayTimeout)
			return
		case Slow:
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-r.Context().Done():
				return
			case <-t.C:
			}
		}
		writeJSON(w, http.StatusOK, body)
	}
}

type controlState struct {
	Mode     Mode   `json:"mode"`
	Delay    string `json:"delay"`
	Requests int64  `json:"requests"`
}

func (s *Server) getControl(w http.ResponseWriter, _ *http.Request) {
	m, d := s.Mode()
	data, _ := json.Marshal(controlState{Mode: m, Delay: d.String(), Requests: s.Requests()})
	writeJSON(w, http.StatusOK, string(data))
}

func (s *Server) setMode(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 256))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name := string(body)
	if q := r.URL.Query().Get("mode"); q != "" {
		name = q
	}
	m, err := ParseMode(name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var delay time.Duration
	if d := r.URL.Query().Get("delay"); d != "" {
		if delay, err = time.ParseDuration(d); err != nil || delay <= 0 {
			http.Error(w, fmt.Sprintf("mockapi: bad delay %q", d), http.StatusBadRequest)
			return
		}
	}
	if err := s.SetMode(m, delay); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.getControl(w, r)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
