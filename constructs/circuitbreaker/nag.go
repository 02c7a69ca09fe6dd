package circuitbreaker

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// suppress records a cdk-nag rule suppression, with its reason, on the
// CloudFormation resource behind c (c itself or its default child), and
// nowhere else. For rules that report findings (such as AwsSolutions-IAM4
// and -IAM5), appliesTo names the exact findings suppressed (for example
// "Resource::*"); other findings of the same rule on the same resource
// are still reported. It writes the same "cdk_nag" metadata that cdk-nag's
// NagSuppressions does, so users who run cdk-nag see the reasons, and
// users who do not need no cdk-nag dependency.
func suppress(c constructs.IConstruct, rule, reason string, appliesTo ...string) {
	target := c
	if !*awscdk.CfnResource_IsCfnResource(target) {
		target = c.Node().DefaultChild()
	}
	if target == nil || !*awscdk.CfnResource_IsCfnResource(target) {
		panic("circuitbreaker: no CloudFormation resource to suppress " + rule + " on at " + *c.Node().Path())
	}
	var res awscdk.CfnResource
	jsii.UnsafeCast(target, &res)
	entry := map[string]interface{}{"id": rule, "reason": reason}
	if len(appliesTo) > 0 {
		entry["applies_to"] = appliesTo
	}
	var rules []interface{}
	if existing, ok := res.GetMetadata(jsii.String("cdk_nag")).(map[string]interface{}); ok {
		if r, ok := existing["rules_to_suppress"].([]interface{}); ok {
			rules = r
		}
	}
	rules = append(rules, entry)
	res.AddMetadata(jsii.String("cdk_nag"), map[string]interface{}{"rules_to_suppress": rules})
}
