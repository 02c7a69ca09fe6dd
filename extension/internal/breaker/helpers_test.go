package breaker

import "github.com/aws/aws-sdk-go-v2/service/dynamodb"

type (
	dynamodbUpdateItemInput  = dynamodb.UpdateItemInput
	dynamodbUpdateItemOutput = dynamodb.UpdateItemOutput
	dynamodbOptions          = dynamodb.Options
)
