// Package dbcount wraps a DynamoDB client and counts the reads and writes
// that reach the table, so tests can assert what an operation costs.
package dbcount

import (
	"context"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// API is the part of the DynamoDB client that is counted.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
}

// Client counts the calls it passes on to API: GetItem and BatchGetItem as
// reads, PutItem and UpdateItem as writes (a refused conditional write
// counts too, as DynamoDB bills it).
type Client struct {
	API
	// Reads and Writes count the calls.
	Reads, Writes atomic.Int64
	// KeysRead counts the keys asked for by GetItem and BatchGetItem.
	KeysRead atomic.Int64
	// OnUpdate, when set, sees every UpdateItem request before it is
	// sent (from the calling goroutine), for tests that check what a
	// component writes.
	OnUpdate func(*dynamodb.UpdateItemInput)
}

// GetItem counts a read.
func (c *Client) GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	c.Reads.Add(1)
	c.KeysRead.Add(1)
	return c.API.GetItem(ctx, in, opts...)
}

// BatchGetItem counts a read.
func (c *Client) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	c.Reads.Add(1)
	for _, ka := range in.RequestItems {
		c.KeysRead.Add(int64(len(ka.Keys)))
	}
	return c.API.BatchGetItem(ctx, in, opts...)
}

// PutItem counts a write.
func (c *Client) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	c.Writes.Add(1)
	return c.API.PutItem(ctx, in, opts...)
}

// UpdateItem counts a write.
func (c *Client) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	c.Writes.Add(1)
	if c.OnUpdate != nil {
		c.OnUpdate(in)
	}
	return c.API.UpdateItem(ctx, in, opts...)
}
