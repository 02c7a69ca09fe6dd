// Command infra is the CDK app of the circuit breaker. `cdk synth` and
// `cdk deploy` run it (see cdk.json). It reads the monitored services from
// infra/services.json, or from the file named by CIRCUIT_BREAKER_CONFIG.
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"

	"github.com/circuitbreaked/lambda-circuit-breaker/infra/stack"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/appconfig"
)

func main() {
	defer jsii.Close()
	path := os.Getenv("CIRCUIT_BREAKER_CONFIG")
	if path == "" {
		path = appconfig.DefaultPath
	}
	cfg, err := appconfig.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	app := awscdk.NewApp(nil)
	stack.New(app, stack.Name, &stack.Props{
		StackProps: awscdk.StackProps{
			Description: jsii.String("Circuit breaker for AWS Lambda: state table, extension layer, updater, mock API and MyMicroservice"),
			Env:         env(),
		},
		Config: cfg,
	})
	app.Synth(nil)
}

// env targets the account and region of the CLI's credentials when there
// are any; with none the stack is environment-agnostic, so synth works
// offline.
func env() *awscdk.Environment {
	account, region := os.Getenv("CDK_DEFAULT_ACCOUNT"), os.Getenv("CDK_DEFAULT_REGION")
	if account == "" || region == "" {
		return nil
	}
	return &awscdk.Environment{Account: jsii.String(account), Region: jsii.String(region)}
}
