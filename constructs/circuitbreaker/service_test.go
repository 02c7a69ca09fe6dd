package circuitbreaker

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

// AttachTo gives a function the same layer, environment and grants on
// every execution model, and leaves the model's own settings as they
// were: on demand, provisioned concurrency (on an alias), SnapStart (Java
// and Python, on published versions) and Lambda Managed Instances (a
// function on a capacity provider).
func TestAttachToExecutionModels(t *testing.T) {
	tests := []struct {
		name string
		// build creates the function named "Fn" in st, with the model's
		// settings.
		build func(st awscdk.Stack) awslambda.Function
		// model checks the model's own properties of the function's
		// resource, and of the stack's other resources.
		model func(t *testing.T, fn map[string]any, st awscdk.Stack)
	}{
		{
			name: "on demand",
			build: func(st awscdk.Stack) awslambda.Function {
				return testFunction(st, awslambda.Runtime_NODEJS_22_X(), nil)
			},
			model: func(t *testing.T, fn map[string]any, st awscdk.Stack) {
				for _, key := range []string{"SnapStart", "CapacityProviderConfig"} {
					if fn[key] != nil {
						t.Errorf("%s = %v on an on-demand function", key, fn[key])
					}
				}
			},
		},
		{
			name: "provisioned concurrency",
			build: func(st awscdk.Stack) awslambda.Function {
				fn := testFunction(st, awslambda.Runtime_PYTHON_3_13(), nil)
				awslambda.NewAlias(st, jsii.String("Live"), &awslambda.AliasProps{
					AliasName:                       jsii.String("live"),
					Version:                         fn.CurrentVersion(),
					ProvisionedConcurrentExecutions: jsii.Number(5),
				})
				return fn
			},
			model: func(t *testing.T, fn map[string]any, st awscdk.Stack) {
				aliases := stackResources(t, st, "AWS::Lambda::Alias")
				if len(aliases) != 1 {
					t.Fatalf("%d aliases, want 1", len(aliases))
				}
				for _, a := range aliases {
					pc, _ := a["ProvisionedConcurrencyConfig"].(map[string]any)
					if pc["ProvisionedConcurrentExecutions"] != float64(5) {
						t.Errorf("alias provisioned concurrency = %v", a["ProvisionedConcurrencyConfig"])
					}
				}
				// The version is published after AttachTo's changes: its
				// hash covers the layer and the environment.
				if n := len(stackResources(t, st, "AWS::Lambda::Version")); n != 1 {
					t.Errorf("%d versions, want 1", n)
				}
			},
		},
		{
			name: "SnapStart, Java",
			build: func(st awscdk.Stack) awslambda.Function {
				return testFunction(st, awslambda.Runtime_JAVA_21(), func(p *awslambda.FunctionProps) {
					p.SnapStart = awslambda.SnapStartConf_ON_PUBLISHED_VERSIONS()
				})
			},
			model: snapStartOn,
		},
		{
			name: "SnapStart, Python",
			build: func(st awscdk.Stack) awslambda.Function {
				return testFunction(st, awslambda.Runtime_PYTHON_3_13(), func(p *awslambda.FunctionProps) {
					p.SnapStart = awslambda.SnapStartConf_ON_PUBLISHED_VERSIONS()
					p.Architecture = awslambda.Architecture_X86_64()
				})
			},
			model: snapStartOn,
		},
		{
			name: "Managed Instances",
			build: func(st awscdk.Stack) awslambda.Function {
				vpc := awsec2.NewVpc(st, jsii.String("Vpc"), &awsec2.VpcProps{MaxAzs: jsii.Number(2), NatGateways: jsii.Number(0)})
				sg := awsec2.NewSecurityGroup(st, jsii.String("Instances"), &awsec2.SecurityGroupProps{Vpc: vpc})
				cp := awslambda.NewCapacityProvider(st, jsii.String("Capacity"), &awslambda.CapacityProviderProps{
					Subnets:        vpc.IsolatedSubnets(),
					SecurityGroups: &[]awsec2.ISecurityGroup{sg},
					Architectures:  &[]awslambda.Architecture{awslambda.Architecture_ARM_64()},
				})
				fn := testFunction(st, awslambda.Runtime_PYTHON_3_13(), func(p *awslambda.FunctionProps) {
					p.MemorySize = jsii.Number(2048)
				})
				cp.AddFunction(fn, &awslambda.CapacityProviderFunctionOptions{PerExecutionEnvironmentMaxConcurrency: jsii.Number(4)})
				return fn
			},
			model: func(t *testing.T, fn map[string]any, st awscdk.Stack) {
				cfg, _ := json.Marshal(fn["CapacityProviderConfig"])
				if !strings.Contains(string(cfg), "Capacity") || !strings.Contains(string(cfg), `"PerExecutionEnvironmentMaxConcurrency":4`) {
					t.Errorf("CapacityProviderConfig = %s, want the capacity provider with 4 invocations per environment", cfg)
				}
				if n := len(stackResources(t, st, "AWS::Lambda::CapacityProvider")); n != 1 {
					t.Errorf("%d capacity providers, want 1", n)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestStack()
			cb := NewCircuitBreakedService(st, "CB", nil)
			fn := tt.build(st)
			cb.AttachTo(fn)
			wantLayer := "ExtensionLayer" // arm64, the construct's default
			if *fn.Architecture().Name() == *awslambda.Architecture_X86_64().Name() {
				wantLayer = "ExtensionLayer-amd64"
			}
			var props map[string]any
			for id, p := range stackResources(t, st, "AWS::Lambda::Function") {
				if strings.HasPrefix(id, "Fn") {
					props = p
				}
			}
			if props == nil {
				t.Fatal("no function Fn in the template")
			}
			layers, _ := json.Marshal(props["Layers"])
			if !strings.Contains(string(layers), "CB"+strings.ReplaceAll(wantLayer, "-", "")) {
				t.Errorf("Layers = %s, want the construct's %s", layers, wantLayer)
			}
			env := functionEnv(t, st, "Fn")
			if env[EnvTable] == nil || env[EnvServices] != DefaultServiceID {
				t.Errorf("environment %v, want the table and %s", env, DefaultServiceID)
			}
			policies, _ := json.Marshal(stackResources(t, st, "AWS::IAM::Policy"))
			for _, action := range []string{"dynamodb:GetItem", "dynamodb:UpdateItem"} {
				if !strings.Contains(string(policies), action) {
					t.Errorf("no %s granted", action)
				}
			}
			tt.model(t, props, st)
		})
	}
}

// snapStartOn checks that the function keeps SnapStart on published
// versions.
func snapStartOn(t *testing.T, fn map[string]any, _ awscdk.Stack) {
	t.Helper()
	ss, _ := fn["SnapStart"].(map[string]any)
	if ss["ApplyOn"] != "PublishedVersions" {
		t.Errorf("SnapStart = %v, want ApplyOn PublishedVersions", fn["SnapStart"])
	}
}

// codeDir holds the test functions' code: no runtime takes inline code
// for every model (Java takes none).
var codeDir = "testdata/fncode"

// testFunction creates the function "Fn" in st from codeDir, arm64 unless
// edit says otherwise.
func testFunction(st awscdk.Stack, runtime awslambda.Runtime, edit func(*awslambda.FunctionProps)) awslambda.Function {
	p := &awslambda.FunctionProps{
		Runtime:      runtime,
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("index.handler"),
		Code:         awslambda.Code_FromAsset(jsii.String(codeDir), nil),
	}
	if edit != nil {
		edit(p)
	}
	return awslambda.NewFunction(st, jsii.String("Fn"), p)
}
