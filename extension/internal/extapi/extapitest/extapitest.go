// Package extapitest is an in-process fake of the Lambda Extensions API for
// tests and benchmarks: it accepts one registration, hands out queued
// events from event/next and records reported errors.
package extapitest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/extapi"
)

// Identifier is the extension identifier the fake hands out.
const Identifier = "fake-extension-id"

// Registration is a recorded register call.
type Registration struct {
	Name   string
	Events []extapi.EventType
}

// ErrorReport is a recorded init/error or exit/error call.
type ErrorReport struct {
	// Path is "init/error" or "exit/error".
	Path         string
	ErrorType    string
	ErrorMessage string
}

// Server is a running fake. Its zero value is not usable; call Start.
type Server struct {
	// Addr is host:port, the value for AWS_LAMBDA_RUNTIME_API.
	Addr string

	srv       *httptest.Server
	events    chan extapi.Event
	firstNext chan struct{}
	errs      chan ErrorReport

	mu            sync.Mutex
	refused       map[extapi.EventType]refusal
	registrations []Registration
	reports       []ErrorReport
	nextCalls     int
	firstNextAt   time.Time
}

// Start starts a fake on a loopback port. Call Close when done.
func Start() *Server {
	s := &Server{
		events:    make(chan extapi.Event, 16),
		firstNext: make(chan struct{}),
		errs:      make(chan ErrorReport, 16),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2020-01-01/extension/register", s.register)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", s.next)
	mux.HandleFunc("POST /2020-01-01/extension/init/error", s.report("init/error"))
	mux.HandleFunc("POST /2020-01-01/extension/exit/error", s.report("exit/error"))
	s.srv = httptest.NewServer(mux)
	s.Addr = strings.TrimPrefix(s.srv.URL, "http://")
	return s
}

// Close stops the fake.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

type refusal struct {
	status    int
	errorType string
}

// Refuse makes registrations that ask for ev fail with status and a JSON
// body whose errorType is errorType, as Lambda Managed Instances refuse
// INVOKE (403, "Extension.InvalidEventType"). Refused registrations are
// recorded too.
func (s *Server) Refuse(ev extapi.EventType, status int, errorType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refused == nil {
		s.refused = map[extapi.EventType]refusal{}
	}
	s.refused[ev] = refusal{status, errorType}
}

// Send queues an event for the next event/next call.
func (s *Server) Send(ev extapi.Event) { s.events <- ev }

// SendShutdown queues a SHUTDOWN event whose deadline is d from now.
func (s *Server) SendShutdown(d time.Duration) {
	s.Send(extapi.Event{EventType: extapi.Shutdown, ShutdownReason: "spindown", DeadlineMs: time.Now().Add(d).UnixMilli()})
}

// SendInvoke queues an INVOKE event with the given request ID.
func (s *Server) SendInvoke(requestID string) {
	s.Send(extapi.Event{EventType: extapi.Invoke, RequestID: requestID, DeadlineMs: time.Now().Add(3 * time.Second).UnixMilli()})
}

// FirstNext is closed when the first event/next call arrives.
func (s *Server) FirstNext() <-chan struct{} { return s.firstNext }

// FirstNextAt returns when the first event/next call arrived.
func (s *Server) FirstNextAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstNextAt
}

// Errors delivers reported errors as they arrive.
func (s *Server) Errors() <-chan ErrorReport { return s.errs }

// Registrations returns the recorded registrations.
func (s *Server) Registrations() []Registration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Registration(nil), s.registrations...)
}

// Reports returns the recorded error reports.
func (s *Server) Reports() []ErrorReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ErrorReport(nil), s.reports...)
}

// NextCalls returns how many event/next calls arrived.
func (s *Server) NextCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextCalls
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	name := r.Header.Get(extapi.HeaderName)
	var body struct {
		Events []extapi.EventType `json:"events"`
	}
	if name == "" || json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body) != nil {
		http.Error(w, `{"errorType":"InvalidRequest"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.registrations = append(s.registrations, Registration{Name: name, Events: body.Events})
	for _, ev := range body.Events {
		if ref, ok := s.refused[ev]; ok {
			s.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(ref.status)
			_ = json.NewEncoder(w).Encode(map[string]string{"errorMessage": string(ev) + ": refused", "errorType": ref.errorType})
			return
		}
	}
	s.mu.Unlock()
	w.Header().Set(extapi.HeaderIdentifier, Identifier)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"functionName":"fake","functionVersion":"$LATEST","handler":"bootstrap"}`)
}

func (s *Server) next(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(extapi.HeaderIdentifier) != Identifier {
		http.Error(w, `{"errorType":"Extension.Unregistered"}`, http.StatusForbidden)
		return
	}
	s.mu.Lock()
	s.nextCalls++
	if s.nextCalls == 1 {
		s.firstNextAt = time.Now()
		close(s.firstNext)
	}
	s.mu.Unlock()
	select {
	case ev := <-s.events:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ev)
	case <-r.Context().Done():
	}
}

func (s *Server) report(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body)
		rep := ErrorReport{Path: path, ErrorType: r.Header.Get(extapi.HeaderErrorType), ErrorMessage: body.ErrorMessage}
		s.mu.Lock()
		s.reports = append(s.reports, rep)
		s.mu.Unlock()
		select {
		case s.errs <- rep:
		default:
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"status":"OK"}`)
	}
}
