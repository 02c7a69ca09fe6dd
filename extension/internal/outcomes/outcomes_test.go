package outcomes

import (
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

func TestRecordTakeRestore(t *testing.T) {
	a := New(5*time.Second, 0)
	t0 := time.Unix(1_800_000_003, 0)
	one := circuit.Counts{Calls: 1, Failures: 1}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Record("a", t0.Add(time.Duration(i%2)*5*time.Second), one)
		}()
	}
	wg.Wait()
	got := a.Take()
	if len(got) != 2 || got[0].Calls != 50 || got[1].Calls != 50 || got[0].Start.Unix() != 1_800_000_000 || got[1].Start.Unix() != 1_800_000_005 {
		t.Fatalf("Take = %+v", got)
	}
	if a.Pending() != 0 || a.Take() != nil {
		t.Fatal("Take did not empty the aggregator")
	}
	a.Record("a", t0, one)
	a.Restore(got)
	back := a.Take()
	if len(back) != 2 || back[0].Calls != 51 || back[1].Calls != 50 {
		t.Fatalf("after Restore = %+v", back)
	}
}

func TestBoundedMemoryDropsOldest(t *testing.T) {
	a := New(time.Second, 3)
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 5 {
		a.Record("a", t0.Add(time.Duration(i)*time.Second), circuit.Counts{Calls: int64(i + 1)})
	}
	got := a.Take()
	if len(got) != 3 || got[0].Calls != 3 || a.Dropped() != 1+2 {
		t.Fatalf("Take = %+v, dropped %d", got, a.Dropped())
	}
}
