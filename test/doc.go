// Package test holds the synth tests of the CDK app: golden-file snapshots
// of the template, assertions per resource, cdk-nag and cfn-lint checks,
// a test that really bundles the Go assets and inspects them, and checks
// that the README and docs/ keep their sections and document every setting,
// prop and endpoint of the code.
package test
