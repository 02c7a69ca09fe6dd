package fleetsim

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Ops counts DynamoDB calls by operation, and the request units they
// are billed (on-demand): a strongly consistent read of an item under
// 4 KB is one read unit, per key asked for in a BatchGetItem; a write of
// an item under 1 KB, refused conditional writes included, one write
// unit.
type Ops struct {
	GetItem, BatchGetItem, UpdateItem, PutItem int64
	// ReadUnits and WriteUnits are the request units.
	ReadUnits, WriteUnits int64
}

// Add returns the sum of o and p.
func (o Ops) Add(p Ops) Ops {
	return Ops{
		GetItem: o.GetItem + p.GetItem, BatchGetItem: o.BatchGetItem + p.BatchGetItem,
		UpdateItem: o.UpdateItem + p.UpdateItem, PutItem: o.PutItem + p.PutItem,
		ReadUnits: o.ReadUnits + p.ReadUnits, WriteUnits: o.WriteUnits + p.WriteUnits,
	}
}

// Reads returns the number of read calls.
func (o Ops) Reads() int64 { return o.GetItem + o.BatchGetItem }

// Writes returns the number of write calls.
func (o Ops) Writes() int64 { return o.UpdateItem + o.PutItem }

// counter passes every call on to the table and counts it in the phase
// that is current on the simulated clock; writes are also counted per
// item and simulated second, for the hottest item's peak.
type counter struct {
	db    store.API
	clock func() time.Time

	mu      sync.Mutex
	phase   int
	ops     []Ops
	perItem map[itemSecond]int
	peak    int
	peakKey string
}

type itemSecond struct {
	key string
	sec int64
}

func newCounter(db store.API, clock func() time.Time, phases int) *counter {
	return &counter{db: db, clock: clock, ops: make([]Ops, phases), perItem: map[itemSecond]int{}}
}

func (c *counter) setPhase(i int) {
	c.mu.Lock()
	c.phase = i
	c.mu.Unlock()
}

func (c *counter) count(f func(o *Ops)) {
	c.mu.Lock()
	f(&c.ops[c.phase])
	c.mu.Unlock()
}

func (c *counter) write(key map[string]types.AttributeValue) {
	id := ""
	if v, ok := key["id"].(*types.AttributeValueMemberS); ok {
		id = v.Value
	}
	k := itemSecond{id, c.clock().Unix()}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.perItem[k]++
	if n := c.perItem[k]; n > c.peak {
		c.peak, c.peakKey = n, id
	}
	if len(c.perItem) > 100_000 { // forget seconds long past
		for x := range c.perItem {
			if x.sec < k.sec-5 {
				delete(c.perItem, x)
			}
		}
	}
}

func (c *counter) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.count(func(o *Ops) { o.GetItem++; o.ReadUnits++ })
	return c.db.GetItem(ctx, in, opts...)
}

func (c *counter) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	keys := 0
	for _, ka := range in.RequestItems {
		keys += len(ka.Keys)
	}
	c.count(func(o *Ops) { o.BatchGetItem++; o.ReadUnits += int64(keys) })
	return c.db.BatchGetItem(ctx, in, opts...)
}

func (c *counter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.count(func(o *Ops) { o.PutItem++; o.WriteUnits++ })
	c.write(in.Item)
	return c.db.PutItem(ctx, in, opts...)
}

func (c *counter) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.count(func(o *Ops) { o.UpdateItem++; o.WriteUnits++ })
	c.write(in.Key)
	return c.db.UpdateItem(ctx, in, opts...)
}
