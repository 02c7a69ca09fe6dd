package fleetsim

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/policy"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Evidence sums up the fleet-wide evaluations of one simulation: every
// window of buckets an environment read to decide on a trip
// (circuit.DecideRate), weighed as DecideRate weighs it.
type Evidence struct {
	// Evaluations is the number of windows read.
	Evaluations int64
	// MaxRuns and MaxRate are the most evidence, in nats, any window
	// held for the runs rule (circuit.RunsEvidence) and for the rate rule
	// (circuit.RateEvidence, whether or not the window reached the
	// threshold and minimumCalls, which the rule also needs). A rule trips
	// from circuit.EvidenceNeeded() (about 23 nats); exp(−nats) is the
	// smallest tail probability reached.
	MaxRuns, MaxRate float64
	// MaxFailureRate is the highest failure rate of a window that held at
	// least minimumCalls calls (the rate rule's other condition: the
	// threshold).
	MaxFailureRate float64
}

// MinTail returns the smallest tail probability any evaluation reached,
// over both rules.
func (e Evidence) MinTail() float64 { return math.Exp(-max(e.MaxRuns, e.MaxRate)) }

// evidenceWatch passes the environments' table calls on and weighs every
// window read: BatchGetItem calls of bucket shard keys only, which is how
// the breaker reads a window before DecideRate. A window of 6 buckets of
// store.BucketShards shards takes two calls (at most 100 keys each); the
// watch keeps the latest counts it saw of every shard and weighs the
// window at the call that holds its last key (the last shard of the
// newest bucket), over every shard of the window's buckets. Buckets that
// started before the circuit's last transition (since, Unix nanoseconds,
// as last polled) are left out, as DecideRate leaves them out.
type evidenceWatch struct {
	store.API
	rates circuit.RateSettings
	since *atomic.Int64

	mu   sync.Mutex
	ev   Evidence
	seen map[string]shardSeen // by key
}

// shardSeen is the latest counts read of one bucket shard.
type shardSeen struct {
	start int64 // bucket start, Unix seconds
	c     circuit.Counts
}

func (w *evidenceWatch) evidence() Evidence {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ev
}

// BatchGetItem reads, and weighs the window when the call completes one.
func (w *evidenceWatch) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out, err := w.API.BatchGetItem(ctx, in, opts...)
	if err != nil || !windowRead(in) {
		return out, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil {
		w.seen = map[string]shardSeen{}
	}
	for _, items := range out.Responses {
		for _, item := range items {
			k, _ := item[store.KeyAttribute].(*types.AttributeValueMemberS)
			if k == nil {
				continue
			}
			c := circuit.Counts{Calls: intAttr(item, "calls"), Failures: intAttr(item, "failures"), Runs: intAttr(item, "runs")}
			if old, ok := w.seen[k.Value]; !ok || old.c.Calls <= c.Calls {
				w.seen[k.Value] = shardSeen{start: intAttr(item, "bucketStart"), c: c}
			}
		}
	}
	// The window ends with the newest bucket asked for; it is complete at
	// the call that asks for that bucket's last shard.
	id, newest, complete := "", int64(-1), false
	for _, ka := range in.RequestItems {
		for _, key := range ka.Keys {
			s := key[store.KeyAttribute].(*types.AttributeValueMemberS).Value
			kid, start, shard, ok := bucketShardKey(s)
			if !ok {
				continue
			}
			if start > newest {
				id, newest, complete = kid, start, false
			}
			if start == newest && shard == store.BucketShards-1 {
				complete = true
			}
		}
	}
	if !complete {
		return out, nil
	}
	oldest := newest - int64((w.rates.WithDefaults().Window-policy.BucketSize)/time.Second)
	if since := w.since.Load(); since != 0 {
		oldest = max(oldest, (since+int64(time.Second)-1)/int64(time.Second))
	}
	var c circuit.Counts
	for key, sh := range w.seen {
		if sh.start >= oldest && sh.start <= newest && strings.HasPrefix(key, id+store.BucketInfix) {
			c = c.Add(sh.c)
		}
	}
	for key, sh := range w.seen { // forget what no later window reads
		if sh.start < newest-int64(time.Hour/time.Second) {
			delete(w.seen, key)
		}
	}
	if c.Calls == 0 {
		return out, nil
	}
	p0 := circuit.NullShare * w.rates.FailureRateThreshold / 100
	runs := circuit.RunsEvidence(c.Calls, c.Runs, p0, w.rates.FastTripFailures)
	rate := circuit.RateEvidence(c.Calls, c.Failures, p0)
	w.ev.Evaluations++
	w.ev.MaxRuns, w.ev.MaxRate = max(w.ev.MaxRuns, runs), max(w.ev.MaxRate, rate)
	if c.Calls >= int64(w.rates.MinimumCalls) {
		w.ev.MaxFailureRate = max(w.ev.MaxFailureRate, float64(c.Failures)/float64(c.Calls))
	}
	return out, nil
}

// bucketShardKey splits "<id>#b#<start>#<shard>".
func bucketShardKey(k string) (id string, start int64, shard int, ok bool) {
	id, rest, ok := strings.Cut(k, store.BucketInfix)
	if !ok {
		return "", 0, 0, false
	}
	secs, sh, ok := strings.Cut(rest, "#")
	if !ok {
		return "", 0, 0, false
	}
	start, err1 := strconv.ParseInt(secs, 10, 64)
	shard, err2 := strconv.Atoi(sh)
	return id, start, shard, err1 == nil && err2 == nil
}

// windowRead says whether in is a read of bucket items only.
func windowRead(in *dynamodb.BatchGetItemInput) bool {
	for _, ka := range in.RequestItems {
		if len(ka.Keys) == 0 {
			return false
		}
		for _, k := range ka.Keys {
			s, ok := k[store.KeyAttribute].(*types.AttributeValueMemberS)
			if !ok || !strings.Contains(s.Value, store.BucketInfix) {
				return false
			}
		}
	}
	return len(in.RequestItems) > 0
}

// intAttr returns the number attribute name of item, 0 when absent.
func intAttr(item map[string]types.AttributeValue, name string) int64 {
	if n, ok := item[name].(*types.AttributeValueMemberN); ok {
		v, _ := strconv.ParseInt(n.Value, 10, 64)
		return v
	}
	return 0
}
