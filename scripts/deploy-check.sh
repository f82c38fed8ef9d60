#!/usr/bin/env bash
# Check the deployment files under deploy/ with the tools their formats have, offline.
#
# Usage: scripts/deploy-check.sh
#
#   deploy/kubernetes  kubeconform, strict (unknown fields are errors), against the Kubernetes
#                      $K8S_VERSION JSON schemas unpacked from a PyPI wheel by scripts/tools.sh
#                      (no schema is downloaded at run time).
#   deploy/helm        the chart tokengate, for each value set (defaults, values-single.yaml,
#                      values-replicas.yaml, each of the two with values-sidecar.yaml): helm lint
#                      --strict, then helm template | kubeconform -strict against the same schemas.
#                      ServiceMonitor (a CRD, monitoring.coreos.com/v1) has no schema among them
#                      and is skipped by kind (-skip ServiceMonitor; no -ignore-missing-schemas,
#                      so any other kind without a schema still fails); deploy/helm's Go test
#                      checks it against the admin Service it selects. Then that Go test renders
#                      the same sets and runs the real binaries' check-config on the rendered
#                      tokengate.yaml and tokengate-auth.yaml, and refuses secrets in ConfigMaps.
#   deploy/docker      hadolint (every finding, down to "info", fails).
#   deploy/systemd     systemd-analyze verify (any warning fails) and
#                      systemd-analyze security --offline (exposure must stay <= 2.0), when
#                      systemd-analyze exists (Debian package systemd); skipped otherwise.
#
# What the schemas cannot see (the pieces agree with each other and with tokengate's config
# loader; probes, securityContext, admin port kept internal) is checked by the Go tests in
# deploy/kubernetes, deploy/docker and deploy/systemd, which go test ./... runs.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GO="${GO:-go}"
cd "$REPO_ROOT"
tools="$REPO_ROOT/scripts/tools.sh"

echo "deploy-check: kubeconform deploy/kubernetes" >&2
schemas="$("$tools" k8s-schemas)"
"$("$tools" kubeconform)" -strict -summary -skip Kustomization \
	-schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" deploy/kubernetes/

chart=deploy/helm/tokengate
helm="$("$tools" helm)"
for set in "" values-single.yaml values-replicas.yaml "values-single.yaml values-sidecar.yaml" \
	"values-replicas.yaml values-sidecar.yaml"; do
	args=()
	for f in $set; do args+=(-f "$chart/$f"); done
	echo "deploy-check: helm lint + template | kubeconform $chart ${set:-(defaults)}" >&2
	"$helm" lint --strict --quiet "${args[@]}" "$chart" >&2
	"$helm" template tokengate "$chart" --namespace tokengate "${args[@]}" |
		"$("$tools" kubeconform)" -strict -summary -skip ServiceMonitor \
			-schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json" -
done
abspath() { [[ -z $1 ]] || echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
echo "deploy-check: go test ./deploy/helm (check-config on the rendered configuration, no secret in a ConfigMap)" >&2
TOKENGATE_HELM="$helm" TOKENGATE_BIN="$(abspath "${TOKENGATE_BIN:-}")" \
	TOKENGATE_AUTH_BIN="$(abspath "${TOKENGATE_AUTH_BIN:-}")" "$GO" test -count=1 ./deploy/helm

echo "deploy-check: hadolint deploy/docker/Dockerfile" >&2
"$("$tools" hadolint)" --failure-threshold info deploy/docker/Dockerfile

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "deploy-check: systemd-analyze not installed (Debian package systemd): unit not verified" >&2
	exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/tokengate-deploy-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# verify insists that ExecStart's binary exists: point each unit at a build ($TOKENGATE_BIN /
# $TOKENGATE_AUTH_BIN, or a fresh one).
check_unit() { # unit binary-name prebuilt
	local unit=$1 name=$2 bin=${3:-}
	echo "deploy-check: systemd-analyze verify/security deploy/systemd/$unit" >&2
	if [[ -z $bin ]]; then
		bin="$work/$name"
		"$GO" build -o "$bin" "./cmd/$name"
	fi
	bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
	sed "s#/usr/local/bin/$name#$bin#g" "deploy/systemd/$unit" >"$work/$unit"
	out="$(systemd-analyze verify "$work/$unit" 2>&1)" || { echo "$out" >&2; exit 1; }
	if [[ -n $out ]]; then
		echo "$out" >&2
		echo "deploy-check: systemd-analyze verify warned on $unit" >&2
		exit 1
	fi
	if ! systemd-analyze security --offline=yes --threshold=20 --no-pager "$work/$unit" >"$work/security.txt" 2>&1; then
		cat "$work/security.txt" >&2
		echo "deploy-check: the exposure level of $unit rose above 2.0" >&2
		exit 1
	fi
	grep 'Overall exposure level' "$work/security.txt" >&2
}
check_unit tokengate.service tokengate "${TOKENGATE_BIN:-}"
check_unit tokengate-auth.service tokengate-auth "${TOKENGATE_AUTH_BIN:-}"
