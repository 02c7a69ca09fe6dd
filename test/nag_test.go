package test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
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

	// Every suppression in the template has a reason of some substance.
	for id, r := range template(t, st)["Resources"].(map[string]interface{}) {
		md, _ := r.(map[string]interface{})["Metadata"].(map[string]interface{})
		nag, _ := md["cdk_nag"].(map[string]interface{})
		rules, _ := nag["rules_to_suppress"].([]interface{})
		for _, x := range rules {
			s := x.(map[string]interface{})
			if reason, _ := s["reason"].(string); len(reason) < 20 {
				t.Errorf("%s: suppression of %v has no real reason: %q", id, s["id"], reason)
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
