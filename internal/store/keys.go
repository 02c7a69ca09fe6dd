package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
)

// OverrideSuffix ends the key of a circuit's override item:
// "<id>#override". The grant of attached functions (a
// dynamodb:LeadingKeys condition on the circuit, bucket and lease keys)
// does not cover it, so only operators and the updater can write it.
const OverrideSuffix = "#override"

// OverrideKey is the key of the override item of service id.
func OverrideKey(id string) string { return id + OverrideSuffix }

// CopyInfix is in the key of a read copy of a circuit item:
// "<id>#r#<k>", 1 ≤ k < the circuit's number of read copies (copy 0 is
// the circuit item "<id>" itself).
const CopyInfix = "#r#"

// CopyKey is the key of read copy k of the circuit item of service id;
// copy 0 is the circuit item itself.
func CopyKey(id string, k int) string {
	if k == 0 {
		return id
	}
	return id + CopyInfix + strconv.Itoa(k)
}

// Kind is the kind of a table item, told by its key.
type Kind string

// The kinds of items in the state table.
const (
	KindCircuit  Kind = "circuit"
	KindOverride Kind = "override"
	KindBucket   Kind = "bucket"
	KindLease    Kind = "lease"
	KindCopy     Kind = "copy"
)

// ParseKey splits a table key into its service ID and item kind: "<id>"
// is a circuit, "<id>#override" its override, "<id>#b#<seconds>#<shard>"
// a counter bucket shard (see BucketKey; "<id>#b#<seconds>", the unsharded
// bucket of earlier versions, is a bucket too) and "<id>#lease#<slot>" a
// probe lease slot. Any other key, or a service ID that
// circuit.ValidateID refuses, is an error: such items were not written by
// this code.
func ParseKey(k string) (id string, kind Kind, err error) {
	id, rest, _ := strings.Cut(k, "#")
	if err := circuit.ValidateID(id); err != nil {
		return "", "", fmt.Errorf("store: key %q: %w", k, err)
	}
	switch {
	case rest == "" && !strings.Contains(k, "#"):
		return id, KindCircuit, nil
	case "#"+rest == OverrideSuffix:
		return id, KindOverride, nil
	case strings.HasPrefix("#"+rest, BucketInfix) && allDigits(strings.TrimPrefix("#"+rest, BucketInfix)):
		return id, KindBucket, nil // unsharded, from earlier versions
	case strings.HasPrefix("#"+rest, BucketInfix):
		if _, _, err := parseBucketKey(k); err != nil {
			return "", "", err
		}
		return id, KindBucket, nil
	case strings.HasPrefix("#"+rest, LeaseInfix) && allDigits(strings.TrimPrefix("#"+rest, LeaseInfix)):
		return id, KindLease, nil
	case strings.HasPrefix("#"+rest, CopyInfix) && copyIndex(k) > 0:
		return id, KindCopy, nil
	}
	return "", "", fmt.Errorf("store: key %q is not a circuit, override, bucket, lease or read-copy key", k)
}

// copyIndex is k of a read-copy key "<id>#r#<k>" (1 ≤ k < MaxReadCopies,
// without leading zeros), 0 for a circuit key, and -1 for anything else.
func copyIndex(key string) int {
	_, rest, found := strings.Cut(key, CopyInfix)
	if !found {
		if strings.Contains(key, "#") {
			return -1
		}
		return 0
	}
	k, err := strconv.Atoi(rest)
	if err != nil || k < 1 || k >= MaxReadCopies || strconv.Itoa(k) != rest {
		return -1
	}
	return k
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// parseBucketKey splits a bucket shard key, "<id>#b#<seconds>#<shard>",
// into its bucket start and shard.
func parseBucketKey(k string) (start time.Time, shard int, err error) {
	_, rest, ok := strings.Cut(k, BucketInfix)
	secs, sh, ok2 := strings.Cut(rest, "#")
	if !ok || !ok2 || !allDigits(secs) || !allDigits(sh) || len(sh) > 1 && sh[0] == '0' {
		return time.Time{}, 0, fmt.Errorf("store: key %q is not a bucket shard key", k)
	}
	n, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("store: key %q: bucket start: %w", k, err)
	}
	shard, err = strconv.Atoi(sh)
	if err != nil || shard >= BucketShards {
		return time.Time{}, 0, fmt.Errorf("store: key %q: shard outside 0..%d", k, BucketShards-1)
	}
	return time.Unix(n, 0).UTC(), shard, nil
}
