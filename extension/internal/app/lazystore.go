package app

import (
	"context"
	"fmt"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// lazyStore is a cache.Reader whose store is built in the background;
// reads wait for it, bounded by their context. The cache's reads are
// eventually consistent (store.Store.WithEventualReads): it reads again
// every refresh interval, and every read that decides a write is strongly
// consistent.
type lazyStore struct {
	ready chan struct{}
	st    *store.Store
	err   error
}

func newLazyStore() *lazyStore { return &lazyStore{ready: make(chan struct{})} }

func (l *lazyStore) set(st *store.Store, err error) {
	l.st, l.err = st, err
	close(l.ready)
}

func (l *lazyStore) get(ctx context.Context) (*store.Store, error) {
	select {
	case <-l.ready:
		if l.err != nil {
			return nil, fmt.Errorf("table client: %w", l.err)
		}
		return l.st, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("table client not ready: %w", ctx.Err())
	}
}

// Get implements cache.Reader.
func (l *lazyStore) Get(ctx context.Context, id string) (circuit.Circuit, bool, error) {
	st, err := l.get(ctx)
	if err != nil {
		return circuit.Circuit{}, false, err
	}
	return st.WithEventualReads().Get(ctx, id)
}

// GetMany implements cache.Reader.
func (l *lazyStore) GetMany(ctx context.Context, ids []string) (map[string]circuit.Circuit, error) {
	st, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return st.WithEventualReads().GetMany(ctx, ids)
}
