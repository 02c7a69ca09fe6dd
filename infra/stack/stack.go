// Package stack defines the CDK stack of the circuit-breaker app: the
// CircuitBreakedService construct, the MyMicroservice function guarded by
// it, and the stack outputs.
package stack

import (
	"fmt"
	"time"

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
	services, err := MonitoredServices(props.Config)
	if err != nil {
		panic(err.Error())
	}
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
	if err := cb.AttachTo(fn, guarded); err != nil {
		panic(err.Error())
	}

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

// MonitoredServices converts the app configuration into construct props.
func MonitoredServices(cfg appconfig.File) ([]circuitbreaker.MonitoredService, error) {
	var out []circuitbreaker.MonitoredService
	for _, s := range cfg.Services {
		var d [8]time.Duration
		for i, v := range []string{s.Timeout, s.SlowCallThreshold, s.OpenCooldown, s.MaxOpenCooldown, s.Window, s.SlowCallDuration, s.ProbeTimeout, s.CheckInterval} {
			parsed, err := appconfig.Duration(v)
			if err != nil {
				return nil, fmt.Errorf("service %q: %w", s.ID, err)
			}
			d[i] = parsed
		}
		confirm, noConfirm, err := s.Confirmation()
		if err != nil {
			return nil, fmt.Errorf("service %q: confirmInterval: %w", s.ID, err)
		}
		ms := circuitbreaker.MonitoredService{
			ID:  s.ID,
			URL: s.URL,
			HealthCheck: circuitbreaker.HealthCheck{Timeout: d[0], SlowCallThreshold: d[1], ExpectedStatus: s.ExpectedStatus,
				ConfirmInterval: confirm, DisableConfirmation: noConfirm, CheckInterval: d[7]},
			Breaker: circuitbreaker.BreakerSettings{FailureThreshold: s.FailureThreshold, SuccessThreshold: s.SuccessThreshold, OpenCooldown: d[2], MaxOpenCooldown: d[3]},
			Passive: circuitbreaker.PassiveDetection{
				FailureRateThreshold: s.FailureRateThreshold, MinimumCalls: s.MinimumCalls, Window: d[4],
				SlowCallRateThreshold: s.SlowCallRateThreshold, SlowCallDuration: d[5], HalfOpenProbes: s.HalfOpenProbes,
				FastTripFailures: s.FastTripFailures,
				ProbeTimeout:     d[6],
			},
		}
		if s.Schedule != "" {
			ms.Schedule = awsevents.Schedule_Expression(jsii.String(s.Schedule))
		}
		out = append(out, ms)
	}
	return out, nil
}
