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
	mu  sync.Mutex
	now time.Time
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
