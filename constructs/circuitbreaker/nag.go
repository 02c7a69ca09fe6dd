package circuitbreaker

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
)

// suppress records a cdk-nag rule suppression, with its reason, on the
// CloudFormation resource behind c (c itself or its default child). It
// writes the same "cdk_nag" metadata that cdk-nag's NagSuppressions does, so
// users who run cdk-nag see the reasons, and users who do not need no
// cdk-nag dependency.
func suppress(c constructs.IConstruct, rule, reason string) {
	target := c
	if !*awscdk.CfnResource_IsCfnResource(target) {
		target = c.Node().DefaultChild()
	}
	if target == nil || !*awscdk.CfnResource_IsCfnResource(target) {
		panic("circuitbreaker: no CloudFormation resource to suppress " + rule + " on at " + *c.Node().Path())
	}
	addSuppression(target, rule, reason)
}

// suppressTree records the suppression on every CloudFormation resource in
// the tree under c, as NagSuppressions does with applyToChildren.
func suppressTree(c constructs.IConstruct, rule, reason string) {
	for _, child := range *c.Node().FindAll(constructs.ConstructOrder_PREORDER) {
		if *awscdk.CfnResource_IsCfnResource(child) {
			addSuppression(child, rule, reason)
		}
	}
}

func addSuppression(c constructs.IConstruct, rule, reason string) {
	var res awscdk.CfnResource
	jsii.UnsafeCast(c, &res)
	entry := map[string]interface{}{"id": rule, "reason": reason}
	var rules []interface{}
	if existing, ok := res.GetMetadata(jsii.String("cdk_nag")).(map[string]interface{}); ok {
		if r, ok := existing["rules_to_suppress"].([]interface{}); ok {
			rules = r
		}
	}
	rules = append(rules, entry)
	res.AddMetadata(jsii.String("cdk_nag"), map[string]interface{}{"rules_to_suppress": rules})
}
