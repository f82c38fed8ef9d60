#!/usr/bin/env bash
# Run every fuzz target of the module for a short, bounded time each.
#
# Usage: scripts/fuzz.sh [REGEXP]
#
# Finds every `func FuzzXxx(f *testing.F)` in *_fuzz_test.go files and runs
# `go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime $FUZZTIME` in its package, one after the other
# (the fuzzer already uses every core). REGEXP, when given, selects targets by name.
#
# The seed corpora live in each package's testdata/fuzz/FuzzXxx/ and also run as ordinary tests
# in `go test ./...`. What the fuzzer finds interesting stays in the Go build cache for the next
# run; a failing input is written to testdata/fuzz/FuzzXxx/ by go test itself: fix the bug and
# commit that file as a regression seed.
#
# Environment:
#   FUZZTIME       time per target, a go test -fuzztime value (10s)
#   FUZZ_PARALLEL  fuzzing workers per target (go test's default: GOMAXPROCS)
#   GO             go command (go)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZTIME="${FUZZTIME:-10s}"
GO="${GO:-go}"
filter="${1:-.}"
cd "$REPO_ROOT"

parallel=()
[[ -n ${FUZZ_PARALLEL:-} ]] && parallel=(-parallel "$FUZZ_PARALLEL")

targets=()
while IFS= read -r file; do
	dir="./$(dirname "${file#./}")"
	while IFS= read -r name; do
		[[ $name =~ $filter ]] && targets+=("$dir $name")
	done < <(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(f \*testing\.F).*/\1/p' "$file")
done < <(find . -path ./.git -prune -o -name '*_fuzz_test.go' -print | sort)

if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz.sh: no fuzz targets match $filter" >&2
	exit 1
fi

log="$(mktemp "${TMPDIR:-/tmp}/tokengate-fuzz.XXXXXX")"
trap 'rm -f "$log"' EXIT
# A target may have no corpus directory yet (no failing input ever written).
corpus() { { ls "$1/testdata/fuzz/$2" 2>/dev/null || true; } | sort; }

start=$SECONDS
failed=()
raced=0
for t in "${targets[@]}"; do
	read -r dir name <<<"$t"
	echo "fuzz.sh: $name ($dir) for $FUZZTIME"
	before="$(corpus "$dir" "$name")"
	if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" "$dir" 2>&1 | tee "$log"; then
		continue
	fi
	# Go <= 1.26 can fail a target with a bare "context deadline exceeded" when -fuzztime ends
	# while a worker is mid-call (go.dev/issue/75804, fixed in Go 1.27). That is no finding: it
	# writes no failing input and names no test. Anything else is a failure.
	if [[ $(corpus "$dir" "$name") == "$before" ]] && grep -qx '    context deadline exceeded' "$log" &&
		! grep -q -e 'Failing input written to' -e '^    --- FAIL' -e 'panic:' "$log"; then
		echo "fuzz.sh: $name: fuzzing stopped by Go's -fuzztime race (go.dev/issue/75804), no failing input: not a finding"
		raced=$((raced + 1))
		continue
	fi
	failed+=("$name")
done
echo "fuzz.sh: ${#targets[@]} targets in $((SECONDS - start))s ($raced ended by the -fuzztime race)"
if [[ ${#failed[@]} -gt 0 ]]; then
	echo "fuzz.sh: FAILED: ${failed[*]} (failing inputs are under testdata/fuzz/)" >&2
	exit 1
fi
