package outcomes

import (
	"sync"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

var t0 = time.Unix(1_800_000_000, 0).UTC() // a bucket start

func newAgg(o Options) *Aggregator {
	if o.Bucket == 0 {
		o.Bucket = 5 * time.Second
	}
	return New(o)
}

func ok(n int64) circuit.Counts   { return circuit.Counts{Calls: n} }
func fail(n int64) circuit.Counts { return circuit.Counts{Calls: n, Failures: n} }

func sum(es []Entry) circuit.Counts {
	var s circuit.Counts
	for _, e := range es {
		s = s.Add(e.Counts)
	}
	return s
}

func writeAll(a *Aggregator, es []Entry) {
	for _, e := range es {
		a.Written(e)
	}
}

func TestDue(t *testing.T) {
	tests := []struct {
		name   string
		o      Options
		record func(a *Aggregator)
		at     time.Duration // Due at t0+at
		final  bool
		want   circuit.Counts
		due    int // entries
	}{
		{name: "healthy window: nothing, ever",
			record: func(a *Aggregator) {
				for i := range 12 {
					a.Record("svc", t0.Add(time.Duration(i)*time.Second), ok(10), 0, time.Time{})
				}
			}, at: 20 * time.Second},
		{name: "healthy window at SHUTDOWN: nothing",
			record: func(a *Aggregator) { a.Record("svc", t0, ok(10), 0, time.Time{}) },
			at:     time.Second, final: true},
		{name: "a failure writes the whole window, ended buckets only",
			record: func(a *Aggregator) {
				a.Record("svc", t0, ok(50), 0, time.Time{})
				a.Record("svc", t0.Add(5*time.Second), ok(50), 0, time.Time{})
				a.Record("svc", t0.Add(11*time.Second), circuit.Counts{Calls: 10, Failures: 1}, 0, time.Time{})
			}, at: 12 * time.Second, want: ok(100), due: 2},
		{name: "the bucket still filling is not written, however bad its counts",
			record: func(a *Aggregator) {
				a.Record("svc", t0, ok(1), 0, time.Time{})
				a.Record("svc", t0.Add(6*time.Second), fail(3), 3, time.Time{})
				a.CountRun("svc", t0.Add(6*time.Second))
			}, at: 9 * time.Second, want: ok(1), due: 1},
		{name: "it is once it ended",
			record: func(a *Aggregator) {
				a.Record("svc", t0, ok(1), 0, time.Time{})
				a.Record("svc", t0.Add(6*time.Second), fail(3), 3, time.Time{})
				a.CountRun("svc", t0.Add(6*time.Second))
			}, at: 10 * time.Second, want: circuit.Counts{Calls: 4, Failures: 3, Runs: 1}, due: 2},
		{name: "and at SHUTDOWN",
			record: func(a *Aggregator) { a.Record("svc", t0, circuit.Counts{Calls: 4, Failures: 1}, 1, time.Time{}) },
			at:     time.Second, final: true, want: circuit.Counts{Calls: 4, Failures: 1}, due: 1},
		{name: "slow calls count as trouble",
			record: func(a *Aggregator) { a.Record("svc", t0, circuit.Counts{Calls: 4, Slow: 1}, 0, time.Time{}) },
			at:     5 * time.Second, want: circuit.Counts{Calls: 4, Slow: 1}, due: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAgg(tt.o)
			tt.record(a)
			due, lost := a.Due(t0.Add(tt.at))
			if tt.final {
				due, lost = a.DueAll(t0.Add(tt.at))
			}
			if got := sum(due); got != tt.want || len(due) != tt.due || len(lost) != 0 {
				t.Fatalf("Due = %+v (sum %+v), lost %v; want %d entries summing to %+v", due, got, lost, tt.due, tt.want)
			}
		})
	}
}

// Each bucket reaches the table once after it ends, never before:
// never once per flush.
func TestDueWritesEachBucketOnceWhileFailing(t *testing.T) {
	a := newAgg(Options{})
	writes := 0
	var table circuit.Counts
	var reported circuit.Counts
	// 20 calls/s, one flush per call, 1 in 10 failing, for 30 s.
	for i := range 600 {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		c := ok(1)
		if i%10 == 9 {
			c = fail(1)
		}
		reported = reported.Add(c)
		if _, err := a.Record("svc", at, c, int(c.Failures), time.Time{}); err != nil {
			t.Fatal(err)
		}
		due, lost := a.Due(at)
		if len(lost) > 0 {
			t.Fatalf("lost %v", lost)
		}
		writes += len(due)
		table = table.Add(sum(due))
		writeAll(a, due)
	}
	due, _ := a.DueAll(t0.Add(30 * time.Second))
	writes += len(due)
	table = table.Add(sum(due))
	writeAll(a, due)
	// 6 buckets; the first holds calls 0..99, its first failure at call 9.
	if writes != 6 || table != reported {
		t.Fatalf("%d writes for 600 flushes, table %+v; want 6 writes holding every reported call %+v", writes, table, reported)
	}
	if a.Pending() != 0 {
		t.Fatalf("pending %d after SHUTDOWN", a.Pending())
	}
}

func TestDueKeepsUnwrittenCountsAndDropsExpired(t *testing.T) {
	a := newAgg(Options{Window: func(string) time.Duration { return 10 * time.Second }})
	a.Record("svc", t0, fail(2), 2, time.Time{})
	due, _ := a.Due(t0.Add(5 * time.Second))
	if len(due) != 1 || a.Pending() != 1 {
		t.Fatalf("due %v, pending %d", due, a.Pending())
	}
	// In flight: not offered twice.
	if again, _ := a.Due(t0.Add(6 * time.Second)); len(again) != 0 {
		t.Fatalf("offered again while in flight: %v", again)
	}
	// Not written (the table failed): offered again at the next flush.
	a.Failed(due[0])
	again, _ := a.Due(t0.Add(6 * time.Second))
	if len(again) != 1 || again[0].Counts != fail(2) {
		t.Fatalf("second Due = %v", again)
	}
	a.Failed(again[0])
	// Bucket plus window later it can never count: lost, not offered.
	due, lost := a.Due(t0.Add(16 * time.Second))
	if len(due) != 0 || len(lost) != 1 || lost[0].Counts != fail(2) || a.Pending() != 0 || a.Circuits() != 0 {
		t.Fatalf("past the window: due %v, lost %v, pending %d, circuits %d", due, lost, a.Pending(), a.Circuits())
	}
}

func TestRecordRunOfFailures(t *testing.T) {
	a := newAgg(Options{})
	steps := []struct {
		c         circuit.Counts
		trailing  int
		at        time.Duration
		notBefore time.Duration
		want      int
		since     time.Duration
	}{
		{c: fail(2), trailing: 2, want: 2},
		{c: fail(1), trailing: 1, at: time.Second, want: 3},
		{c: circuit.Counts{Calls: 3, Failures: 2}, trailing: 1, at: 2 * time.Second, want: 1, since: 2 * time.Second}, // a success in between
		{c: fail(4), trailing: 4, at: 3 * time.Second, want: 5, since: 2 * time.Second},
		{c: ok(1), at: 4 * time.Second, want: 0},
		{c: fail(3), trailing: 3, at: 5 * time.Second, want: 3, since: 5 * time.Second},
		// The circuit changed state after the run began: it restarts.
		{c: fail(1), trailing: 1, at: 7 * time.Second, notBefore: 6 * time.Second, want: 1, since: 7 * time.Second},
	}
	for i, s := range steps {
		run, err := a.Record("svc", t0.Add(s.at), s.c, s.trailing, t0.Add(s.notBefore))
		if err != nil {
			t.Fatal(err)
		}
		if run.Failures != s.want || (s.want > 0 && !run.Since.Equal(t0.Add(s.since))) {
			t.Fatalf("step %d: run %+v, want %d since +%s", i, run, s.want, s.since)
		}
	}
}

// Memory does not grow with the number of circuits: past MaxCircuits new
// circuits are refused, visibly and counted, never dropped silently.
func TestRecordRefusesNewCircuitsWhenFull(t *testing.T) {
	a := newAgg(Options{MaxCircuits: 2})
	for _, id := range []string{"a", "b"} {
		if _, err := a.Record(id, t0, fail(1), 1, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Record("c", t0, fail(3), 3, time.Time{}); err != ErrFull {
		t.Fatalf("third circuit: %v, want ErrFull", err)
	}
	if _, err := a.Record("a", t0, fail(1), 1, time.Time{}); err != nil {
		t.Fatalf("known circuit refused: %v", err)
	}
	if n := a.TakeRejected(); n != 3 || a.TakeRejected() != 0 {
		t.Fatalf("refused %d, want 3 once", n)
	}
	// Once their windows have passed, room is made for new circuits.
	if _, err := a.Record("c", t0.Add(time.Minute), fail(1), 1, time.Time{}); err != nil {
		t.Fatalf("after the windows passed: %v", err)
	}
}

func TestConcurrentRecordsAllCounted(t *testing.T) {
	a := newAgg(Options{})
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = a.Record("a", t0.Add(time.Duration(i%2)*5*time.Second), fail(1), 1, time.Time{})
		}()
	}
	wg.Wait()
	due, _ := a.Due(t0.Add(10 * time.Second))
	if len(due) != 2 || due[0].Calls != 50 || due[1].Calls != 50 || !due[0].Start.Equal(t0) {
		t.Fatalf("Due = %+v", due)
	}
}
