package fleetsim

import (
	"context"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Ops counts DynamoDB calls by operation, and the request units they are
// billed on-demand for items under 1 KB: a read is one unit per key asked
// for, half of one when eventually consistent; a write is one unit,
// refused conditional writes included.
type Ops struct {
	GetItem, BatchGetItem, UpdateItem, PutItem int64
	// Keys is the number of keys read.
	Keys int64
	// ReadUnits and WriteUnits are the request units.
	ReadUnits, WriteUnits float64
}

// Counter passes every call on to a table and counts it in Ops. It
// charges as ddbmodel does for small items, so that a run against dynalite
// can be set beside a run against the model.
type Counter struct {
	store.API
	mu  sync.Mutex
	ops Ops
}

// NewCounter returns a Counter over db.
func NewCounter(db store.API) *Counter { return &Counter{API: db} }

// Ops returns the counts so far.
func (c *Counter) Ops() Ops {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops
}

// Usage returns the units charged so far (throttling is not counted).
func (c *Counter) Usage() (reads, writes float64, throttled int64) {
	o := c.Ops()
	return o.ReadUnits, o.WriteUnits, 0
}

func unit(consistent *bool) float64 {
	if aws.ToBool(consistent) {
		return 1
	}
	return 0.5
}

// GetItem counts one read.
func (c *Counter) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.mu.Lock()
	c.ops.GetItem++
	c.ops.Keys++
	c.ops.ReadUnits += unit(in.ConsistentRead)
	c.mu.Unlock()
	return c.API.GetItem(ctx, in, opts...)
}

// BatchGetItem counts one read per key.
func (c *Counter) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	c.mu.Lock()
	c.ops.BatchGetItem++
	for _, ka := range in.RequestItems {
		c.ops.Keys += int64(len(ka.Keys))
		c.ops.ReadUnits += float64(len(ka.Keys)) * unit(ka.ConsistentRead)
	}
	c.mu.Unlock()
	return c.API.BatchGetItem(ctx, in, opts...)
}

// PutItem counts one write.
func (c *Counter) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.mu.Lock()
	c.ops.PutItem++
	c.ops.WriteUnits++
	c.mu.Unlock()
	return c.API.PutItem(ctx, in, opts...)
}

// UpdateItem counts one write.
func (c *Counter) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.mu.Lock()
	c.ops.UpdateItem++
	c.ops.WriteUnits++
	c.mu.Unlock()
	return c.API.UpdateItem(ctx, in, opts...)
}
