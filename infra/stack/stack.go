// Package stack defines the CDK stack of the circuit-breaker app: the
// CircuitBreakedService construct, the MyMicroservice function guarded by
// it, and the stack outputs.
package stack

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
)

// Name is the stack's name.
const Name = "LambdaCircuitBreakerStack"

// Props configures the stack.
type Props struct {
	awscdk.StackProps
	// Config lists the monitored services (infra/services.json).
	Config appconfig.File
}

// New creates the stack.
func New(scope constructs.Construct, id string, props *Props) awscdk.Stack {
	st := awscdk.NewStack(scope, &id, &props.StackProps)
	services := MonitoredServices(props.Config)
	cb := circuitbreaker.NewCircuitBreakedService(st, "CircuitBreaker", &circuitbreaker.CircuitBreakedServiceProps{
		Services:           services,
		TableRemovalPolicy: awscdk.RemovalPolicy_RETAIN,
		// The demo app logs the mock API's requests, which changes the
		// region's API Gateway CloudWatch role (see docs/construct.md).
		MockAPIAccountLogging: true,
	})

	guarded := services[0].ID
	fn := circuitbreaker.NewGoFunction(st, "MyMicroservice", &circuitbreaker.GoFunctionProps{
		Package:     circuitbreaker.MyMicroservicePackage,
		Description: "Business logic guarded by the circuit breaker: calls the downstream API when its circuit allows, else answers with a local fallback",
		Timeout:     awscdk.Duration_Seconds(jsii.Number(10)),
		Environment: map[string]string{
			"SERVICE_ID": guarded,
			"API_URL":    *cb.MockAPI().UrlForPath(jsii.String(circuitbreaker.MockResourcePath)),
		},
	})
	cb.AttachTo(fn, guarded)

	out := func(id, value, desc string) {
		awscdk.NewCfnOutput(st, jsii.String(id), &awscdk.CfnOutputProps{Value: jsii.String(value), Description: jsii.String(desc)})
	}
	out("ExtensionLayerArn", *cb.ExtensionLayer().LayerVersionArn(), "ARN of the circuit-breaker extension layer (arm64)")
	out("MyMicroserviceArn", *fn.FunctionArn(), "ARN of the MyMicroservice function")
	out("UpdaterArn", *cb.Updater().FunctionArn(), "ARN of the circuit updater function")
	out("MockApiEndpoint", *cb.MockAPI().Url(), "Endpoint of the mock API")
	out("CircuitTableName", *cb.Table().TableName(), "Name of the circuit state table")
	return st
}

// MonitoredServices converts the app configuration into construct props:
// the groups of settings are the same types on both sides.
func MonitoredServices(cfg appconfig.File) []circuitbreaker.MonitoredService {
	out := make([]circuitbreaker.MonitoredService, 0, len(cfg.Services))
	for _, s := range cfg.Services {
		ms := circuitbreaker.MonitoredService{
			ID:          s.ID,
			URL:         s.URL,
			HealthCheck: s.HealthCheck,
			Breaker:     s.Breaker,
			Passive:     s.Passive,
			ReadCopies:  s.ReadCopies,
		}
		if s.Schedule != "" {
			ms.Schedule = awsevents.Schedule_Expression(jsii.String(s.Schedule))
		}
		out = append(out, ms)
	}
	return out
}
