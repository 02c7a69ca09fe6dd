package breaker

import (
	"context"
	"sync"
)

// tasks runs and counts background work, such as giving back a lease whose
// claim was answered with an error, so that SHUTDOWN can wait for it. A
// WaitGroup would not do: work may start while SHUTDOWN waits.
type tasks struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0
}

// goDo runs f in a new goroutine.
func (t *tasks) goDo(f func()) {
	t.mu.Lock()
	if t.n == 0 {
		t.idle = make(chan struct{})
	}
	t.n++
	t.mu.Unlock()
	go func() {
		defer t.done()
		f()
	}()
}

func (t *tasks) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 {
		close(t.idle)
	}
}

// wait returns once no work runs, or with ctx's error when ctx ends first.
func (t *tasks) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
