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

// newMockAPI creates the mock REST API. With accountLogging, its stage
// writes access and execution logs, for which API Gateway needs the
// region-wide CloudWatch role of the account: the API then creates an
// AWS::ApiGateway::Account resource (and its role) that replaces that
// setting for the whole region. Without it, the stage keeps only metrics.
func newMockAPI(scope constructs.Construct, id string, accountLogging bool) awsapigateway.RestApi {
	stage := &awsapigateway.StageOptions{
		StageName:            jsii.String(MockStageName),
		Variables:            &map[string]*string{MockModeVariable: jsii.String("healthy")},
		MetricsEnabled:       jsii.Bool(true),
		ThrottlingRateLimit:  jsii.Number(50),
		ThrottlingBurstLimit: jsii.Number(100),
	}
	if accountLogging {
		access := awslogs.NewLogGroup(scope, jsii.String(id+"AccessLogs"), &awslogs.LogGroupProps{
			Retention: awslogs.RetentionDays_ONE_MONTH,
		})
		stage.LoggingLevel = awsapigateway.MethodLoggingLevel_ERROR
		stage.AccessLogDestination = awsapigateway.NewLogGroupLogDestination(access)
		stage.AccessLogFormat = awsapigateway.AccessLogFormat_JsonWithStandardFields(nil)
	}
	api := awsapigateway.NewRestApi(scope, jsii.String(id), &awsapigateway.RestApiProps{
		Description:    jsii.String("Mock downstream service monitored by the circuit breaker; set the stage variable 'mode' to 'failing' to make it fail"),
		CloudWatchRole: jsii.Bool(accountLogging),
		EndpointTypes:  &[]awsapigateway.EndpointType{awsapigateway.EndpointType_REGIONAL},
		DeployOptions:  stage,
	})
	validator := api.AddRequestValidator(jsii.String("Validator"), &awsapigateway.RequestValidatorOptions{
		ValidateRequestBody:       jsii.Bool(true),
		ValidateRequestParameters: jsii.Bool(true),
	})
	resource := api.Root().ResourceForPath(jsii.String(MockResourcePath))
	health := resource.AddResource(jsii.String("health"), nil)
	methods := []awsapigateway.Method{
		addMockMethod(resource, validator, `{"message": "Hello from the mock service"}`),
		addMockMethod(health, validator, `{"status": "healthy"}`),
	}

	// Each suppression sits on the one resource cdk-nag reports.
	for _, m := range methods {
		suppress(m, "AwsSolutions-APIG4", "The mock API is a public demo endpoint with no data, called by the health checks without credentials.")
		suppress(m, "AwsSolutions-COG4", "The mock API is a public demo endpoint with no data, called by the health checks without credentials.")
	}
	deployed := api.DeploymentStage()
	suppress(deployed, "AwsSolutions-APIG3", "The mock API is a public demo endpoint with no data; a WAF web ACL would only add cost.")
	if accountLogging {
		suppress(api.Node().FindChild(jsii.String("CloudWatchRole")), "AwsSolutions-IAM4",
			"The API Gateway account role uses the AWS managed AmazonAPIGatewayPushToCloudWatchLogs policy, the documented way to let API Gateway write logs.",
			"Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs")
	} else {
		reason := "Stage logging needs the region-wide API Gateway CloudWatch role, an account setting the construct does not change unless MockAPIAccountLogging is set; the mock API is a demo endpoint with no data, and its stage keeps CloudWatch metrics."
		suppress(deployed, "AwsSolutions-APIG1", reason)
		suppress(deployed, "AwsSolutions-APIG6", reason)
	}
	return api
}

func addMockMethod(r awsapigateway.Resource, validator awsapigateway.RequestValidator, healthyBody string) awsapigateway.Method {
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
	return r.AddMethod(jsii.String("GET"), integration, &awsapigateway.MethodOptions{
		RequestValidator: validator,
		MethodResponses: &[]*awsapigateway.MethodResponse{
			{StatusCode: jsii.String("200")},
			{StatusCode: jsii.String("503")},
		},
	})
}
