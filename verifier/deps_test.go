package verifier_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestNetHTTPServiceDoesNotPullGin: a service on net/http that uses verifier (cmd/demo-service
// is one) builds without gin or anything else of gin-gonic; gin's middleware lives in
// verifier/ginverifier for the services that already use gin. Nor does it pull OpenTelemetry
// (the gateway's traces).
func TestNetHTTPServiceDoesNotPullGin(t *testing.T) {
	const (
		pkg     = "github.com/tokengate/tokengate/verifier"
		service = "github.com/tokengate/tokengate/cmd/demo-service"
	)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", pkg, service).Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	// The check means something only if the service really is a verifier user.
	imports, err := exec.Command(goTool, "list", "-f", `{{join .Imports " "}}`, service).Output()
	if err != nil {
		t.Fatalf("go list -f: %v", err)
	}
	if !slices.Contains(strings.Fields(string(imports)), pkg) {
		t.Fatalf("%s does not import %s any more; pick another net/http user of verifier", service, pkg)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, "github.com/gin-gonic/") || strings.HasPrefix(d, "github.com/gin-contrib/") {
			t.Errorf("a net/http service using verifier depends on %s", d)
		}
		// The gateway's optional traces stay in the gateway: services choose their own tracing.
		if strings.HasPrefix(d, "go.opentelemetry.io/") {
			t.Errorf("a net/http service using verifier depends on %s", d)
		}
	}
	if len(deps) < 10 || !slices.Contains(deps, pkg) {
		t.Fatalf("go list -deps printed %d packages without %s: %q", len(deps), pkg, out)
	}
}
