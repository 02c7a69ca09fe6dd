package breaker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/outcomes"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/inflight"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Defaults of Options.
const (
	// DefaultClaimTimeout bounds the table writes of one lookup that ends
	// a cool-down or claims a probe lease.
	DefaultClaimTimeout = 100 * time.Millisecond
	// busyRetry is how long an extension that found every lease slot
	// held, or whose write to end a cool-down or claim a lease failed,
	// waits before it writes that circuit again from a lookup.
	busyRetry = time.Second
	// ttlMargin keeps bucket items past the longest window they serve.
	ttlMargin = time.Minute
	// flushParallelism bounds the concurrent bucket writes, and then the
	// concurrent window evaluations, of one flush.
	flushParallelism = 8
	// writeTimeout bounds one bucket write, which is not cut off by the
	// flush's budget (see Flush).
	writeTimeout = 5 * time.Second
	// evaluateSample is c in the chance c/k that a write, the k-th of its
	// bucket shard, leads to a window evaluation (see evaluateChance).
	evaluateSample = 2
)

// StoreFunc returns the table store, waiting for it to be built at most
// until ctx ends.
type StoreFunc func(ctx context.Context) (*store.Store, error)

// Options configure a Breaker.
type Options struct {
	// Policies are the per-service policies (defaults for absent services).
	Policies policy.Policies
	// ClaimTimeout bounds a lookup's table writes (default
	// DefaultClaimTimeout).
	ClaimTimeout time.Duration
	// FailAllow is the failure policy: true lets calls through when the
	// cached state expired or none could be read, false denies them.
	FailAllow bool
	// MaxCircuits bounds the circuits whose counts are kept in memory
	// (default outcomes.DefaultMaxCircuits); outcomes for more are
	// rejected with outcomes.ErrFull.
	MaxCircuits int
	// Holder identifies this extension in lease items (default: random).
	Holder string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Breaker is safe for concurrent use.
type Breaker struct {
	store StoreFunc
	cache *cache.Cache
	o     Options
	agg   *outcomes.Aggregator

	statsMu sync.Mutex
	stats   map[string]LookupStats

	// flushMu serializes flushes: two must never offer the same counts.
	flushMu sync.Mutex
	// writes tracks bucket writes, which may outlive their flush.
	writes sync.WaitGroup

	mu          sync.Mutex
	unevaluated map[string]time.Time   // circuits with failures written but not yet evaluated, and when to try next
	local       map[string]*localTrip  // this environment's own refusals (see localTrip)
	leases      map[string]store.Lease // by token
	busy        map[string]time.Time   // circuit ID -> no lookup write before
	inflight    map[string]bool        // circuits with a cool-down end or claim in progress
	claimAfter  map[string]claimTicket // per HALF_OPEN circuit: when this environment may claim (see claimDeferred)
	moveAfter   map[string]claimTicket // per OPEN circuit: from when a read lets this environment end its cool-down (see cooldownUnconfirmed)
	// own holds, per circuit and bucket start (Unix seconds), this
	// environment's bucket shard as its last write returned it: a window
	// read, eventually consistent, may miss that write.
	own map[string]map[int64]store.BucketShard
	// runFollowUp holds the circuits whose last write held a run: their
	// next write evaluates too (see elect).
	runFollowUp map[string]bool

	// shard is the bucket shard this environment writes (see
	// store.BucketShards), picked at random by New.
	shard int
	// chance draws a number in [0, 1) for the sampling of evaluations
	// (default rand.Float64; tests make it deterministic).
	chance func() float64

	// gate orders Stop against the recording of outcomes: once Stop has
	// returned, nothing more is recorded, so the last flush has it all.
	gate    sync.RWMutex
	stopped atomic.Bool
	// stopping is closed by the first Stop.
	stopping chan struct{}
	stopOnce sync.Once
	// leaseTTL, when set, is the probe lease duration of every service
	// instead of its policy's ProbeTimeout: tests set it.
	leaseTTL time.Duration
	// busyRetry is the pause of lookups after a busy or failed write
	// (busyRetry by default; tests shorten it).
	busyRetry time.Duration

	// bg runs background work, such as giving back a lease whose claim
	// was answered with an error, so that SHUTDOWN can wait for it.
	bg inflight.Counter
}

// New returns a Breaker that decides from what cache c holds, and writes
// through the store returned by st. Circuits it writes are put into c.
func New(st StoreFunc, c *cache.Cache, o Options) *Breaker {
	if o.ClaimTimeout <= 0 {
		o.ClaimTimeout = DefaultClaimTimeout
	}
	if o.Holder == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.Holder = hex.EncodeToString(b[:])
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Breaker{
		store: st,
		cache: c,
		o:     o,
		stats: map[string]LookupStats{},
		agg: outcomes.New(outcomes.Options{
			Bucket:      policy.BucketSize,
			MaxCircuits: o.MaxCircuits,
			Window:      func(id string) time.Duration { return o.Policies.For(id).Rates().Window },
		}),
		unevaluated: map[string]time.Time{},
		local:       map[string]*localTrip{},
		leases:      map[string]store.Lease{},
		busy:        map[string]time.Time{},
		inflight:    map[string]bool{},
		claimAfter:  map[string]claimTicket{},
		moveAfter:   map[string]claimTicket{},
		own:         map[string]map[int64]store.BucketShard{},
		runFollowUp: map[string]bool{},
		shard:       mrand.IntN(store.BucketShards),
		chance:      mrand.Float64,
		stopping:    make(chan struct{}),
		busyRetry:   busyRetry,
	}
}

// lookupStore returns the store for the table writes of a lookup (ending
// a cool-down, claiming and giving back probe leases): one attempt per
// call, with no SDK retry, since the breaker backs off per circuit and the
// lookup has only the claim timeout; so a failing table never drains the
// SDK's retry quota, which the cache's reads and the flush share.
func (b *Breaker) lookupStore(ctx context.Context) (*store.Store, error) {
	st, err := b.store(ctx)
	if err != nil {
		return nil, err
	}
	return st.WithLogger(b.o.Logger).WithoutRetries(), nil
}

// pause keeps lookups from writing circuit id's items before until.
func (b *Breaker) pause(id string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.busy[id] = until
}

// TakeRejected returns the number of calls whose outcomes were rejected
// since the last call because memory held MaxCircuits circuits.
func (b *Breaker) TakeRejected() int64 { return b.agg.TakeRejected() }

// put stores c, just read or written, in the cache.
func (b *Breaker) put(c circuit.Circuit) {
	if c.ID != "" {
		b.cache.Put(c)
	}
}

// peek returns the cached record of id.
func (b *Breaker) peek(id string) (circuit.Circuit, bool) { return b.cache.Peek(id) }
