// Package ddbmodel is an in-memory model of one DynamoDB on-demand table
// for the fleet simulation: it keeps the items, applies the expressions the
// store writes, charges request units the way DynamoDB bills them, counts
// them per item, and throttles an item that is asked for more than its
// partition serves in one second of the simulated clock: 3,000 read units
// or 1,000 write units.
//
// Units, as DynamoDB charges them (on-demand): a strongly consistent read
// is one read unit per 4 KB of each item read, rounded up, an eventually
// consistent one half of that; a key asked for that holds no item is
// charged as a read of a small item. A write is one write unit per 1 KB of
// the larger of the item before and after, rounded up, and a conditional
// write whose condition fails is charged too. A throttled request is not
// charged and changes nothing.
//
// Where it differs from DynamoDB: the limits are counted per item and per
// second of the simulated clock (DynamoDB counts per partition, with some
// burst capacity); a BatchGetItem with any key over its item's limit fails
// as a whole with ProvisionedThroughputExceededException instead of
// returning the unthrottled keys' items and the others as unprocessed; and
// no operation takes simulated time.
package ddbmodel

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// DynamoDB's per-partition limits, applied here per item.
const (
	ItemReadLimit  = 3000.0
	ItemWriteLimit = 1000.0
)

// Usage is what one item, or the table, was charged and refused.
type Usage struct {
	// Key is the item's key ("" for the table).
	Key string
	// ReadUnits and WriteUnits are the units charged.
	ReadUnits, WriteUnits float64
	// Reads and Writes count the requests charged (a BatchGetItem counts
	// once per key).
	Reads, Writes int64
	// ThrottledReads and ThrottledWrites count refused requests.
	ThrottledReads, ThrottledWrites int64
	// PeakReadUnits and PeakWriteUnits are the most units charged in one
	// simulated second.
	PeakReadUnits, PeakWriteUnits float64
}

type itemUsage struct {
	Usage
	sec            int64
	secRead, secWr float64
}

// Table is the model. It implements the store's DynamoDB API and is safe
// for concurrent use.
type Table struct {
	name  string
	clock func() time.Time

	mu    sync.Mutex
	items map[string]map[string]types.AttributeValue
	usage map[string]*itemUsage
	total Usage
}

// New returns an empty table called name, on clock.
func New(name string, clock func() time.Time) *Table {
	return &Table{name: name, clock: clock, items: map[string]map[string]types.AttributeValue{}, usage: map[string]*itemUsage{}}
}

// Total returns the whole table's usage (peaks are per item).
func (t *Table) Total() Usage {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.total
}

// Items returns every item's usage, the most read units first.
func (t *Table) Items() []Usage {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Usage, 0, len(t.usage))
	for _, u := range t.usage {
		out = append(out, u.Usage)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ReadUnits != out[j].ReadUnits {
			return out[i].ReadUnits > out[j].ReadUnits
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// Hottest returns the highest one-second read and write peaks of any item,
// and the items that had them.
func (t *Table) Hottest() (reads float64, readKey string, writes float64, writeKey string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, u := range t.usage {
		if u.PeakReadUnits > reads || (u.PeakReadUnits == reads && k < readKey) {
			reads, readKey = u.PeakReadUnits, k
		}
		if u.PeakWriteUnits > writes || (u.PeakWriteUnits == writes && k < writeKey) {
			writes, writeKey = u.PeakWriteUnits, k
		}
	}
	return
}

// Item returns a copy of the item with key, or nil; it is not charged.
func (t *Table) Item(key string) map[string]types.AttributeValue {
	t.mu.Lock()
	defer t.mu.Unlock()
	return clone(t.items[key])
}

func clone(m map[string]types.AttributeValue) map[string]types.AttributeValue {
	if m == nil {
		return nil
	}
	c := make(map[string]types.AttributeValue, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// size approximates an item's size as DynamoDB counts it: attribute names
// plus values (strings by length, numbers about one byte per two digits
// plus one).
func size(item map[string]types.AttributeValue) int {
	n := 0
	for k, v := range item {
		n += len(k)
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			n += len(v.Value)
		case *types.AttributeValueMemberN:
			n += (len(v.Value)+1)/2 + 1
		default:
			n++
		}
	}
	return n
}

func readUnits(item map[string]types.AttributeValue, consistent bool) float64 {
	u := math.Max(1, math.Ceil(float64(size(item))/4096))
	if !consistent {
		u /= 2
	}
	return u
}

func writeUnits(before, after map[string]types.AttributeValue) float64 {
	return math.Max(1, math.Ceil(float64(max(size(before), size(after)))/1024))
}

func keyOf(k map[string]types.AttributeValue) (string, error) {
	v, ok := k["id"].(*types.AttributeValueMemberS)
	if !ok || len(k) != 1 {
		return "", fmt.Errorf("ddbmodel: key must be one string attribute id")
	}
	return v.Value, nil
}

func (t *Table) checkTable(name *string) error {
	if aws.ToString(name) != t.name {
		return &types.ResourceNotFoundException{Message: aws.String("ddbmodel: no table " + aws.ToString(name))}
	}
	return nil
}

// useLocked returns key's usage with the current second's counters.
func (t *Table) useLocked(key string) *itemUsage {
	u := t.usage[key]
	if u == nil {
		u = &itemUsage{Usage: Usage{Key: key}}
		t.usage[key] = u
	}
	if s := t.clock().Unix(); s != u.sec {
		u.sec, u.secRead, u.secWr = s, 0, 0
	}
	return u
}

func (t *Table) fitsReadLocked(key string, units float64) bool {
	return t.useLocked(key).secRead+units <= ItemReadLimit
}

func (t *Table) chargeReadLocked(key string, units float64) {
	u := t.useLocked(key)
	u.secRead += units
	u.ReadUnits += units
	u.Reads++
	u.PeakReadUnits = math.Max(u.PeakReadUnits, u.secRead)
	t.total.ReadUnits += units
	t.total.Reads++
}

func (t *Table) throttled(what string) error {
	return &types.ProvisionedThroughputExceededException{Message: aws.String("ddbmodel: " + what + " over the item's limit this second")}
}

// GetItem reads one item.
func (t *Table) GetItem(_ context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := t.checkTable(in.TableName); err != nil {
		return nil, err
	}
	k, err := keyOf(in.Key)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	item := t.items[k]
	units := readUnits(item, aws.ToBool(in.ConsistentRead))
	if !t.fitsReadLocked(k, units) {
		t.useLocked(k).ThrottledReads++
		t.total.ThrottledReads++
		return nil, t.throttled("read of " + k)
	}
	t.chargeReadLocked(k, units)
	return &dynamodb.GetItemOutput{Item: clone(item)}, nil
}

// BatchGetItem reads items of this table by key; see the package comment
// for throttling.
func (t *Table) BatchGetItem(_ context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	if len(in.RequestItems) != 1 {
		return nil, fmt.Errorf("ddbmodel: BatchGetItem of %d tables", len(in.RequestItems))
	}
	ka, ok := in.RequestItems[t.name]
	if !ok {
		return nil, &types.ResourceNotFoundException{Message: aws.String("ddbmodel: unknown table")}
	}
	if len(ka.Keys) > 100 {
		return nil, fmt.Errorf("ddbmodel: BatchGetItem of %d keys", len(ka.Keys))
	}
	keys := make([]string, len(ka.Keys))
	for i, k := range ka.Keys {
		s, err := keyOf(k)
		if err != nil {
			return nil, err
		}
		keys[i] = s
	}
	consistent := aws.ToBool(ka.ConsistentRead)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if !t.fitsReadLocked(k, readUnits(t.items[k], consistent)) {
			t.useLocked(k).ThrottledReads++
			t.total.ThrottledReads++
			return nil, t.throttled("read of " + k)
		}
	}
	var out []map[string]types.AttributeValue
	for _, k := range keys {
		item := t.items[k]
		t.chargeReadLocked(k, readUnits(item, consistent))
		if item != nil {
			out = append(out, clone(item))
		}
	}
	return &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{t.name: out}}, nil
}

// write applies a conditional change to the item with key.
func (t *Table) write(key string, cond *string, names map[string]string, values map[string]types.AttributeValue, allOld bool,
	change func(old map[string]types.AttributeValue) (map[string]types.AttributeValue, error)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.items[key]
	u := t.useLocked(key)
	// A request over the limit is refused before it is looked at; its
	// units are estimated from the item as it is.
	if u.secWr+writeUnits(old, old) > ItemWriteLimit {
		u.ThrottledWrites++
		t.total.ThrottledWrites++
		return t.throttled("write of " + key)
	}
	next, err := change(old)
	if err != nil {
		return err
	}
	units := writeUnits(old, next)
	u.secWr += units
	u.WriteUnits += units
	u.Writes++
	u.PeakWriteUnits = math.Max(u.PeakWriteUnits, u.secWr)
	t.total.WriteUnits += units
	t.total.Writes++
	ok, err := evalCondition(aws.ToString(cond), env{names: names, values: values, item: old})
	if err != nil {
		return err
	}
	if !ok {
		e := &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
		if allOld {
			e.Item = clone(old)
		}
		return e
	}
	t.items[key] = next
	return nil
}

// UpdateItem applies an update expression, under a condition.
func (t *Table) UpdateItem(_ context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if err := t.checkTable(in.TableName); err != nil {
		return nil, err
	}
	k, err := keyOf(in.Key)
	if err != nil {
		return nil, err
	}
	allOld := in.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld
	var out dynamodb.UpdateItemOutput
	err = t.write(k, in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues, allOld,
		func(old map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
			next := clone(old)
			if next == nil {
				next = map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: k}}
			}
			e := env{names: in.ExpressionAttributeNames, values: in.ExpressionAttributeValues, item: old}
			touched, err := applyUpdate(aws.ToString(in.UpdateExpression), e, next)
			if err != nil {
				return nil, err
			}
			out.Attributes, err = returnValues(in.ReturnValues, old, next, touched)
			return next, err
		})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// returnValues is what an UpdateItem asking for rv returns: nothing, the
// whole item before or after the update, or the attributes the update
// touched, before or after it.
func returnValues(rv types.ReturnValue, old, next map[string]types.AttributeValue, touched []string) (map[string]types.AttributeValue, error) {
	pick := func(item map[string]types.AttributeValue) map[string]types.AttributeValue {
		out := map[string]types.AttributeValue{}
		for _, n := range touched {
			if v, ok := item[n]; ok {
				out[n] = v
			}
		}
		return clone(out)
	}
	switch rv {
	case "", types.ReturnValueNone:
		return nil, nil
	case types.ReturnValueAllOld:
		return clone(old), nil
	case types.ReturnValueAllNew:
		return clone(next), nil
	case types.ReturnValueUpdatedOld:
		return pick(old), nil
	case types.ReturnValueUpdatedNew:
		return pick(next), nil
	}
	return nil, fmt.Errorf("ddbmodel: ReturnValues %q", rv)
}

// PutItem replaces an item, under a condition.
func (t *Table) PutItem(_ context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if err := t.checkTable(in.TableName); err != nil {
		return nil, err
	}
	k, err := keyOf(map[string]types.AttributeValue{"id": in.Item["id"]})
	if err != nil {
		return nil, err
	}
	allOld := in.ReturnValuesOnConditionCheckFailure == types.ReturnValuesOnConditionCheckFailureAllOld
	err = t.write(k, in.ConditionExpression, in.ExpressionAttributeNames, in.ExpressionAttributeValues, allOld,
		func(map[string]types.AttributeValue) (map[string]types.AttributeValue, error) {
			return clone(in.Item), nil
		})
	if err != nil {
		return nil, err
	}
	return &dynamodb.PutItemOutput{}, nil
}

// Peek decodes the circuit item id, uncharged; a circuit never written
// comes back as circuit.New(id).
func (t *Table) Peek(_ context.Context, id string) (circuit.Circuit, error) {
	item := t.Item(id)
	if item == nil {
		return circuit.New(id), nil
	}
	c, err := store.Decode(item)
	if err != nil {
		return circuit.Circuit{}, fmt.Errorf("ddbmodel: peek %q: %w", id, err)
	}
	return c, nil
}

// Usage returns the units charged so far and the requests throttled.
func (t *Table) Usage() (reads, writes float64, throttled int64) {
	u := t.Total()
	return u.ReadUnits, u.WriteUnits, u.ThrottledReads + u.ThrottledWrites
}
