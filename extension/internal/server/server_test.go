package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
)

const token = "session-token"

// stubLooker answers OPEN for IDs starting with "open", CLOSED otherwise.
type stubLooker struct{ calls atomic.Int64 }

func (s *stubLooker) Lookup(_ context.Context, id string) breaker.Answer {
	s.calls.Add(1)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := circuit.New(id)
	if strings.HasPrefix(id, "open") {
		c = circuit.Circuit{ID: id, State: circuit.Open, Version: 2, UpdatedAt: now, Reason: "3 failed checks", RetryAt: now.Add(time.Minute)}
	}
	return breaker.Answer{Value: cache.Value{ID: id, Circuit: c, Known: true, Age: 1500 * time.Millisecond, At: now}, State: c.EffectiveState(now), Allowed: c.Allowed(now)}
}

func (s *stubLooker) LookupMany(ctx context.Context, ids []string) []breaker.Answer {
	out := make([]breaker.Answer, len(ids))
	for i, id := range ids {
		out[i] = s.Lookup(ctx, id)
	}
	return out
}

func newTestHandler(tok string) (http.Handler, *stubLooker) {
	l := &stubLooker{}
	return NewHandler(join(l, nil), Options{Token: tok}), l
}

func TestHandler(t *testing.T) {
	h, _ := newTestHandler(token)
	tests := []struct {
		name     string
		method   string
		target   string
		header   map[string]string
		body     string
		status   int
		contains string
	}{
		{"health without token", "GET", "/health", nil, "", 200, `"status":"ok"`},
		{"one circuit", "GET", "/circuits/open-api", map[string]string{api.HeaderToken: token}, "", 200, `"allowed":false`},
		{"closed circuit", "GET", "/circuits/svc", map[string]string{api.HeaderToken: token}, "", 200, `"state":"CLOSED"`},
		{"head", "HEAD", "/circuits/svc", map[string]string{api.HeaderToken: token}, "", 200, ""},
		{"many", "GET", "/circuits?ids=a,open-b", map[string]string{api.HeaderToken: token}, "", 200, `"id":"open-b"`},
		{"many repeated params", "GET", "/circuits?ids=a&ids=b", map[string]string{api.HeaderToken: token}, "", 200, `"id":"b"`},
		{"missing token", "GET", "/circuits/svc", nil, "", 401, `"message"`},
		{"wrong token", "GET", "/circuits/svc", map[string]string{api.HeaderToken: "nope"}, "", 401, "X-Circuit-Breaker-Token"},
		{"unknown path needs token first", "GET", "/nope", nil, "", 401, `"message"`},
		{"unknown path", "GET", "/nope", map[string]string{api.HeaderToken: token}, "", 404, `"message"`},
		{"nested path", "GET", "/circuits/a/b", map[string]string{api.HeaderToken: token}, "", 404, `"message"`},
		{"forwarded", "GET", "/circuits/svc", map[string]string{api.HeaderToken: token, "X-Forwarded-For": "10.0.0.1"}, "", 403, "forwarded"},
		{"forwarded health", "GET", "/health", map[string]string{"X-Forwarded-For": ""}, "", 403, "forwarded"},
		{"forwarded, RFC 7239", "GET", "/circuits/svc", map[string]string{api.HeaderToken: token, "Forwarded": "for=192.0.2.60"}, "", 403, "forwarded"},
		{"real IP header", "GET", "/circuits/svc", map[string]string{api.HeaderToken: token, "X-Real-IP": "192.0.2.60"}, "", 403, "forwarded"},
		{"large body without token", "POST", "/circuits/svc/outcomes", nil, strings.Repeat("x", MaxBodyBytes+1), 401, "X-Circuit-Breaker-Token"},
		{"wrong method", "POST", "/circuits/svc", map[string]string{api.HeaderToken: token}, "", 405, "not allowed"},
		{"wrong method health", "DELETE", "/health", nil, "", 405, "not allowed"},
		{"bad id", "GET", "/circuits/-bad", map[string]string{api.HeaderToken: token}, "", 400, "must start"},
		{"escaped slash id", "GET", "/circuits/a%2Fb", map[string]string{api.HeaderToken: token}, "", 400, "may hold only"},
		{"long id", "GET", "/circuits/" + strings.Repeat("x", 65), map[string]string{api.HeaderToken: token}, "", 400, "longer than"},
		{"bad id in list", "GET", "/circuits?ids=a,b%20c", map[string]string{api.HeaderToken: token}, "", 400, "may hold only"},
		{"no ids", "GET", "/circuits", map[string]string{api.HeaderToken: token}, "", 400, "ids is required"},
		{"malformed query", "GET", "/circuits?ids=%zz", map[string]string{api.HeaderToken: token}, "", 400, "malformed"},
		{"too many ids", "GET", "/circuits?ids=" + manyIDs(api.MaxIDs+1), map[string]string{api.HeaderToken: token}, "", 413, "too many"},
		{"huge query", "GET", "/circuits?ids=" + strings.Repeat("a,", MaxQueryBytes), map[string]string{api.HeaderToken: token}, "", 413, "too large"},
		{"body too large", "GET", "/circuits/svc", map[string]string{api.HeaderToken: token}, strings.Repeat("x", MaxBodyBytes+1), 413, "too large"},
		{"small body ignored", "GET", "/circuits/svc", map[string]string{api.HeaderToken: token}, "{}", 200, `"id":"svc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(tt.method, tt.target, body)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !strings.Contains(rec.Body.String(), tt.contains) {
				t.Errorf("body %s does not contain %s", rec.Body, tt.contains)
			}
			if tt.status >= 400 {
				var e api.Error
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
					t.Errorf("error body %q is not {\"message\":...}", rec.Body)
				}
			}
			if tt.status == 405 && rec.Header().Get("Allow") == "" {
				t.Error("405 without Allow header")
			}
		})
	}
}

func TestStreamedBodyTooLarge(t *testing.T) {
	h, _ := newTestHandler(token)
	req := httptest.NewRequest("GET", "/circuits/svc", io.NopCloser(strings.NewReader(strings.Repeat("x", 4*MaxBodyBytes))))
	req.ContentLength = -1 // chunked: the size is known only while reading
	req.Header.Set(api.HeaderToken, token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", rec.Code)
	}
}

func TestCircuitJSON(t *testing.T) {
	h, _ := newTestHandler(token)
	req := httptest.NewRequest("GET", "/circuits/open-x", nil)
	req.Header.Set(api.HeaderToken, token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var got api.Circuit
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "open-x" || got.State != "OPEN" || got.Allowed || got.Version != 2 || got.Stale || got.AgeMs != 1500 ||
		got.UpdatedAt == nil || got.RetryAt == nil || got.Reason != "3 failed checks" {
		t.Errorf("circuit = %+v", got)
	}
	for _, field := range []string{`"id"`, `"state"`, `"allowed"`, `"version"`, `"updatedAt"`, `"stale"`} {
		if !strings.Contains(rec.Body.String(), field) {
			t.Errorf("answer %s lacks %s", rec.Body, field)
		}
	}
}

func TestTokenCheckDisabledWhenUnset(t *testing.T) {
	h, _ := newTestHandler("")
	req := httptest.NewRequest("GET", "/circuits/svc", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status = %d, want 200 with no configured token", rec.Code)
	}
}

func TestListenIsLoopbackOnly(t *testing.T) {
	ln, err := Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("listening on %s, want 127.0.0.1", got)
	}
}

func TestServerOverLoopback(t *testing.T) {
	ln, err := Listen(0)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newTestHandler(token)
	srv := New(h, nil)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// A request header block over the limit gets 431 from net/http.
	req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/health", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 2*MaxHeaderBytes))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status = %d, want 431", resp.StatusCode)
	}
}

func manyIDs(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "s" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	return strings.Join(ids, ",")
}

func BenchmarkHandlerCircuit(b *testing.B) {
	h, _ := newTestHandler(token)
	req := httptest.NewRequest("GET", "/circuits/open-api", nil)
	req.Header.Set(api.HeaderToken, token)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}

func BenchmarkHandlerCircuits(b *testing.B) {
	h, _ := newTestHandler(token)
	req := httptest.NewRequest("GET", "/circuits?ids=a,b,open-c,d", nil)
	req.Header.Set(api.HeaderToken, token)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
	}
}

// BenchmarkCachedLookupOverLoopback measures a full cache-hit round trip
// through the real server, cache and a keep-alive client, in one process.
func BenchmarkCachedLookupOverLoopback(b *testing.B) {
	c := cache.New(nopReader{}, cache.Options{RefreshInterval: time.Hour})
	brk := breaker.New(nil, c, breaker.Options{}) // CLOSED circuits: no table writes
	brk.Lookup(context.Background(), "svc")
	ln, err := Listen(0)
	if err != nil {
		b.Fatal(err)
	}
	srv := New(NewHandler(brk, Options{Token: token}), nil)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/circuits/svc"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set(api.HeaderToken, token)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

type nopReader struct{}

func (nopReader) Get(_ context.Context, id string) (circuit.Circuit, bool, error) {
	return circuit.New(id), false, nil
}

func (nopReader) GetMany(context.Context, []string) (map[string]circuit.Circuit, error) {
	return map[string]circuit.Circuit{}, nil
}

// probeCounter records which lookups may claim a probe lease.
type probeCounter struct {
	stubLooker
	probing, batch int
}

func (p *probeCounter) Lookup(ctx context.Context, id string) breaker.Answer {
	p.probing++
	return p.stubLooker.Lookup(ctx, id)
}

func (p *probeCounter) LookupMany(ctx context.Context, ids []string) []breaker.Answer {
	p.batch++
	return p.stubLooker.LookupMany(ctx, ids)
}

// Only a GET of one circuit may claim a probe lease: a HEAD response has
// no body to carry the probe token.
func TestOnlyGetOfOneCircuitMayProbe(t *testing.T) {
	tests := []struct {
		method, target         string
		wantProbing, wantBatch int
	}{
		{http.MethodGet, "/circuits/svc", 1, 0},
		{http.MethodHead, "/circuits/svc", 0, 1},
		{http.MethodGet, "/circuits?ids=svc", 0, 1},
		{http.MethodHead, "/circuits?ids=svc", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.target, func(t *testing.T) {
			l := &probeCounter{}
			h := NewHandler(join(l, nil), Options{Token: token})
			req := httptest.NewRequest(tt.method, tt.target, nil)
			req.Header.Set(api.HeaderToken, token)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			if l.probing != tt.wantProbing || l.batch != tt.wantBatch {
				t.Errorf("probing lookups %d, batch lookups %d; want %d, %d", l.probing, l.batch, tt.wantProbing, tt.wantBatch)
			}
		})
	}
}

// probeLooker hands out a probe and, like a client that timed out, ends
// the request before the answer is written.
type probeLooker struct {
	stubLooker
	cancel context.CancelFunc
}

func (p *probeLooker) Lookup(ctx context.Context, id string) breaker.Answer {
	d := p.stubLooker.Lookup(ctx, id)
	d.Probe = "probe-token"
	p.cancel()
	return d
}

// abandonRecorder is a Reporter that records abandoned probes.
type abandonRecorder struct {
	stubReporter
	abandoned []string
}

func (a *abandonRecorder) Abandon(_ context.Context, id, token string) bool {
	a.abandoned = append(a.abandoned, id+"/"+token)
	return true
}

// A probe lease handed to a caller that stopped waiting is given back at
// once instead of blocking the fleet's probe slot until it expires.
func TestProbeOfGoneCallerIsAbandoned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &probeLooker{cancel: cancel}
	rep := &abandonRecorder{}
	h := NewHandler(join(l, rep), Options{Token: token})
	req := httptest.NewRequest(http.MethodGet, "/circuits/svc", nil).WithContext(ctx)
	req.Header.Set(api.HeaderToken, token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if len(rep.abandoned) != 1 || rep.abandoned[0] != "svc/probe-token" {
		t.Errorf("abandoned probes %v, want [svc/probe-token]", rep.abandoned)
	}
	if rec.Body.Len() != 0 {
		t.Errorf("answer written to a caller that left: %s", rec.Body)
	}
}

// looker and reporter are the halves of a Breaker that tests stub apart.
type looker interface {
	Lookup(ctx context.Context, id string) breaker.Answer
	LookupMany(ctx context.Context, ids []string) []breaker.Answer
}

type reporter interface {
	Report(ctx context.Context, id string, outs []api.Outcome) (api.Accepted, error)
}

// joined is a test's Breaker: lookups go to looker, outcomes to reporter
// (none taken when it is nil), abandoned probes to reporter when it
// records them.
type joined struct {
	looker
	r reporter
}

func join(l looker, r reporter) Breaker { return joined{looker: l, r: r} }

func (j joined) Report(ctx context.Context, id string, outs []api.Outcome) (api.Accepted, error) {
	if j.r == nil {
		return api.Accepted{}, errors.New("no reporter in this test")
	}
	return j.r.Report(ctx, id, outs)
}

func (j joined) Abandon(ctx context.Context, id, token string) bool {
	if a, ok := j.r.(interface {
		Abandon(ctx context.Context, id, token string) bool
	}); ok {
		return a.Abandon(ctx, id, token)
	}
	return false
}

// Requests refused for their token are logged at warn level and counted in
// TokensRejected: at the first, then at most once per TokenWarnInterval,
// with the requests refused in between.
func TestRejectedTokensWarnedAndCounted(t *testing.T) {
	var logs, emf bytes.Buffer
	l := &stubLooker{}
	h := NewHandler(join(l, nil), Options{Token: token, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Metrics: metrics.NewWriter(&emf, "circuits")}).(*handler)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.rejected.now = func() time.Time { return now }
	send := func(tok string) int {
		req := httptest.NewRequest("GET", "/circuits/a", nil)
		req.Header.Set(api.HeaderToken, tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	type warning struct {
		Level   string
		Refused int64
	}
	warnings := func() []warning {
		var out []warning
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var w warning
			if line != "" && json.Unmarshal([]byte(line), &w) == nil && w.Level == "WARN" {
				out = append(out, w)
			}
		}
		return out
	}
	counted := func() []float64 {
		var out []float64
		for _, line := range strings.Split(strings.TrimSpace(emf.String()), "\n") {
			var m map[string]any
			if line != "" && json.Unmarshal([]byte(line), &m) == nil {
				if v, ok := m[metrics.TokensRejected].(float64); ok {
					out = append(out, v)
				}
			}
		}
		return out
	}
	for range 5 {
		if code := send("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("wrong token answered %d", code)
		}
	}
	if code := send(token); code != http.StatusOK {
		t.Fatalf("right token answered %d", code)
	}
	if w, c := warnings(), counted(); len(w) != 1 || w[0].Refused != 1 || len(c) != 1 || c[0] != 1 {
		t.Fatalf("after 5 refused: warnings %+v, TokensRejected %v; want one of 1 each", w, c)
	}
	now = now.Add(TokenWarnInterval)
	send("")
	if w, c := warnings(), counted(); len(w) != 2 || w[1].Refused != 5 || len(c) != 2 || c[1] != 5 {
		t.Errorf("a minute later: warnings %+v, TokensRejected %v; want a second of 5 (4 held back and 1)", w, c)
	}
}
