// Package docker holds tokengate's container image definition. No container engine runs in
// CI, so the image is never built there: hadolint lints the Dockerfile (make deploy-check) and
// this test checks its structure — a multi-stage build of a static binary, a final stage with
// nothing but the binary and CA certificates, a non-root user, and the Go version of go.mod.
package docker

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

type instruction struct{ cmd, args string }

// parse returns the instructions (continuation lines joined) grouped by stage.
func parse(t *testing.T) [][]instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages [][]instruction
	var pre []instruction
	var buf string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && buf == "") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			buf += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line = buf + line
		buf = ""
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			pre = append(pre, in)
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) > 0 {
		stages[0] = append(pre, stages[0]...)
	}
	return stages
}

func find(stage []instruction, cmd string) []string {
	var out []string
	for _, in := range stage {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func TestDockerfile_MultiStageStaticNonRoot(t *testing.T) {
	stages := parse(t)
	if len(stages) < 2 {
		t.Fatalf("%d stage(s): want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]
	runs := strings.Join(find(build, "RUN"), "\n")
	if !strings.Contains(runs, "CGO_ENABLED=0") || !strings.Contains(runs, "./cmd/tokengate") {
		t.Errorf("the build stage must build ./cmd/tokengate with CGO_ENABLED=0:\n%s", runs)
	}
	base := find(final, "FROM")[0]
	if base != "scratch" && !strings.Contains(base, "distroless/static") {
		t.Errorf("runtime base %q: want scratch or distroless/static (a static binary needs nothing else)", base)
	}
	if r := find(final, "RUN"); len(r) > 0 {
		t.Errorf("the runtime stage runs commands: %v", r)
	}
	users := find(final, "USER")
	if len(users) == 0 {
		t.Fatal("the runtime stage sets no USER: it would run as root")
	}
	u := users[len(users)-1]
	if name, _, _ := strings.Cut(u, ":"); name == "0" || name == "root" || !regexp.MustCompile(`^[0-9]+(:[0-9]+)?$`).MatchString(u) {
		t.Errorf("USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot checks it)", u)
	}
	ep := find(final, "ENTRYPOINT")
	if len(ep) != 1 || !strings.HasPrefix(ep[0], "[") {
		t.Errorf("ENTRYPOINT %v: want one, in exec form (signals reach tokengate for graceful shutdown)", ep)
	}
	if !strings.Contains(strings.Join(find(final, "VOLUME"), " "), "/var/lib/tokengate") {
		t.Error("the data directory /var/lib/tokengate is not a VOLUME")
	}
}

func TestDockerfile_GoVersionIsGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("no go directive in go.mod")
	}
	var arg string
	for _, in := range parse(t)[0] {
		if in.cmd == "ARG" && strings.HasPrefix(in.args, "GO_VERSION=") {
			arg = strings.TrimPrefix(in.args, "GO_VERSION=")
		}
	}
	if arg != string(m[1]) {
		t.Errorf("Dockerfile GO_VERSION %q, go.mod says go %s", arg, m[1])
	}
}
