package app

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// EnvDynamoDB builds a DynamoDB client from the environment Lambda gives
// every extension: AWS_REGION (or AWS_DEFAULT_REGION) and the function's
// credentials (EnvCredentials: the keys in the environment, otherwise the
// container credentials endpoint). AWS_ENDPOINT_URL_DYNAMODB, then
// AWS_ENDPOINT_URL, override the endpoint unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true, as in the SDK's shared
// configuration. It makes no network call; the error names what is
// missing. It also returns the credentials, for their Invalidate.
//
// It does not use the SDK's config.LoadDefaultConfig: that chain (shared
// files, SSO, STS, IMDS) is of no use inside Lambda and would add about
// 4.5 MB to the binary, which must stay under 8 MB.
func EnvDynamoDB(getenv func(string) string) (store.API, *Credentials, error) {
	region := firstNonEmpty(getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"))
	var errs []error
	if region == "" {
		errs = append(errs, errors.New("AWS_REGION is not set"))
	}
	creds, _, err := EnvCredentials(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("table client: %w", errors.Join(errs...))
	}
	o := dynamodb.Options{Region: region, Credentials: creds}
	if !strings.EqualFold(getenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		if ep := firstNonEmpty(getenv("AWS_ENDPOINT_URL_DYNAMODB"), getenv("AWS_ENDPOINT_URL")); ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
	}
	return dynamodb.New(o), creds, nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
