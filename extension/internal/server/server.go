// Package server is the extension's local HTTP API: it checks each request
// (no forwarding, session token, size, method, path and ID) and answers
// with the breaker's decisions in JSON.
package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
)

// Limits on requests.
const (
	// MaxBodyBytes is the largest request body accepted, except by POST
	// /circuits/{id}/outcomes (api.MaxOutcomeBodyBytes); the other routes
	// take none, so anything bigger is refused with 413.
	MaxBodyBytes = 1 << 10
	// MaxHeaderBytes bounds the request line and headers; Go answers 431
	// beyond it.
	MaxHeaderBytes = 8 << 10
	// MaxQueryBytes bounds the query string; beyond it the answer is 413.
	MaxQueryBytes = 4 << 10
)

// Breaker answers lookups and takes the outcomes of calls;
// *breaker.Breaker implements it.
type Breaker interface {
	// Lookup answers for one circuit; its answer may carry a probe lease.
	Lookup(ctx context.Context, id string) breaker.Answer
	// LookupMany answers for several circuits and never hands out a
	// probe lease.
	LookupMany(ctx context.Context, ids []string) []breaker.Answer
	// Report takes outcomes. An error with no outcome accepted means none
	// was taken (the extension is shutting down): the answer is then 503,
	// not 202.
	Report(ctx context.Context, id string, outs []api.Outcome) (api.Accepted, error)
	// Abandon takes back a probe lease whose caller stopped waiting.
	Abandon(ctx context.Context, id, token string) bool
}

// Options configure the handler.
type Options struct {
	// Token is the value the X-Circuit-Breaker-Token header must carry.
	// Empty disables the check; the extension does that only when
	// AWS_SESSION_TOKEN is unset, as in local runs.
	Token string
	// Logger receives refused requests at debug level, and requests
	// refused for their token at warn level, at most once per
	// TokenWarnInterval (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, receives TokensRejected: the requests refused
	// for their token since the last warning about them.
	Metrics *metrics.Writer
	// Services, when not empty, are the only service IDs whose outcomes
	// are taken (CIRCUIT_BREAKER_SERVICES: the services the function is
	// attached to); outcomes for any other ID are refused with 403, so
	// that memory does not grow with the IDs callers make up.
	Services []string
}

type handler struct {
	brk      Breaker
	services map[string]bool
	token    []byte
	log      *slog.Logger
	metrics  *metrics.Writer
	mux      *http.ServeMux
	rejected rejections
}

// NewHandler returns the API's handler, answering from b.
func NewHandler(b Breaker, o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h := &handler{brk: b, token: []byte(o.Token), log: o.Logger, metrics: o.Metrics, mux: http.NewServeMux()}
	h.rejected.now = time.Now
	if len(o.Services) > 0 {
		h.services = make(map[string]bool, len(o.Services))
		for _, id := range o.Services {
			h.services[id] = true
		}
	}
	// Methods are checked in the handlers, not in the patterns, so that a
	// wrong method gets a JSON 405 like every other error.
	h.mux.HandleFunc("/health", h.health)
	h.mux.HandleFunc("/circuits/{id}", h.circuit)
	h.mux.HandleFunc("/circuits/{id}/outcomes", h.outcomes)
	h.mux.HandleFunc("/circuits", h.circuits)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such resource: "+r.URL.Path)
	})
	return h
}

// New returns a server for h with timeouts and header limits set.
func New(h http.Handler, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{}
	s.Server = &http.Server{
		Handler:           s.track(h),
		ReadHeaderTimeout: 2 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       5 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return s
}

// forwardingHeaders mark a request relayed by a proxy (in canonical form);
// a request for the extension comes straight from the function, so any of
// them means a forged or proxied request, which is refused.
var forwardingHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-Ip"}

// Listen listens on 127.0.0.1:port, never on other interfaces.
func Listen(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, name := range forwardingHeaders {
		if _, forwarded := r.Header[name]; forwarded {
			h.refuse(w, r, http.StatusForbidden, "forwarded requests are refused")
			return
		}
	}
	// The token first: an unauthorised caller never gets a body read.
	if r.URL.Path != "/health" && !h.authorized(r) {
		h.rejectedToken(r)
		h.refuse(w, r, http.StatusUnauthorized, "missing or wrong "+api.HeaderToken+" header")
		return
	}
	limit := int64(MaxBodyBytes)
	keep := r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/outcomes")
	if keep {
		limit = api.MaxOutcomeBodyBytes
	}
	if r.ContentLength > limit || len(r.URL.RawQuery) > MaxQueryBytes {
		h.refuse(w, r, http.StatusRequestEntityTooLarge, "request too large")
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				h.refuse(w, r, http.StatusRequestEntityTooLarge, "request too large")
				return
			}
			h.refuse(w, r, http.StatusBadRequest, "unreadable request body")
			return
		}
		if !keep {
			body = nil
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	h.mux.ServeHTTP(w, r)
}

func (h *handler) authorized(r *http.Request) bool {
	if len(h.token) == 0 {
		return true
	}
	got := r.Header.Get(api.HeaderToken)
	return subtle.ConstantTimeCompare([]byte(got), h.token) == 1
}

// TokenWarnInterval is the least time between two warnings about requests
// refused for their token; the first one is logged at once.
const TokenWarnInterval = time.Minute

// rejections counts the requests refused for their token since the last
// warning about them.
type rejections struct {
	mu      sync.Mutex
	pending int64
	last    time.Time
	now     func() time.Time
}

// rejectedToken counts a request refused for its token, and logs a warning
// and emits TokensRejected for the requests counted so far: at the first,
// then at most once per TokenWarnInterval. Without it, a client sending
// another token than the extension's gets the failure policy on every
// call, silently.
func (h *handler) rejectedToken(r *http.Request) {
	h.rejected.mu.Lock()
	h.rejected.pending++
	now := h.rejected.now()
	if !h.rejected.last.IsZero() && now.Sub(h.rejected.last) < TokenWarnInterval {
		h.rejected.mu.Unlock()
		return
	}
	n := h.rejected.pending
	h.rejected.pending, h.rejected.last = 0, now
	h.rejected.mu.Unlock()
	h.log.Warn("requests refused for a missing or wrong "+api.HeaderToken+" header: the function's client sends another token than the extension's (AWS_SESSION_TOKEN, else AWS_CONTAINER_AUTHORIZATION_TOKEN), so its failure policy decides every call",
		"refused", n, "method", r.Method, "path", r.URL.Path)
	if h.metrics != nil {
		if err := h.metrics.Emit(metrics.AllServices, []metrics.Value{{Name: metrics.TokensRejected, Unit: metrics.Count, Value: float64(n)}}, nil); err != nil {
			h.log.Warn("metrics not written", "error", err.Error())
		}
	}
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	h.log.Debug("refused request", "status", status, "method", r.Method, "path", r.URL.Path, "reason", msg)
	writeError(w, status, msg)
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

func (h *handler) circuit(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := circuit.ValidateID(id); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var d breaker.Answer
	if r.Method == http.MethodHead {
		// HEAD carries no body, so it could not hand a probe token to
		// the caller: answer as a batch lookup, which never claims one.
		d = h.brk.LookupMany(r.Context(), []string{id})[0]
	} else {
		d = h.brk.Lookup(r.Context(), id)
		if d.Probe != "" && r.Context().Err() != nil {
			// The caller gave up (its client timed out) and would follow
			// its failure policy, not this answer: give the probe back.
			h.brk.Abandon(context.WithoutCancel(r.Context()), id, d.Probe)
			return
		}
	}
	writeJSON(w, http.StatusOK, Render(d))
}

func (h *handler) circuits(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed query string")
		return
	}
	var ids []string
	seen := map[string]bool{}
	for _, v := range q["ids"] {
		for _, id := range strings.Split(v, ",") {
			id = strings.TrimSpace(id)
			if id == "" || seen[id] {
				continue
			}
			if err := circuit.ValidateID(id); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
			seen[id] = true
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		writeError(w, http.StatusBadRequest, "query parameter ids is required: a comma-separated list of service IDs")
		return
	}
	if len(ids) > api.MaxIDs {
		writeError(w, http.StatusRequestEntityTooLarge, "too many ids: at most "+strconv.Itoa(api.MaxIDs))
		return
	}
	ds := h.brk.LookupMany(r.Context(), ids)
	out := api.Circuits{Circuits: make([]api.Circuit, len(ds))}
	for i, d := range ds {
		out.Circuits[i] = Render(d)
	}
	writeJSON(w, http.StatusOK, out)
}

// Render converts a breaker's answer into its wire form.
func Render(d breaker.Answer) api.Circuit {
	c := api.Circuit{
		ID:       d.ID,
		State:    string(d.State),
		Allowed:  d.Allowed,
		Version:  d.Circuit.Version,
		Stale:    d.Stale,
		AgeMs:    -1,
		FailMode: d.FailModeApplied,
		Reason:   d.Circuit.Reason,
	}
	if d.Known {
		c.AgeMs = d.Age.Milliseconds()
	}
	c.UpdatedAt = timePtr(d.Circuit.UpdatedAt)
	if ov := d.Circuit.ActiveOverride(d.At); ov != circuit.NoOverride {
		c.Override = string(ov)
		c.OverrideUntil = timePtr(d.Circuit.OverrideUntil)
	}
	if d.State == circuit.Open {
		c.RetryAt = timePtr(d.Circuit.RetryAt)
	}
	if d.Probe != "" {
		c.Probe, c.ProbeToken = true, d.Probe
	}
	return c
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"message":"encoding failed"}`)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, api.Error{Message: msg})
}
