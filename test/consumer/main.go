// Command consumer is a CDK app in its own Go module that imports the
// CircuitBreakedService construct by module path, as a service team's app
// would: it monitors two services and attaches the breaker to one function.
package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker"
)

// NewCheckoutStack is the consumer's stack.
func NewCheckoutStack(scope constructs.Construct, id string) awscdk.Stack {
	stack := awscdk.NewStack(scope, &id, nil)
	cb := circuitbreaker.NewCircuitBreakedService(stack, "Breaker", &circuitbreaker.CircuitBreakedServiceProps{
		DisableMockAPI: true,
		Services: []circuitbreaker.MonitoredService{
			{ID: "payments", URL: "https://payments.example.com/health"},
			{ID: "inventory", URL: "https://inventory.example.com/health"},
		},
	})
	fn := awslambda.NewFunction(stack, jsii.String("Checkout"), &awslambda.FunctionProps{
		Runtime:      awslambda.Runtime_NODEJS_22_X(),
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("index.handler"),
		Code:         awslambda.Code_FromInline(jsii.String("exports.handler = async () => ({ statusCode: 200 })")),
	})
	cb.AttachTo(fn, "payments")
	return stack
}

func main() {
	defer jsii.Close()
	app := awscdk.NewApp(nil)
	NewCheckoutStack(app, "Checkout")
	app.Synth(nil)
}
