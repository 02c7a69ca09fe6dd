package circuitbreaker

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// GoFunctionProps configures NewGoFunction.
type GoFunctionProps struct {
	// Package is the import path of a main package of this module, such as
	// MyMicroservicePackage.
	Package string
	// Architecture of the function. Default: ARM_64.
	Architecture awslambda.Architecture
	// Description of the function.
	Description string
	// Timeout of the function. Default: 10 seconds.
	Timeout awscdk.Duration
	// MemorySize in MiB. Default: 128.
	MemorySize int
	// Environment variables of the function.
	Environment map[string]string
}

// NewGoFunction creates a provided.al2023 function from a main package of
// this module, compiled locally at synth time. The function gets its own
// log group (one month retention) and a role that may write only to it,
// instead of the AWS managed basic execution policy. The role carries no
// cdk-nag suppression, so a wildcard grant added to it is reported.
func NewGoFunction(scope constructs.Construct, id string, props *GoFunctionProps) awslambda.Function {
	arch := props.Architecture
	if arch == nil {
		arch = awslambda.Architecture_ARM_64()
	}
	timeout := props.Timeout
	if timeout == nil {
		timeout = awscdk.Duration_Seconds(jsii.Number(10))
	}
	memory := props.MemorySize
	if memory == 0 {
		memory = 128
	}
	env := map[string]*string{}
	for k, v := range props.Environment {
		env[k] = jsii.String(v)
	}
	logs := logGroup(scope, id+"Logs")
	role := awsiam.NewRole(scope, jsii.String(id+"Role"), &awsiam.RoleProps{
		AssumedBy:   awsiam.NewServicePrincipal(jsii.String("lambda.amazonaws.com"), nil),
		Description: jsii.String("Execution role of " + id),
	})
	role.AddToPolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Sid:       jsii.String("WriteOwnLogs"),
		Actions:   jsii.Strings("logs:CreateLogStream", "logs:PutLogEvents"),
		Resources: jsii.Strings(*logs.LogGroupArn()),
	}))
	fn := awslambda.NewFunction(scope, jsii.String(id), &awslambda.FunctionProps{
		Runtime:       awslambda.Runtime_PROVIDED_AL2023(),
		Architecture:  arch,
		Handler:       jsii.String("bootstrap"),
		Code:          goCode(scope, props.Package, arch, "bootstrap"),
		Description:   jsii.String(props.Description),
		Timeout:       timeout,
		MemorySize:    jsii.Number(float64(memory)),
		Environment:   &env,
		Role:          role,
		LogGroup:      logs,
		LoggingFormat: awslambda.LoggingFormat_JSON,
	})
	// No cdk-nag suppression here: the log statement names the function's
	// own log group, and every grant added later is checked as written.
	return fn
}
