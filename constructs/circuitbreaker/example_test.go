package circuitbreaker_test

import (
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker"
)

// A minimal breaker: a table, the extension layer, the updater and the mock
// API, monitoring the mock API once a minute.
func ExampleNewCircuitBreakedService() {
	app := awscdk.NewApp(nil)
	stack := awscdk.NewStack(app, jsii.String("Demo"), nil)
	circuitbreaker.NewCircuitBreakedService(stack, "CircuitBreaker", nil)
	app.Synth(nil)
}

// Monitor two real services and attach the breaker to a function written in
// any language: it gets the extension layer, the environment and read
// access to the table.
func ExampleCircuitBreakedService_AttachTo() {
	app := awscdk.NewApp(nil)
	stack := awscdk.NewStack(app, jsii.String("Orders"), nil)
	cb := circuitbreaker.NewCircuitBreakedService(stack, "CircuitBreaker", &circuitbreaker.CircuitBreakedServiceProps{
		DisableMockAPI: true,
		Services: []circuitbreaker.MonitoredService{
			{ID: "payments", URL: "https://payments.example.com/health"},
			{
				ID:          "inventory",
				URL:         "https://inventory.example.com/ping",
				Schedule:    awsevents.Schedule_Rate(awscdk.Duration_Minutes(jsii.Number(5))),
				HealthCheck: circuitbreaker.HealthCheck{Timeout: 2 * time.Second},
				Breaker:     circuitbreaker.BreakerSettings{FailureThreshold: 5},
			},
		},
	})
	fn := awslambda.NewFunction(stack, jsii.String("Checkout"), &awslambda.FunctionProps{
		Runtime: awslambda.Runtime_PYTHON_3_13(),
		Handler: jsii.String("app.handler"),
		Code:    awslambda.Code_FromAsset(jsii.String("checkout"), nil),
	})
	cb.AttachTo(fn, "payments")
	app.Synth(nil)
}

// Let an operators' role run circuitctl on the monitored services: read
// their circuits and set or clear overrides in their override items, and
// nothing else in the table.
func ExampleCircuitBreakedService_GrantOperate() {
	app := awscdk.NewApp(nil)
	stack := awscdk.NewStack(app, jsii.String("Ops"), nil)
	cb := circuitbreaker.NewCircuitBreakedService(stack, "CircuitBreaker", nil)
	operators := awsiam.NewRole(stack, jsii.String("Operators"), &awsiam.RoleProps{
		AssumedBy: awsiam.NewAccountRootPrincipal(),
	})
	cb.GrantOperate(operators)
	app.Synth(nil)
}

// Alarm on a metric that has no named method: lookups of the mock API's
// circuit answered from a value that could not be refreshed.
func ExampleCircuitBreakedService_Metric() {
	app := awscdk.NewApp(nil)
	stack := awscdk.NewStack(app, jsii.String("Stale"), nil)
	cb := circuitbreaker.NewCircuitBreakedService(stack, "CircuitBreaker", nil)
	stale := cb.Metric("StaleAnswers", circuitbreaker.DefaultServiceID, &awscloudwatch.MetricOptions{
		Statistic: jsii.String("Sum"),
		Period:    awscdk.Duration_Minutes(jsii.Number(5)),
	})
	stale.CreateAlarm(stack, jsii.String("StaleAnswers"), &awscloudwatch.CreateAlarmOptions{
		Threshold:         jsii.Number(1),
		EvaluationPeriods: jsii.Number(1),
	})
	app.Synth(nil)
}

// Send every state change of the monitored circuits to an SNS topic.
func ExampleCircuitBreakedService_OnStateChange() {
	app := awscdk.NewApp(nil)
	stack := awscdk.NewStack(app, jsii.String("Notify"), nil)
	cb := circuitbreaker.NewCircuitBreakedService(stack, "CircuitBreaker", nil)
	topic := awssns.NewTopic(stack, jsii.String("CircuitChanges"), nil)
	cb.OnStateChange("ToTopic", awseventstargets.NewSnsTopic(topic, nil))
	app.Synth(nil)
}
