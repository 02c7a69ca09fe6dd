// Package test holds the synth tests of the CDK app: golden-file snapshots
// of the template, assertions per resource, cdk-nag and cfn-lint checks,
// and a test that really bundles the Go assets and inspects them.
package test
