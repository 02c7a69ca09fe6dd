// Package grantcheck checks offline what IAM checks in AWS: that an
// UpdateItem request of an attached function's extension stays inside the
// grant the construct gives it (constructs/circuitbreaker grantReport).
// Tests record every UpdateItem the extension sends (dbcount.Client's
// OnUpdate) and pass each one to Check.
package grantcheck

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// words of update and condition expressions that are no attribute names.
var keywords = map[string]bool{
	"SET": true, "REMOVE": true, "ADD": true, "DELETE": true, "AND": true, "OR": true, "NOT": true,
	"BETWEEN": true, "IN": true, "attribute_exists": true, "attribute_not_exists": true,
	"attribute_type": true, "begins_with": true, "contains": true, "size": true,
	"if_not_exists": true, "list_append": true,
}

// word is an identifier; the rune before it tells a placeholder (#, :).
var word = regexp.MustCompile(`[#:]?[A-Za-z_][A-Za-z0-9_]*`)

// Attributes returns the top-level attribute names an UpdateItem request
// touches, as IAM's dynamodb:Attributes sees them: the values of its
// ExpressionAttributeNames and the bare names in its update and
// condition expressions (the first element of a document path).
func Attributes(in *dynamodb.UpdateItemInput) []string {
	var out []string
	for _, v := range in.ExpressionAttributeNames {
		out = append(out, v)
	}
	for _, e := range []*string{in.UpdateExpression, in.ConditionExpression} {
		if e == nil {
			continue
		}
		for _, m := range word.FindAllStringIndex(*e, -1) {
			w := (*e)[m[0]:m[1]]
			if strings.HasPrefix(w, "#") || strings.HasPrefix(w, ":") || keywords[w] {
				continue
			}
			if m[0] > 0 && (*e)[m[0]-1] == '.' {
				continue // a nested name, not a top-level attribute
			}
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Check returns an error when in, sent by the extension of a function
// attached to the services ids, would be refused by its grant: a key
// outside the services' circuit, read-copy, bucket and lease keys; or, on
// a circuit or read-copy key, an attribute outside
// store.ExtensionWritableAttributes (the grant's allow list), a
// ReturnValues that returns whole items, or a
// ReturnValuesOnConditionCheckFailure (whether IAM's attribute condition
// covers it is not documented, so the extension never asks for it there).
func Check(in *dynamodb.UpdateItemInput, ids []string) error {
	k, ok := in.Key[store.KeyAttribute].(*types.AttributeValueMemberS)
	if !ok || len(in.Key) != 1 {
		return fmt.Errorf("grantcheck: key %v is not a string id", in.Key)
	}
	id, kind, err := store.ParseKey(k.Value)
	if err != nil || !slices.Contains(ids, id) {
		return fmt.Errorf("grantcheck: key %q is not a key of %v", k.Value, ids)
	}
	switch kind {
	case store.KindBucket, store.KindLease:
		return nil
	case store.KindCircuit, store.KindCopy:
	default:
		return fmt.Errorf("grantcheck: key %q (%s) is outside the grant", k.Value, kind)
	}
	for _, a := range Attributes(in) {
		if !slices.Contains(store.ExtensionWritableAttributes, a) {
			return fmt.Errorf("grantcheck: write of %q names attribute %q, which the grant does not allow", k.Value, a)
		}
	}
	switch in.ReturnValues {
	case "", types.ReturnValueNone, types.ReturnValueUpdatedOld, types.ReturnValueUpdatedNew:
	default:
		return fmt.Errorf("grantcheck: write of %q asks ReturnValues %s", k.Value, in.ReturnValues)
	}
	if in.ReturnValuesOnConditionCheckFailure != "" && in.ReturnValuesOnConditionCheckFailure != types.ReturnValuesOnConditionCheckFailureNone {
		return fmt.Errorf("grantcheck: write of %q asks ReturnValuesOnConditionCheckFailure %s", k.Value, in.ReturnValuesOnConditionCheckFailure)
	}
	return nil
}
