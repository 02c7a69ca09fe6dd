package test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"

	"github.com/circuitbreaked/lambda-circuit-breaker/constructs/circuitbreaker"
)

// TestCdkNagAwsSolutions applies cdk-nag's AwsSolutions pack: no error may
// remain unsuppressed, and every suppression must carry a reason.
func TestCdkNagAwsSolutions(t *testing.T) {
	app, st := appStack(t, false)
	var errs, warns []string
	must(t, func() {
		awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
		ann := assertions.Annotations_FromStack(st)
		match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
		for _, m := range *ann.FindError(jsii.String("*"), match) {
			errs = append(errs, fmt.Sprintf("%s: %v", *m.Id, m.Entry.Data))
		}
		for _, m := range *ann.FindWarning(jsii.String("*"), match) {
			warns = append(warns, fmt.Sprintf("%s: %v", *m.Id, m.Entry.Data))
		}
	})
	if len(errs) > 0 {
		t.Errorf("%d unsuppressed cdk-nag errors:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	if len(warns) > 0 {
		t.Errorf("%d unsuppressed cdk-nag warnings:\n%s", len(warns), strings.Join(warns, "\n"))
	}

	checkSuppressions(t, template(t, st))
}

// findingRules are the rules that report findings; their suppressions
// must name the findings they cover.
var findingRules = map[string]bool{"AwsSolutions-IAM4": true, "AwsSolutions-IAM5": true}

// checkSuppressions checks every suppression in a template: a reason of
// some substance, the exact findings (applies_to) for rules that report
// findings, and none on the roles and policies of NewGoFunction's
// functions except the change-events stream grant.
func checkSuppressions(t *testing.T, tpl map[string]interface{}) {
	t.Helper()
	for id, r := range tpl["Resources"].(map[string]interface{}) {
		md, _ := r.(map[string]interface{})["Metadata"].(map[string]interface{})
		nag, _ := md["cdk_nag"].(map[string]interface{})
		rules, _ := nag["rules_to_suppress"].([]interface{})
		for _, x := range rules {
			s := x.(map[string]interface{})
			if reason, _ := s["reason"].(string); len(reason) < 20 {
				t.Errorf("%s: suppression of %v has no real reason: %q", id, s["id"], reason)
			}
			rule, _ := s["id"].(string)
			applies, _ := s["applies_to"].([]interface{})
			if findingRules[rule] && len(applies) == 0 {
				t.Errorf("%s: suppression of %s does not name the findings it covers (applies_to)", id, rule)
			}
			for _, a := range applies {
				if a == "Action::*" || (a == "Resource::*" && rule != "AwsSolutions-IAM5") {
					t.Errorf("%s: %s suppressed for %v", id, rule, a)
				}
			}
			if strings.HasPrefix(id, "MyMicroservice") || strings.HasPrefix(id, "CircuitBreakerUpdater") {
				t.Errorf("%s: %s suppressed on a NewGoFunction role", id, rule)
			}
		}
	}
}

// TestCdkNagReportsWildcardOnGoFunctionRole is the negative control for
// NewGoFunction: a wildcard grant added to the role of a function it
// creates must be reported by cdk-nag, not silently suppressed.
func TestCdkNagReportsWildcardOnGoFunctionRole(t *testing.T) {
	app := newApp(t, false)
	var found []string
	must(t, func() {
		st := awscdk.NewStack(app, jsii.String("Wild"), nil)
		fn := circuitbreaker.NewGoFunction(st, "Fn", &circuitbreaker.GoFunctionProps{Package: circuitbreaker.MyMicroservicePackage})
		fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
			Actions:   jsii.Strings("s3:*"),
			Resources: jsii.Strings("*"),
		}))
		// Run the pack on every construct directly: its errors would
		// otherwise fail the synthesis before they could be read.
		pack := cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)})
		for _, c := range *st.Node().FindAll(constructs.ConstructOrder_PREORDER) {
			pack.Visit(c)
		}
		for _, c := range *st.Node().FindAll(constructs.ConstructOrder_PREORDER) {
			for _, m := range *c.Node().Metadata() {
				if *m.Type == "aws:cdk:error" && strings.Contains(fmt.Sprint(m.Data), "AwsSolutions-IAM5") {
					found = append(found, fmt.Sprintf("%s: %v", *c.Node().Path(), m.Data))
				}
			}
		}
	})
	var action, resource bool
	for _, f := range found {
		onRole := strings.HasPrefix(f, "Wild/FnRole/")
		action = action || onRole && strings.Contains(f, "[Action::s3:*]")
		resource = resource || onRole && strings.Contains(f, "[Resource::*]")
	}
	if !action || !resource {
		t.Fatalf("cdk-nag did not report both wildcard findings of s3:* on * on a NewGoFunction role; reported:\n%s", strings.Join(found, "\n"))
	}
}

// TestNoAccountWideResourcesByDefault checks that the construct with
// default props changes no account setting: no AWS::ApiGateway::Account,
// no stage logging, and the stage logging findings suppressed on the
// mock API's stage only; MockAPIAccountLogging brings them back.
func TestNoAccountWideResourcesByDefault(t *testing.T) {
	for _, logging := range []bool{false, true} {
		app := newApp(t, false)
		var tpl map[string]interface{}
		var errs []string
		must(t, func() {
			st := awscdk.NewStack(app, jsii.String("Default"), nil)
			circuitbreaker.NewCircuitBreakedService(st, "CB", &circuitbreaker.CircuitBreakedServiceProps{MockAPIAccountLogging: logging})
			awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(&cdknag.NagPackProps{Verbose: jsii.Bool(true)}), nil)
			ann := assertions.Annotations_FromStack(st)
			match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-.*"))
			for _, m := range append(*ann.FindError(jsii.String("*"), match), *ann.FindWarning(jsii.String("*"), match)...) {
				errs = append(errs, fmt.Sprintf("%s: %v", *m.Id, m.Entry.Data))
			}
			tpl = template(t, st)
		})
		if len(errs) > 0 {
			t.Errorf("MockAPIAccountLogging=%v: unsuppressed cdk-nag findings:\n%s", logging, strings.Join(errs, "\n"))
		}
		checkSuppressions(t, tpl)
		accounts := resources(tpl, "AWS::ApiGateway::Account")
		if logging != (len(accounts) == 1) {
			t.Errorf("MockAPIAccountLogging=%v: %d AWS::ApiGateway::Account resources", logging, len(accounts))
		}
		for id, res := range resources(tpl, "AWS::ApiGateway::Stage") {
			p := props(res)
			methods, _ := json.Marshal(p["MethodSettings"])
			hasLogs := p["AccessLogSetting"] != nil || strings.Contains(string(methods), "LoggingLevel")
			if hasLogs != logging {
				t.Errorf("MockAPIAccountLogging=%v: stage %s logging = %v: %v", logging, id, hasLogs, p)
			}
			md, _ := json.Marshal(res["Metadata"])
			if suppressed := strings.Contains(string(md), "AwsSolutions-APIG1") && strings.Contains(string(md), "AwsSolutions-APIG6"); suppressed == logging {
				t.Errorf("MockAPIAccountLogging=%v: stage logging findings suppressed = %v", logging, suppressed)
			}
		}
		for id := range resources(tpl, "AWS::IAM::Role") {
			if strings.Contains(id, "CloudWatchRole") && !logging {
				t.Errorf("an API Gateway CloudWatch role %s without MockAPIAccountLogging", id)
			}
		}
	}
}

// TestCdkNagHarnessCatchesFindings proves the nag check above can fail: a
// table without point-in-time recovery must be reported.
func TestCdkNagHarnessCatchesFindings(t *testing.T) {
	app := newApp(t, false)
	var found int
	must(t, func() {
		st := awscdk.NewStack(app, jsii.String("Bad"), nil)
		awsdynamodb.NewTable(st, jsii.String("T"), &awsdynamodb.TableProps{
			PartitionKey: &awsdynamodb.Attribute{Name: jsii.String("id"), Type: awsdynamodb.AttributeType_STRING},
		})
		awscdk.Aspects_Of(app).Add(cdknag.NewAwsSolutionsChecks(nil), nil)
		ann := assertions.Annotations_FromStack(st)
		match := assertions.Match_StringLikeRegexp(jsii.String("AwsSolutions-DDB3.*"))
		found = len(*ann.FindError(jsii.String("*"), match)) + len(*ann.FindWarning(jsii.String("*"), match))
	})
	if found == 0 {
		t.Fatal("cdk-nag did not report DDB3 on a table without point-in-time recovery")
	}
}
