package grantcheck

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

func TestCheck(t *testing.T) {
	key := func(k string) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"id": &types.AttributeValueMemberS{Value: k}}
	}
	tests := []struct {
		name string
		in   dynamodb.UpdateItemInput
		ok   bool
	}{
		{"state write", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("SET #s = :v"), ExpressionAttributeNames: map[string]string{"#s": "state"}}, true},
		{"read copy", dynamodb.UpdateItemInput{Key: key("svc#r#2"), UpdateExpression: aws.String("SET #s = :v"), ExpressionAttributeNames: map[string]string{"#s": "state"}}, true},
		{"override on a read copy", dynamodb.UpdateItemInput{Key: key("svc#r#2"), UpdateExpression: aws.String("SET #o = :v"), ExpressionAttributeNames: map[string]string{"#o": "operatorOverride"}}, false},
		{"bucket", dynamodb.UpdateItemInput{Key: key("svc#b#17"), UpdateExpression: aws.String("ADD calls :v")}, true},
		{"lease with ALL_OLD on failure", dynamodb.UpdateItemInput{Key: key("svc#lease#0"), ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}, true},
		{"override by name", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("SET #o = :v"), ExpressionAttributeNames: map[string]string{"#o": "operatorOverride"}}, false},
		{"bare legacy override", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("REMOVE overrideReason")}, false},
		{"bare name in the condition", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("SET #s = :v"), ConditionExpression: aws.String("attribute_exists(override)"), ExpressionAttributeNames: map[string]string{"#s": "state"}}, false},
		{"nested name is no top-level attribute", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("SET #m.override = :v"), ExpressionAttributeNames: map[string]string{"#m": "reason"}}, true},
		{"attribute outside the allow list", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("SET #p = :v"), ExpressionAttributeNames: map[string]string{"#p": "pad"}}, false},
		{"bare attribute outside the allow list on a read copy", dynamodb.UpdateItemInput{Key: key("svc#r#1"), UpdateExpression: aws.String("SET pad = :v")}, false},
		{"number of read copies", dynamodb.UpdateItemInput{Key: key("svc"), UpdateExpression: aws.String("SET #k = :v"), ExpressionAttributeNames: map[string]string{"#k": "readCopies"}}, false},
		{"state write with tokens, revision and key", dynamodb.UpdateItemInput{Key: key("svc#r#1"), UpdateExpression: aws.String("SET #t = :a, #p = :b ADD #r :c"), ConditionExpression: aws.String("attribute_exists(#id)"), ExpressionAttributeNames: map[string]string{"#t": "writeToken", "#p": "priorWriteToken", "#r": "stateRev", "#id": "id"}}, true},
		{"ALL_NEW", dynamodb.UpdateItemInput{Key: key("svc"), ReturnValues: types.ReturnValueAllNew}, false},
		{"ALL_OLD on failure on the circuit", dynamodb.UpdateItemInput{Key: key("svc"), ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld}, false},
		{"legacy override item", dynamodb.UpdateItemInput{Key: key("svc#override")}, false},
		{"another service", dynamodb.UpdateItemInput{Key: key("other")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(&tt.in, []string{"svc"}); (err == nil) != tt.ok {
				t.Errorf("Check = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
