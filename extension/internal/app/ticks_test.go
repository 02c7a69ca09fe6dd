package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/breaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/metrics"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// countingReader is a table of circuits in memory that counts its reads.
type countingReader struct {
	mu    sync.Mutex
	c     map[string]circuit.Circuit
	reads atomic.Int64
}

func (r *countingReader) Get(_ context.Context, id string) (circuit.Circuit, bool, error) {
	r.reads.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.c[id]
	if !ok {
		return circuit.New(id), false, nil
	}
	return c, true, nil
}

func (r *countingReader) GetMany(_ context.Context, ids []string) (map[string]circuit.Circuit, error) {
	r.reads.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]circuit.Circuit{}
	for _, id := range ids {
		if c, ok := r.c[id]; ok {
			out[id] = c
		}
	}
	return out, nil
}

func (r *countingReader) set(c circuit.Circuit) {
	r.mu.Lock()
	r.c[c.ID] = c
	r.mu.Unlock()
}

// tickFixture is an extension that ticks, over a cache that prefetched
// "payments", with a clock the test moves.
type tickFixture struct {
	x      *extension
	table  *countingReader
	cache  *cache.Cache
	emf    *syncBuffer
	clock  atomic.Int64 // unix nanos
	served http.Handler
}

func newTickFixture(tb testing.TB) *tickFixture {
	tb.Helper()
	f := &tickFixture{table: &countingReader{c: map[string]circuit.Circuit{}}, emf: &syncBuffer{}}
	f.clock.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, f.clock.Load()) }
	f.table.set(circuit.Circuit{ID: "payments", State: circuit.Closed, Version: 1})
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	f.cache = cache.New(f.table, cache.Options{RefreshInterval: time.Second, MaxAge: 2 * time.Second, Now: now, Logger: log})
	noStore := func(context.Context) (*store.Store, error) { return nil, errors.New("no table in this test") }
	brk := breaker.New(noStore, f.cache, breaker.Options{Now: now, Logger: log})
	if err := f.cache.Prefetch(context.Background(), []string{"payments"}); err != nil {
		tb.Fatal(err)
	}
	f.table.reads.Store(0)
	act := newActivity(now)
	f.served = &requestCounter{next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			brk.Lookup(r.Context(), "payments")
		}
	}), activity: act}
	f.x = &extension{cache: f.cache, brk: brk, emf: metrics.NewWriter(f.emf, "table"), log: log, activity: act}
	return f
}

func (f *tickFixture) advance(d time.Duration) { f.clock.Add(int64(d)) }

func (f *tickFixture) request(path string) {
	f.served.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
}

// tick ticks and waits for the reads it started.
func (f *tickFixture) tick(tb testing.TB) {
	tb.Helper()
	f.x.onTick(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.cache.Wait(ctx); err != nil {
		tb.Fatal(err)
	}
}

func TestTickDoesTheInvokeWork(t *testing.T) {
	tests := []struct {
		name      string
		before    func(f *tickFixture, t *testing.T)
		wantReads int64
		wantEMF   bool
	}{
		{"not due yet: no read", func(f *tickFixture, t *testing.T) { f.advance(500 * time.Millisecond) }, 0, false},
		{"warm after the start: the pinned circuit is read when due", func(f *tickFixture, t *testing.T) { f.advance(1500 * time.Millisecond) }, 1, false},
		{"a lookup since the last tick: read and metrics", func(f *tickFixture, t *testing.T) {
			f.request("/circuits/payments") // fresh: answered from memory
			f.advance(1500 * time.Millisecond)
		}, 1, true},
		{"idle past the warm spell: no read, no metric", func(f *tickFixture, t *testing.T) { f.advance(warmFor + time.Second) }, 0, false},
		{"health checks are not activity", func(f *tickFixture, t *testing.T) {
			f.advance(warmFor + time.Second)
			f.request("/health")
		}, 0, false},
		{"a request after an idle spell warms it again", func(f *tickFixture, t *testing.T) {
			f.advance(warmFor + time.Second)
			f.tick(t) // idle
			f.request("/circuits/payments")
			if err := f.cache.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			f.table.reads.Store(0) // the lookup's own read of the old value
			f.advance(1500 * time.Millisecond)
		}, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTickFixture(t)
			tt.before(f, t)
			f.tick(t)
			if got := f.table.reads.Load(); got != tt.wantReads {
				t.Errorf("table reads = %d, want %d", got, tt.wantReads)
			}
			if got := f.emf.String() != ""; got != tt.wantEMF {
				t.Errorf("metrics written = %v, want %v: %s", got, tt.wantEMF, f.emf)
			}
		})
	}
}

// A tick's read brings a change in the table into the cache with no
// lookup: the next lookup answers it at once.
func TestTickRefreshSeesTheTable(t *testing.T) {
	f := newTickFixture(t)
	f.table.set(circuit.Circuit{ID: "payments", State: circuit.Open, Version: 2, Override: circuit.ForcedOpen, OverrideReason: "operator"})
	f.advance(1500 * time.Millisecond)
	f.tick(t)
	if c, ok := f.cache.Peek("payments"); !ok || c.Version != 2 || c.Override != circuit.ForcedOpen {
		t.Fatalf("cached after the tick: %+v, %v; want the table's v2 with its override", c, ok)
	}
}

func TestTickInterval(t *testing.T) {
	for refresh, want := range map[time.Duration]time.Duration{time.Millisecond: minTick, 100 * time.Millisecond: minTick, time.Second: 250 * time.Millisecond, 5 * time.Second: 1250 * time.Millisecond} {
		if got := tickInterval(refresh); got != want {
			t.Errorf("tickInterval(%s) = %s, want %s", refresh, got, want)
		}
	}
}

// BenchmarkTick measures one tick of an idle sandbox (past the warm
// spell: no read, no metric) beside one of a busy sandbox whose circuit
// is not due (the common case between two refreshes).
func BenchmarkTick(b *testing.B) {
	b.Run("idle", func(b *testing.B) {
		f := newTickFixture(b)
		f.advance(warmFor + time.Second)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			f.x.onTick(ctx)
		}
		if f.table.reads.Load() != 0 {
			b.Fatal("an idle tick read the table")
		}
	})
	b.Run("busy-not-due", func(b *testing.B) {
		f := newTickFixture(b)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			f.x.activity.mark()
			f.x.onTick(ctx)
		}
	})
}
