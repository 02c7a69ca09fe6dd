package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/api"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
)

// probeCounter records which lookups may claim a probe lease.
type probeCounter struct {
	stubLooker
	probing, batch int
}

func (p *probeCounter) Lookup(ctx context.Context, id string) cache.Decision {
	p.probing++
	return p.stubLooker.Lookup(ctx, id)
}

func (p *probeCounter) LookupMany(ctx context.Context, ids []string) []cache.Decision {
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
			h := NewHandler(l, Options{Token: token})
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

func (p *probeLooker) Lookup(ctx context.Context, id string) cache.Decision {
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
	h := NewHandler(l, Options{Token: token, Reporter: rep})
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
