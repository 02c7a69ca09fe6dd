package breaker

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/circuitbreaked/lambda-circuit-breaker/extension/internal/cache"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

type (
	dynamodbUpdateItemInput  = dynamodb.UpdateItemInput
	dynamodbUpdateItemOutput = dynamodb.UpdateItemOutput
	dynamodbOptions          = dynamodb.Options
)

// clock is a settable clock for Options.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (f *fixture) extensionDefaultRefresh(ps policy.Policies) (*Breaker, *cache.Cache) {
	c := cache.New(f.st, cache.Options{Logger: quiet()}) // RefreshInterval 1s default
	b := New(func(context.Context) (*store.Store, error) { return f.st, nil }, c, Options{Policies: ps, Logger: quiet(), ClaimTimeout: 2 * time.Second})
	return b, c
}

// newBreaker returns a breaker writing to st, with a cache of its own
// reading st.
func newBreaker(st *store.Store, o Options) *Breaker {
	c := cache.New(st, cache.Options{Logger: quiet()})
	return New(func(context.Context) (*store.Store, error) { return st, nil }, c, o)
}
