package app

import (
	"context"
	"errors"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// EnvDynamoDB builds a DynamoDB client from the environment Lambda gives
// every extension: AWS_REGION (or AWS_DEFAULT_REGION) and the function's
// credentials in AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
// AWS_SESSION_TOKEN. AWS_ENDPOINT_URL_DYNAMODB, then AWS_ENDPOINT_URL,
// override the endpoint unless AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true,
// as in the SDK's shared configuration.
//
// It does not use the SDK's config.LoadDefaultConfig: that chain (shared
// files, SSO, STS, IMDS) is of no use inside Lambda and would add about
// 4.5 MB to the binary, which must stay under 8 MB.
func EnvDynamoDB(getenv func(string) string) (store.API, error) {
	region := firstNonEmpty(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
	if region == "" {
		return nil, errors.New("AWS_REGION is not set")
	}
	key, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY")
	if key == "" || secret == "" {
		return nil, errors.New("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
	}
	creds := aws.Credentials{
		AccessKeyID:     key,
		SecretAccessKey: secret,
		SessionToken:    getenv("AWS_SESSION_TOKEN"),
		Source:          "EnvironmentVariables",
	}
	o := dynamodb.Options{
		Region: region,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		}),
	}
	if !strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		if ep := firstNonEmpty(getenv("AWS_ENDPOINT_URL_DYNAMODB"), getenv("AWS_ENDPOINT_URL")); ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
	}
	return dynamodb.New(o), nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
