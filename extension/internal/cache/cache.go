package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// Options configure a Cache. Zero durations and sizes take the defaults
// noted on each field.
type Options struct {
	// RefreshInterval is the age after which a value is re-read
	// (default 1s).
	RefreshInterval time.Duration
	// MaxStaleness is how long reads of a circuit may keep failing, from
	// the first failed read, before the failure policy takes over
	// (default 30s).
	MaxStaleness time.Duration
	// MaxAge is the oldest value a Get returns without waiting: a Get
	// whose value is older waits for the refresh already in flight
	// (or starts it), at most MissTimeout, and shares that read with every
	// other caller. Zero means no maximum: old values are answered at once
	// while the refresh runs. A MaxAge shorter than RefreshInterval is
	// raised to it.
	MaxAge time.Duration
	// MissTimeout bounds the wait of a Get for a circuit with no value,
	// or with a value older than MaxAge (default 100ms).
	MissTimeout time.Duration
	// FetchTimeout bounds one read from the table, in the background
	// (default 2s).
	FetchTimeout time.Duration
	// MaxCircuits caps the number of cached circuits (default 1000).
	MaxCircuits int
	// Now is the wall clock (default time.Now).
	Now func() time.Time
	// Uptime is a monotonic clock: the time since some fixed start, which
	// does not advance while the environment is kept in a snapshot
	// (default: the monotonic clock of the process, or, when Now is set,
	// one that follows Now). The wall clock running ahead of it means the
	// memory was restored from a snapshot (see RestoreDrift).
	Uptime func() time.Duration
	// OnRestore, if set, is called once for each restore from a snapshot
	// the cache detects, before any read that the restore makes due
	// starts, so that whatever the reads depend on and the snapshot also
	// held (such as cached credentials) can be dropped first. It is called
	// with the cache locked: it must return quickly and must not call the
	// Cache.
	OnRestore func()
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
	if o.MaxAge > 0 && o.MaxAge < o.RefreshInterval {
		o.MaxAge = o.RefreshInterval
	}
	if o.MaxCircuits <= 0 {
		o.MaxCircuits = 1000
	}
	if o.Uptime == nil {
		if o.Now == nil {
			began := time.Now()
			o.Uptime = func() time.Duration { return time.Since(began) }
		} else {
			now := o.Now
			began := now()
			o.Uptime = func() time.Duration { return now().Sub(began) }
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Value is what the cache knows of one circuit when a Get returns.
type Value struct {
	// ID is the service ID.
	ID string
	// Circuit is the cached record; circuit.New(ID) when nothing is known.
	Circuit circuit.Circuit
	// Known is true when a value was read from the table at some point.
	Known bool
	// Stale is true when the last read failed, a read has been pending
	// longer than the miss timeout, or the value is older than the
	// maximum age.
	Stale bool
	// Expired is true when the value must not decide: nothing was ever
	// read, or reads have kept failing for longer than the maximum
	// staleness, counted from the first failure.
	Expired bool
	// Age is the time since the read that gave the value started (or
	// since it was put); 0 when not Known. A read is answered at some
	// moment after it starts, so the table state the value shows is never
	// younger than Age, even when the answer was taken in long after it
	// came (a freeze between the two).
	Age time.Duration
	// At is the clock's time when the Get returned.
	At time.Time
	// Missed is true when the cache held no value when the Get started.
	Missed bool
	// Waited is true when the Get waited for a refresh because its value
	// was older than the maximum age. Age and Stale then say whether a
	// fresh value came in time.
	Waited bool
}

// Cache is safe for concurrent use.
type Cache struct {
	r  Reader
	o  Options
	wg sync.WaitGroup

	mu  sync.Mutex
	seq uint64 // orders reads and Puts: bumped by each
	// lastWall and lastUptime are the clocks' readings at the last look
	// (see observeLocked); restoreSeq is seq when a restore was last seen.
	lastWall   time.Time
	lastUptime time.Duration
	restoreSeq uint64
	entries    map[string]*entry
	lru        list.List // of *entry, most recently used at the front
}

type entry struct {
	id     string
	elem   *list.Element
	pinned bool // listed at start: refreshed on every INVOKE

	c         circuit.Circuit
	loaded    bool      // c holds a value read from the table
	fetchedAt time.Time // when the read that gave c started, or c was put
	valueSeq  uint64    // sequence number of the read or Put that gave c
	err       error     // error of the last read, nil after a success
	failingAt time.Time // first failed read since the last success
	restored  bool      // c was cached before a restore from a snapshot
	attemptAt time.Time // when the last read started; zero: due at once
	usedAt    time.Time // when the last Get asked for it

	inflight      chan struct{} // closed when the pending read ends
	inflightSince time.Time
	inflightSeq   uint64 // sequence number of the pending read
}

// New returns an empty cache reading through r.
func New(r Reader, o Options) *Cache {
	o.defaults()
	return &Cache{r: r, o: o, entries: make(map[string]*entry)}
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
	c.observeLocked(now)
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
// A circuit counts as recently used when a Get asked for it at or after
// the start of its last read, so a function that asks for a circuit once
// per invocation finds the read already running when its Get arrives.
// The extension calls it first thing on each INVOKE event, or on each
// tick of its timer where no INVOKE comes. It does not wait.
func (c *Cache) RefreshDue() {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observeLocked(now)
	var batch []*entry
	for _, e := range c.entries {
		if e.inflight != nil || !c.dueLocked(e, now) {
			continue
		}
		if e.pinned || (!e.usedAt.IsZero() && !e.usedAt.Before(e.attemptAt)) || !e.loaded {
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

// Get returns what the cache knows of circuit id, and counts the circuit
// as used: a read is started when one is due. It waits on the table only
// when the circuit has no value yet, or a value older than the maximum
// age, at most the miss timeout or until ctx ends.
func (c *Cache) Get(ctx context.Context, id string) Value {
	var one [1]string
	one[0] = id
	var out [1]Value
	c.get(ctx, one[:], out[:])
	return out[0]
}

// GetMany is Get for several circuits, in the order of ids; the reads due
// are made together in one batch.
func (c *Cache) GetMany(ctx context.Context, ids []string) []Value {
	out := make([]Value, len(ids))
	c.get(ctx, ids, out)
	return out
}

func (c *Cache) get(ctx context.Context, ids []string, out []Value) {
	now := c.o.Now()
	entries := make([]*entry, len(ids))
	missed := make([]bool, len(ids))
	// needs[i]: the answer for ids[i] waits for the read in flight, since
	// it has no value or one older than the maximum age.
	needs := make([]bool, len(ids))
	var refresh []*entry
	c.mu.Lock()
	c.observeLocked(now)
	for i, id := range ids {
		e := c.getLocked(id, now)
		e.usedAt = now
		entries[i] = e
		missed[i] = !e.loaded
		if e.inflight == nil && c.dueLocked(e, now) && !slices.Contains(refresh, e) {
			refresh = append(refresh, e)
		}
	}
	c.startLocked(refresh, now)
	wait := false
	var since time.Duration // how long the first read waited for had run
	for i, e := range entries {
		needs[i] = e.inflight != nil && (!e.loaded || c.tooOldLocked(e, now))
		if needs[i] && !wait {
			wait, since = true, now.Sub(e.inflightSince)
		}
	}
	c.mu.Unlock()

	if wait {
		start := now
		c.waitFresh(ctx, entries, needs)
		now = c.o.Now()
		if c.o.Logger.Enabled(ctx, slog.LevelDebug) {
			c.o.Logger.Debug("waited for a fresh value", "circuits", len(ids), "readRunningMs", ms(since), "waitedMs", ms(now.Sub(start)))
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range entries {
		out[i] = c.valueLocked(e, now)
		out[i].Missed = missed[i]
		out[i].Waited = needs[i] && !missed[i]
	}
}

// waitFresh waits until no entry flagged in needs has a read in flight
// while it still lacks a value, or one younger than the maximum age, at most the
// miss timeout or until ctx ends. A read that is retried at once (one cut
// by a freeze) is waited for too, within the same bound.
func (c *Cache) waitFresh(ctx context.Context, entries []*entry, needs []bool) {
	timer := time.NewTimer(c.o.MissTimeout)
	defer timer.Stop()
	for {
		var ch chan struct{}
		c.mu.Lock()
		now := c.o.Now()
		for i, e := range entries {
			if needs[i] && e.inflight != nil && (!e.loaded || c.tooOldLocked(e, now)) {
				ch = e.inflight
				break
			}
		}
		c.mu.Unlock()
		if ch == nil {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// tooOldLocked reports whether e holds a value older than the maximum age,
// or one cached before a restore from a snapshot (whatever the maximum
// age, even none).
func (c *Cache) tooOldLocked(e *entry, now time.Time) bool {
	return e.loaded && (e.restored || c.o.MaxAge > 0 && now.Sub(e.fetchedAt) > c.o.MaxAge)
}

// RestoreDrift is how far the wall clock may run ahead of the monotonic
// clock (Options.Uptime) between two looks at the cache before the cache
// takes it for a restore from a snapshot. Both advance together while the
// process runs or is frozen between invocations; while the memory sits in
// a snapshot, possibly for days, only the wall clock does. Clock
// adjustments are far smaller.
const RestoreDrift = time.Second

// observeLocked compares the clocks at now with their last readings. When
// the wall clock has run more than RestoreDrift ahead of the monotonic
// one, the memory was restored from a snapshot: every cached value is then
// treated as older than the maximum age (see tooOldLocked) and read again
// at once, so none is served as fresh. The monotonic clock, which ages
// values otherwise, did not count the time in the snapshot. Then it calls
// Options.OnRestore.
func (c *Cache) observeLocked(now time.Time) {
	wall, up := now.Round(0), c.o.Uptime()
	lastWall, lastUp := c.lastWall, c.lastUptime
	c.lastWall, c.lastUptime = wall, up
	if lastWall.IsZero() {
		return
	}
	drift := wall.Sub(lastWall) - (up - lastUp)
	if drift <= RestoreDrift {
		return
	}
	c.seq++
	c.restoreSeq = c.seq
	n := 0
	for _, e := range c.entries {
		if e.loaded {
			e.restored = true
			n++
		}
		e.attemptAt = time.Time{} // due at once
	}
	c.o.Logger.Info("restored from a snapshot: cached values are treated as older than the maximum age and read again",
		"circuits", n, "wallAheadMs", drift.Milliseconds())
	if c.o.OnRestore != nil {
		c.o.OnRestore()
	}
}

// valueLocked copies what the cache knows out of e.
func (c *Cache) valueLocked(e *entry, now time.Time) Value {
	d := Value{ID: e.id, Circuit: e.c, Known: e.loaded, At: now}
	if !e.loaded {
		d.Circuit = circuit.New(e.id)
		d.Stale = true
		d.Expired = true
		return d
	}
	d.Age = now.Sub(e.fetchedAt)
	if e.restored {
		// The monotonic clock did not count the time in the snapshot.
		d.Age = max(d.Age, now.Round(0).Sub(e.fetchedAt.Round(0)))
	}
	d.Stale = e.err != nil ||
		(e.inflight != nil && now.Sub(e.inflightSince) > c.o.MissTimeout) ||
		c.tooOldLocked(e, now)
	// A value expires only once reads have kept failing for longer than
	// the maximum staleness, counted from the first failure: an old value
	// from before a long pause is not a failure.
	d.Expired = e.err != nil && now.Sub(e.failingAt) > c.o.MaxStaleness
	return d
}

// Put stores v, read or written by this extension just now, unless the
// cache holds a newer value: a higher version, or the same version with a
// later override. Whatever the versions, the cached override fields stay
// unless v's override was set later: a value this extension wrote carries
// the override of the read it started from, which an operator may have
// changed since. (An override cleared meanwhile is seen at the next read.)
// A read that started before Put and ends after it does not replace v
// unless it is newer in the same sense (see Newer); a read that started
// after Put does, except that a lower version never replaces the state
// machine's part (only the override). A cached circuit is re-read on
// schedule as usual.
func (c *Cache) Put(v circuit.Circuit) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observeLocked(now)
	e := c.getLocked(v.ID, now)
	c.seq++
	if e.loaded && Newer(e.c, v) {
		return
	}
	if e.loaded && e.c.OverrideAt.After(v.OverrideAt) {
		v.Override, v.OverrideReason, v.OverrideUntil, v.OverrideAt = e.c.Override, e.c.OverrideReason, e.c.OverrideUntil, e.c.OverrideAt
	}
	e.c, e.loaded, e.fetchedAt, e.valueSeq = v, true, now, c.seq
	e.err, e.failingAt, e.restored = nil, time.Time{}, false
}

// Newer reports whether a is known to be a later record of the circuit
// than b: a higher version, or at the same version an override set later
// (overrides do not change the version). When neither holds, the order of
// the reads and writes that produced them decides.
func Newer(a, b circuit.Circuit) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return !a.OverrideAt.IsZero() && !b.OverrideAt.IsZero() && a.OverrideAt.After(b.OverrideAt)
}

// Peek returns the cached record of id without counting it as used, and
// without reading the table.
func (c *Cache) Peek(id string) (circuit.Circuit, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || !e.loaded {
		return circuit.Circuit{}, false
	}
	return e.c, true
}

// PeekValue returns what a Get of id would answer now from the value
// held, without its side effects: it counts no use, starts no read, waits
// for none, and does not look at the clocks for a restore. False when the
// cache holds no value of id.
func (c *Cache) PeekValue(id string) (Value, bool) {
	now := c.o.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || !e.loaded {
		return Value{}, false
	}
	return c.valueLocked(e, now), true
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
	c.seq++
	for _, e := range batch {
		e.inflight = ch
		e.inflightSince = now
		e.inflightSeq = c.seq
		e.attemptAt = now
	}
	c.wg.Add(1)
	go c.fetch(batch, ch, now)
	return []chan struct{}{ch}
}

// freezeSlack is how much later than its deadline a read may end before
// the lateness is taken for a freeze: a running process's timers fire
// within milliseconds, a frozen one's only when it is thawed.
const freezeSlack = 250 * time.Millisecond

// fetch reads batch from the table, detached from any request: a Get
// that stops waiting does not cancel the read, so the next Get hits.
// start is when the read was started (the clock's time), which a freeze
// may separate from when this goroutine first runs.
func (c *Cache) fetch(batch []*entry, done chan struct{}, start time.Time) {
	defer c.wg.Done()
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), c.o.FetchTimeout)
	defer cancel()

	var (
		got map[string]circuit.Circuit
		err error
	)
	if len(batch) == 1 {
		// A circuit never written still has its override item read with
		// it, so the result counts even when the circuit was not found.
		var one circuit.Circuit
		one, _, err = c.r.Get(ctx, batch[0].id)
		if err == nil {
			got = map[string]circuit.Circuit{one.ID: one}
		}
	} else {
		ids := make([]string, len(batch))
		for i, e := range batch {
			ids[i] = e.id
		}
		got, err = c.r.GetMany(ctx, ids)
	}
	now := c.o.Now()
	took := now.Sub(start)

	// A read whose deadline passed while the sandbox was frozen ends long
	// after that deadline, on thaw. It says nothing about the table: it
	// counts as no answer and is retried at once.
	var unreadable store.ItemErrors
	partial := errors.As(err, &unreadable)
	if err != nil && !partial && errors.Is(ctx.Err(), context.DeadlineExceeded) && took > c.o.FetchTimeout+freezeSlack {
		c.o.Logger.Info("read cut by a freeze; reading again", "circuits", len(batch), "durationMs", took.Milliseconds())
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range batch {
			e.inflight = nil
		}
		c.startLocked(batch, now)
		return
	}
	if err != nil {
		c.o.Logger.Warn("reading circuits failed; serving cached values", "circuits", len(batch), "error", err.Error(), "durationMs", took.Milliseconds())
	} else {
		c.o.Logger.Debug("read circuits", "circuits", len(batch), "durationMs", took.Milliseconds())
	}

	// Unreadable items fail only their own circuits; the rest of the
	// batch was read.
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range batch {
		e.inflight = nil
		if partial {
			if ierr, bad := unreadable[e.id]; bad {
				e.failed(ierr, now)
				continue
			}
		} else if err != nil && !hasKey(got, e.id) {
			e.failed(err, now)
			continue
		}
		e.err, e.failingAt = nil, time.Time{}
		v, ok := got[e.id]
		if !ok {
			v = circuit.New(e.id)
		}
		// A Put that came in while this read ran may hold a newer value
		// (a write of this extension): the read replaces it only when it
		// is known to be newer. A read that started after the cached value
		// came in replaces it, but never with a lower version: a read copy
		// may lag behind the circuit item this extension wrote (until the
		// updater's next check), and the circuit must not fall back to
		// the older state. The override still comes from such a read, as
		// from any read that started after the cached value.
		if e.loaded && e.valueSeq > e.inflightSeq && !Newer(v, e.c) {
			continue
		}
		if e.loaded && v.Version < e.c.Version {
			kept := e.c
			kept.Override, kept.OverrideReason, kept.OverrideUntil, kept.OverrideAt = v.Override, v.OverrideReason, v.OverrideUntil, v.OverrideAt
			v = kept
		}
		// The age counts from the read's start: the answer may have
		// come long before now (a freeze between the two), and the table
		// state it shows is at least that old.
		e.c, e.loaded, e.fetchedAt, e.valueSeq = v, true, e.inflightSince, e.inflightSeq
		// A read started before a restore shows the table as it was
		// before the snapshot.
		e.restored = e.restored && e.inflightSeq <= c.restoreSeq
	}
}

// failed records a failed read at now.
func (e *entry) failed(err error, now time.Time) {
	if e.err == nil {
		e.failingAt = now
	}
	e.err = err
}

func hasKey(m map[string]circuit.Circuit, id string) bool {
	_, ok := m[id]
	return ok
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
