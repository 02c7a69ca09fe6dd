package updater

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/healthcheck"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dbcount"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/dynalite"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/logbuf"
)

// countingAPI counts the DynamoDB calls of the store.
type countingAPI = dbcount.Client

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = logbuf.Buffer

// env is a dynalite table behind a counting client and a store logging to
// a buffer.
type env struct {
	logger *slog.Logger
	store  *store.Store
	api    *countingAPI
	logs   *syncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := dynalite.Start(t)
	api := &countingAPI{API: srv.Client()}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	return &env{logger: logger, store: store.New(api, srv.NewTable(t)).WithLogger(logger), api: api, logs: logs}
}

// clock is a settable fake time.
type clock struct {
	mu    sync.Mutex
	now   time.Time
	slept []time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Sleep advances the clock by d at once, as the updater's Sleep.
func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.slept = append(c.slept, d)
	return nil
}

// Slept returns the durations the clock was advanced by, in order.
func (c *clock) Slept() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// Service modes of the fake health endpoint.
const (
	healthy = "healthy"
	fail500 = "500"
	hang    = "hang"
	slow    = "slow"
	refused = "refused"
)

// service is a health endpoint whose behaviour a test switches.
type service struct {
	srv        *httptest.Server
	mode       atomic.Value
	slowFor    time.Duration
	refusedURL string
	userAgents sync.Map
}

func newService(t *testing.T, slowFor time.Duration) *service {
	t.Helper()
	s := &service{slowFor: slowFor}
	s.mode.Store(healthy)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.userAgents.Store(r.Header.Get("User-Agent"), true)
		switch s.mode.Load() {
		case fail500:
			http.Error(w, "failure switch on", http.StatusInternalServerError)
		case hang:
			<-r.Context().Done()
		case slow:
			select {
			case <-time.After(s.slowFor):
			case <-r.Context().Done():
			}
			fmt.Fprint(w, "late")
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	t.Cleanup(s.srv.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.refusedURL = "http://" + l.Addr().String() + "/health"
	l.Close()
	return s
}

// url returns where a check in mode should go.
func (s *service) url(mode string) string {
	if mode == refused {
		return s.refusedURL
	}
	s.mode.Store(mode)
	return s.srv.URL + "/api/resource/health"
}

// countingProber counts checks.
type countingProber struct {
	inner Prober
	n     atomic.Int64
}

func (c *countingProber) Check(ctx context.Context, p healthcheck.Probe) healthcheck.Result {
	c.n.Add(1)
	return c.inner.Check(ctx, p)
}

type typesAV = types.AttributeValue

func strAV(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// script is a health endpoint that answers the statuses in order, then
// repeats the last one, and counts the requests.
type script struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	n        int
}

func newScript(t *testing.T, statuses ...int) *script {
	t.Helper()
	s := &script{statuses: statuses}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		code := s.statuses[min(s.n, len(s.statuses)-1)]
		s.n++
		s.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// requests returns how many checks reached the endpoint.
func (s *script) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// fakeTimeUpdater is an updater over e with the real prober and clk's
// time and sleeps.
func fakeTimeUpdater(e *env, clk *clock) *Updater {
	return &Updater{Store: e.store, Prober: healthcheck.NewChecker(nil, healthcheck.AllowLocalTargets()), Now: clk.Now, Sleep: clk.Sleep, Logger: e.logger}
}
