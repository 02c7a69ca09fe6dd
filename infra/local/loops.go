package main

import (
	"context"
	"encoding/json"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/testutil/rie"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/updater"
)

// invokeLimit bounds one invocation of either function.
const invokeLimit = 15 * time.Second

// runChecks invokes the updater for every service on each tick until ctx
// ends, as the EventBridge rules would.
func runChecks(ctx context.Context, upd *rie.Emulator, checks []check, every time.Duration, p *printer) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		for _, c := range checks {
			ictx, cancel := context.WithTimeout(ctx, invokeLimit)
			out, err := upd.Invoke(ictx, c.Input)
			cancel()
			if ctx.Err() != nil {
				return
			}
			var o updater.Output
			if err == nil {
				err = json.Unmarshal(out, &o)
			}
			if err != nil {
				p.printf("check", "%s: %v", c.ID, err)
				continue
			}
			p.printf("check", "%s", checkLine(o))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runInvokes invokes MyMicroservice with an API Gateway event on each tick
// until ctx ends.
func runInvokes(ctx context.Context, fn *rie.Emulator, every time.Duration, p *printer) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		ictx, cancel := context.WithTimeout(ctx, invokeLimit)
		start := time.Now()
		out, err := fn.Invoke(ictx, []byte(`{"httpMethod":"GET","path":"/api/resource"}`))
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.printf("fn", "invoke failed after %s: %v", time.Since(start).Round(time.Millisecond), err)
		} else {
			p.printf("fn", "%s", responseLine(out, time.Since(start)))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// watchStates reads the circuits from the table every 250ms and prints
// them when they change.
func watchStates(ctx context.Context, st *store.Store, ids []string, p *printer) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cs, err := st.GetMany(rctx, ids)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.printf("state", "read failed: %v", err)
		} else if key := stateKey(cs); key != last {
			last = key
			p.printf("state", "%s", statesLine(ids, cs, time.Now()))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
