package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Reader reads circuits by key. *store.Store implements it.
type Reader interface {
	// Get reads one circuit; a circuit never written comes back as
	// circuit.New(id) with found false.
	Get(ctx context.Context, id string) (c circuit.Circuit, found bool, err error)
	// GetMany reads several circuits; circuits never written are absent.
	// On error the result may hold the circuits read so far.
	GetMany(ctx context.Context, ids []string) (map[string]circuit.Circuit, error)
}

// Admission is an Admitter's answer.
type Admission struct {
	// Allowed says whether the caller may call the service.
	Allowed bool
	// Probe, when set, is the token of the probe lease the caller was
	// given: its call is a trial of a HALF_OPEN circuit.
	Probe string
	// Circuit, when its ID is set, replaces the cached record in the
	// answer (the Admitter moved the circuit, such as OPEN to HALF_OPEN).
	Circuit circuit.Circuit
}

// Admitter makes the final decision for a circuit whose state is known.
type Admitter interface {
	// Admit decides whether a caller may call the service now. probe says
	// whether the caller may be given a probe lease (a single-circuit
	// lookup); batch lookups never are.
	Admit(ctx context.Context, c circuit.Circuit, now time.Time, probe bool) Admission
}

// AdmitFunc adapts a function to Admitter.
type AdmitFunc func(ctx context.Context, c circuit.Circuit, now time.Time, probe bool) Admission

// Admit calls f.
func (f AdmitFunc) Admit(ctx context.Context, c circuit.Circuit, now time.Time, probe bool) Admission {
	return f(ctx, c, now, probe)
}

// StateAdmitter admits by state alone (circuit.Circuit.Allowed): OPEN
// denies, CLOSED and HALF_OPEN allow.
var StateAdmitter Admitter = AdmitFunc(func(_ context.Context, c circuit.Circuit, now time.Time, _ bool) Admission {
	return Admission{Allowed: c.Allowed(now)}
})

// Options configure a Cache. Zero durations and sizes take the defaults
// noted on each field.
type Options struct {
	// RefreshInterval is the age after which a value is re-read
	// (default 1s).
	RefreshInterval time.Duration
	// MaxStaleness is how old a value whose refresh fails may get before
	// the failure policy takes over (default 30s).
	MaxStaleness time.Duration
	// MissTimeout bounds the wait of a lookup for a circuit with no value
	// (default 100ms).
	MissTimeout time.Duration
	// FetchTimeout bounds one read from the table, in the background
	// (default 2s).
	FetchTimeout time.Duration
	// MaxCircuits caps the number of cached circuits (default 1000).
	MaxCircuits int
	// FailAllow is the failure policy: true lets calls through when the
	// state is unknown, false denies them.
	FailAllow bool
	// Admitter decides for known states (default StateAdmitter).
	Admitter Admitter
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Logger receives read failures (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = time.Second
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = 30 * time.Second
	}
	if o.MissTimeout <= 0 {
		o.MissTimeout = 100 * time.Millisecond
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 2 * time.Second
	}
	if o.MaxCircuits <= 0 {
		o.MaxCircuits = 1000
	}
	if o.Admitter == nil {
		o.Admitter = StateAdmitter
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Decision is the answer of a lookup.
type Decision struct {
	// ID is the service ID.
	ID string
	// Circuit is the cached record; circuit.New(ID) when nothing is known.
	Circuit circuit.Circuit
	// State is the effective state at the time of the lookup. When the
	// failure policy decided with nothing known it is CLOSED for allow
	// and OPEN for deny.
	State circuit.State
	// Allowed says whether the caller may call the service.
	Allowed bool
	// Known is true when a value was read from the table at some point.
	Known bool
	// Stale is true when the last read failed or is overdue.
	Stale bool
	// FailMode is true when the failure policy decided Allowed.
	FailMode bool
	// Age is the time since the value was read; 0 when not Known.
	Age time.Duration
	// At is when the decision was made.
	At time.Time
	// Probe is the token of the probe lease given to the caller, if any.
	Probe string
}

// Cache is safe for concurrent use.
type Cache struct {
	r  Reader
	o  Options
	wg sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*entry
	lru     list.List // of *entry, most recently used at the front
	statsMu sync.Mutex
	stats   map[string]Stats
}

type entry struct {
	id     string
	elem   *list.Element
	pinned bool // listed at start: refreshed on every INVOKE

	c         circuit.Circuit
	loaded    bool      // c holds a value read from the table
	fetchedAt time.Time // when c was read
	err       error     // error of the last read, nil after a success
	attemptAt time.Time // when the last read started
	usedAt    time.Time // when the last lookup happened

	inflight      chan struct{} // closed when the pending read ends
	inflightSince time.Time
}

// New returns an empty cache reading through r.
func New(r Reader, o Options) *Cache {
	o.defaults()
	return &Cache{r: r, o: o, entries: make(map[string]*entry), stats: make(map[string]Stats)}
}

// Len returns the number of cached circuits.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Prefetch reads ids with one batched read and waits for it, bounded by
// ctx. The circuits are pinned: every INVOKE refreshes them when due. It
// returns the read error, if any; the circuits stay cached either way and
// lookups retry.
func (c *Cache) Prefetch(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	now := c.o.Now()
	c.mu.Lock()
	var batch, waiting []*entry
	for _, id := range ids {
		e := c.getLocked(id, now)
		e.pinned = true
		if e.inflight == nil {
			batch = append(batch, e)
		} else {
			waiting = append(waiting, e)
		}
	}
	chans := c.startLocked(batch, now)
	for _, e := range waiting {
		chans = append(chans, e.inflight)
	}
	c.mu.Unlock()
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("cache: prefetch %d circuits: %w", len(ids), ctx.Err())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, e := range append(batch, waiting...) {
		if e.err != nil {
			errs = append(errs, e.err)
			break // one read failed for all of them; say it once
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cache: prefetch %d circuits: %w", len(ids), errors.Join(errs...))
	}
	return nil
}

// RefreshDue starts a background read of every pinned or recently used
// circuit whose value is older than the refresh interval, in one batch.
// The extension calls it on each INVOKE event. It does not wait.
func (c *Cache) RefreshDue() {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch []*entry
	for _, e := range c.entries {
		if e.inflight != nil || !c.dueLocked(e, now) {
			continue
		}
		if e.pinned || e.usedAt.After(e.attemptAt) || !e.loaded {
			batch = append(batch, e)
		}
	}
	c.startLocked(batch, now)
}

// Wait blocks until every background read has ended, or ctx ends.
func (c *Cache) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cache: waiting for pending reads: %w", ctx.Err())
	}
}

// Lookup answers for one circuit. It waits on the table only when the
// circuit has no value yet, at most the miss timeout or until ctx ends.
func (c *Cache) Lookup(ctx context.Context, id string) Decision {
	var one [1]string
	one[0] = id
	var out [1]Decision
	c.lookup(ctx, one[:], out[:], true)
	return out[0]
}

// LookupMany answers for several circuits, in the order of ids; circuits
// with no value are read together in one batch.
func (c *Cache) LookupMany(ctx context.Context, ids []string) []Decision {
	out := make([]Decision, len(ids))
	c.lookup(ctx, ids, out, false)
	return out
}

func (c *Cache) lookup(ctx context.Context, ids []string, out []Decision, probe bool) {
	now := c.o.Now()
	entries := make([]*entry, len(ids))
	missed := make([]bool, len(ids))
	var refresh []*entry
	var waits []chan struct{}
	c.mu.Lock()
	for i, id := range ids {
		e := c.getLocked(id, now)
		e.usedAt = now
		entries[i] = e
		missed[i] = !e.loaded
		switch {
		case e.inflight != nil:
			if !e.loaded {
				waits = append(waits, e.inflight)
			}
		case c.dueLocked(e, now):
			refresh = append(refresh, e)
		}
	}
	if ch := c.startLocked(refresh, now); len(ch) > 0 {
		for _, e := range refresh {
			if !e.loaded {
				waits = append(waits, ch[0])
				break
			}
		}
	}
	c.mu.Unlock()

	if len(waits) > 0 {
		timer := time.NewTimer(c.o.MissTimeout)
	wait:
		for _, ch := range waits {
			select {
			case <-ch:
			case <-timer.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		timer.Stop()
		now = c.o.Now()
	}

	c.mu.Lock()
	for i, e := range entries {
		out[i] = c.snapshotLocked(e, now)
	}
	c.mu.Unlock()
	for i := range out {
		c.decide(ctx, &out[i], now, probe)
		c.count(out[i], missed[i])
	}
}

// snapshotLocked copies what a decision needs out of e.
func (c *Cache) snapshotLocked(e *entry, now time.Time) Decision {
	d := Decision{ID: e.id, Circuit: e.c, Known: e.loaded, At: now}
	if !e.loaded {
		d.Circuit = circuit.New(e.id)
		d.Stale = true
		d.FailMode = true
		return d
	}
	d.Age = now.Sub(e.fetchedAt)
	d.Stale = e.err != nil || (e.inflight != nil && now.Sub(e.inflightSince) > c.o.MissTimeout)
	d.FailMode = e.err != nil && d.Age > c.o.MaxStaleness
	return d
}

// decide fills State and Allowed, outside the lock: the Admitter may do I/O.
func (c *Cache) decide(ctx context.Context, d *Decision, now time.Time, probe bool) {
	if d.FailMode {
		d.Allowed = c.o.FailAllow
		switch {
		case d.Known:
			d.State = d.Circuit.EffectiveState(now)
		case d.Allowed:
			d.State = circuit.Closed
		default:
			d.State = circuit.Open
		}
		return
	}
	a := c.o.Admitter.Admit(ctx, d.Circuit, now, probe)
	if a.Circuit.ID != "" {
		d.Circuit = a.Circuit
	}
	d.State = d.Circuit.EffectiveState(now)
	d.Allowed, d.Probe = a.Allowed, a.Probe
}

// Put stores c, read or written by this extension just now, unless the
// cache holds a newer version. A cached circuit is re-read on schedule as
// usual.
func (c *Cache) Put(v circuit.Circuit) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.getLocked(v.ID, now)
	if e.loaded && e.c.Version > v.Version {
		return
	}
	e.c, e.loaded, e.fetchedAt, e.err = v, true, now, nil
}

// Peek returns the cached record of id without counting it as used.
func (c *Cache) Peek(id string) (circuit.Circuit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || !e.loaded {
		return circuit.Circuit{}, false
	}
	return e.c, true
}

// getLocked returns the entry for id, creating it (and evicting the least
// recently used entry past the cap) when needed, and marks it used.
func (c *Cache) getLocked(id string, now time.Time) *entry {
	if e, ok := c.entries[id]; ok {
		c.lru.MoveToFront(e.elem)
		return e
	}
	e := &entry{id: id}
	e.elem = c.lru.PushFront(e)
	c.entries[id] = e
	for len(c.entries) > c.o.MaxCircuits {
		old := c.lru.Back().Value.(*entry)
		c.lru.Remove(old.elem)
		delete(c.entries, old.id)
		c.o.Logger.Debug("evicted circuit", "id", old.id)
	}
	return e
}

// dueLocked reports whether e should be read again: no read has started
// within the refresh interval. A failed read is retried no sooner either.
func (c *Cache) dueLocked(e *entry, now time.Time) bool {
	return e.attemptAt.IsZero() || now.Sub(e.attemptAt) >= c.o.RefreshInterval
}

// startLocked starts one background read of batch, marking its entries in
// flight, and returns the channel closed when the read ends (none for an
// empty batch).
func (c *Cache) startLocked(batch []*entry, now time.Time) []chan struct{} {
	if len(batch) == 0 {
		return nil
	}
	ch := make(chan struct{})
	for _, e := range batch {
		e.inflight = ch
		e.inflightSince = now
		e.attemptAt = now
	}
	c.wg.Add(1)
	go c.fetch(batch, ch)
	return []chan struct{}{ch}
}

// fetch reads batch from the table, detached from any request: a lookup
// that stops waiting does not cancel the read, so the next lookup hits.
func (c *Cache) fetch(batch []*entry, done chan struct{}) {
	defer c.wg.Done()
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), c.o.FetchTimeout)
	defer cancel()

	var (
		got   map[string]circuit.Circuit
		err   error
		start = time.Now()
	)
	if len(batch) == 1 {
		var one circuit.Circuit
		var found bool
		one, found, err = c.r.Get(ctx, batch[0].id)
		if err == nil && found {
			got = map[string]circuit.Circuit{one.ID: one}
		}
	} else {
		ids := make([]string, len(batch))
		for i, e := range batch {
			ids[i] = e.id
		}
		got, err = c.r.GetMany(ctx, ids)
	}
	if err != nil {
		c.o.Logger.Warn("reading circuits failed; serving cached values", "circuits", len(batch), "error", err.Error(), "durationMs", time.Since(start).Milliseconds())
	} else {
		c.o.Logger.Debug("read circuits", "circuits", len(batch), "durationMs", time.Since(start).Milliseconds())
	}

	// Unreadable items fail only their own circuits; the rest of the
	// batch was read.
	var unreadable store.ItemErrors
	partial := errors.As(err, &unreadable)
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch {
		e.inflight = nil
		if partial {
			if ierr, bad := unreadable[e.id]; bad {
				e.err = ierr
				continue
			}
		} else if err != nil && !hasKey(got, e.id) {
			e.err = err
			continue
		}
		v, ok := got[e.id]
		if !ok {
			v = circuit.New(e.id)
		}
		// A read that started before this extension's own write (Put)
		// must not bring an older version back.
		if e.loaded && e.c.Version > v.Version {
			e.fetchedAt, e.err = now, nil
			continue
		}
		e.c, e.loaded, e.fetchedAt, e.err = v, true, now, nil
	}
}

func hasKey(m map[string]circuit.Circuit, id string) bool {
	_, ok := m[id]
	return ok
}
