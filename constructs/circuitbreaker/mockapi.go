package circuitbreaker

import (
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigateway"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// Paths and switch of the mock API.
const (
	// MockResourcePath answers like a business endpoint.
	MockResourcePath = "/api/resource"
	// MockHealthPath answers health checks.
	MockHealthPath = "/api/resource/health"
	// MockStageName is the stage the mock API is deployed to.
	MockStageName = "prod"
	// MockModeVariable is the stage variable that switches the mock API:
	// "healthy" (the default) answers 200, "failing" answers 503 on both
	// paths.
	MockModeVariable = "mode"
)

// mockRequestTemplate picks the mock integration's status from the stage
// variable, so an operator can make the API fail without a deploy.
const mockRequestTemplate = `#if($stageVariables.mode == "failing"){"statusCode": 503}#{else}{"statusCode": 200}#end`

func newMockAPI(scope constructs.Construct, id string) awsapigateway.RestApi {
	access := awslogs.NewLogGroup(scope, jsii.String(id+"AccessLogs"), &awslogs.LogGroupProps{
		Retention: awslogs.RetentionDays_ONE_MONTH,
	})
	api := awsapigateway.NewRestApi(scope, jsii.String(id), &awsapigateway.RestApiProps{
		Description:    jsii.String("Mock downstream service monitored by the circuit breaker; set the stage variable 'mode' to 'failing' to make it fail"),
		CloudWatchRole: jsii.Bool(true),
		EndpointTypes:  &[]awsapigateway.EndpointType{awsapigateway.EndpointType_REGIONAL},
		DeployOptions: &awsapigateway.StageOptions{
			StageName:            jsii.String(MockStageName),
			Variables:            &map[string]*string{MockModeVariable: jsii.String("healthy")},
			LoggingLevel:         awsapigateway.MethodLoggingLevel_ERROR,
			MetricsEnabled:       jsii.Bool(true),
			AccessLogDestination: awsapigateway.NewLogGroupLogDestination(access),
			AccessLogFormat:      awsapigateway.AccessLogFormat_JsonWithStandardFields(nil),
			ThrottlingRateLimit:  jsii.Number(50),
			ThrottlingBurstLimit: jsii.Number(100),
		},
	})
	validator := api.AddRequestValidator(jsii.String("Validator"), &awsapigateway.RequestValidatorOptions{
		ValidateRequestBody:       jsii.Bool(true),
		ValidateRequestParameters: jsii.Bool(true),
	})
	resource := api.Root().ResourceForPath(jsii.String(MockResourcePath))
	health := resource.AddResource(jsii.String("health"), nil)
	addMockMethod(resource, validator, `{"message": "Hello from the mock service"}`)
	addMockMethod(health, validator, `{"status": "healthy"}`)

	suppressTree(api, "AwsSolutions-APIG3", "The mock API is a public demo endpoint with no data; a WAF web ACL would only add cost.")
	suppressTree(api, "AwsSolutions-APIG4", "The mock API is a public demo endpoint with no data, called by the health checks without credentials.")
	suppressTree(api, "AwsSolutions-COG4", "The mock API is a public demo endpoint with no data, called by the health checks without credentials.")
	suppressTree(api, "AwsSolutions-IAM4", "The API Gateway account role uses the AWS managed AmazonAPIGatewayPushToCloudWatchLogs policy, the documented way to let API Gateway write logs.")
	return api
}

func addMockMethod(r awsapigateway.Resource, validator awsapigateway.RequestValidator, healthyBody string) {
	integration := awsapigateway.NewMockIntegration(&awsapigateway.IntegrationOptions{
		PassthroughBehavior: awsapigateway.PassthroughBehavior_NEVER,
		RequestTemplates:    &map[string]*string{"application/json": jsii.String(mockRequestTemplate)},
		IntegrationResponses: &[]*awsapigateway.IntegrationResponse{
			{
				StatusCode:        jsii.String("200"),
				ResponseTemplates: &map[string]*string{"application/json": jsii.String(healthyBody)},
			},
			{
				StatusCode:        jsii.String("503"),
				SelectionPattern:  jsii.String("503"),
				ResponseTemplates: &map[string]*string{"application/json": jsii.String(`{"message": "The mock service is failing (stage variable mode=failing)"}`)},
			},
		},
	})
	r.AddMethod(jsii.String("GET"), integration, &awsapigateway.MethodOptions{
		RequestValidator: validator,
		MethodResponses: &[]*awsapigateway.MethodResponse{
			{StatusCode: jsii.String("200")},
			{StatusCode: jsii.String("503")},
		},
	})
}
