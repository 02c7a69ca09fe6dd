package test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCfnLint runs AWS's CloudFormation linter on the synthesized template
// with the repository's .cfnlintrc.yaml. Outside CI a missing cfn-lint
// skips the test with a message; in CI it fails.
func TestCfnLint(t *testing.T) {
	bin, err := exec.LookPath("cfn-lint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI needs cfn-lint on PATH (pip install cfn-lint==1.51.0)")
		}
		t.Skip("skipping: cfn-lint not on PATH (pip install cfn-lint==1.51.0)")
	}
	_, st := appStack(t, false)
	data, err := json.MarshalIndent(template(t, st), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "template.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config-file", filepath.Join("..", ".cfnlintrc.yaml"), "--", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cfn-lint found problems (%v):\n%s", err, out)
	}
}
