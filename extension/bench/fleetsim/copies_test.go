package fleetsim

import (
	"context"
	"testing"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// TestReadCopiesSpreadTheReads runs a small healthy fleet with one item
// per circuit and with four, and checks that the busiest item of the
// circuit takes about a quarter of the reads with four, and that a busy
// environment-second still costs half a read unit.
func TestReadCopiesSpreadTheReads(t *testing.T) {
	peak := map[int]float64{}
	for _, k := range []int{1, 4} {
		cfg := Config{Envs: 400, Rate: 20, Seed: 1, ReadCopies: k,
			Phases: []Phase{{Name: "healthy", Duration: 10 * time.Second}}}
		res, m, err := RunOnModel(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		var total float64
		for _, u := range m.Items() {
			if _, kind, err := store.ParseKey(u.Key); err == nil && (kind == store.KindCircuit || kind == store.KindCopy) {
				peak[k] = max(peak[k], u.PeakReadUnits)
				total += u.ReadUnits
			}
		}
		t.Logf("K=%d: busiest circuit item %.0f read units/s; %.2f read units per busy env-second (healthy); circuit items %.0f read units in all",
			k, peak[k], res.Phases[0].ReadUnits/float64(res.Phases[0].BusySeconds), total)
		if got := res.Phases[0].ReadUnits / float64(res.Phases[0].BusySeconds); got > 0.55 {
			t.Errorf("K=%d: %.2f read units per busy env-second, want at most 0.55", k, got)
		}
	}
	if ratio := peak[1] / peak[4]; ratio < 3 {
		t.Errorf("busiest circuit item: %.0f read units/s with one item, %.0f with four: ratio %.1f, want about 4", peak[1], peak[4], ratio)
	}
}
