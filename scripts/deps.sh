#!/usr/bin/env bash
# Keep README.md's "Dependencies" table equal to go.mod's direct requirements.
#
# Usage: scripts/deps.sh [check|update]
#
#   check   (default) fail, showing the difference, when the modules or versions between
#           <!-- deps --> and <!-- /deps --> in README.md differ from go.mod's direct
#           requirements, or when a row still says TODO.
#   update  rewrite the table's module and version columns from go.mod, keeping each row's
#           "why"; a new module gets "TODO: why this dependency" (which check refuses, so the
#           reason gets written), a removed one loses its row.
#
# go.mod is read with `go mod edit -json` (no network).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GO="${GO:-go}"
PYTHON="${PYTHON:-python3}"
mode="${1:-check}"
cd "$REPO_ROOT"

"$GO" mod edit -json | "$PYTHON" -c '
import json, re, sys
mode, readme = sys.argv[1], sys.argv[2]
mod = {r["Path"]: r["Version"] for r in json.load(sys.stdin).get("Require", []) if not r.get("Indirect")}
text = open(readme, encoding="utf-8").read()
m = re.search(r"(<!-- deps -->\n)(.*?)(<!-- /deps -->)", text, re.S)
if not m:
    sys.exit("deps.sh: README.md has no <!-- deps --> ... <!-- /deps --> table")
rows, why = {}, {}
for line in m.group(2).splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 3 or not cells[0].startswith("`"):
        continue
    path = cells[0].strip("`")
    rows[path] = cells[1].strip("`")
    why[path] = " | ".join(cells[2:])
if mode == "update":
    lines = ["| Module | Version | Why |", "|---|---|---|"]
    for path in sorted(mod):
        lines.append("| `%s` | %s | %s |" % (path, mod[path], why.get(path, "TODO: why this dependency")))
    text = text[:m.start(2)] + "\n".join(lines) + "\n" + text[m.end(2):]
    open(readme, "w", encoding="utf-8").write(text)
    print("deps.sh: README.md table has %d direct dependencies" % len(mod))
    sys.exit(0)
bad = []
for path in sorted(set(mod) | set(rows)):
    if path not in rows:
        bad.append("go.mod requires %s %s; README.md does not list it" % (path, mod[path]))
    elif path not in mod:
        bad.append("README.md lists %s, which is not a direct requirement in go.mod" % path)
    elif rows[path] != mod[path]:
        bad.append("%s: go.mod %s, README.md %s" % (path, mod[path], rows[path]))
    elif not why[path] or "TODO" in why[path]:
        bad.append("%s: README.md does not say why" % path)
if bad:
    print("deps.sh: README.md Dependencies and go.mod differ (scripts/deps.sh update, then write the why):", file=sys.stderr)
    for b in bad:
        print("  - " + b, file=sys.stderr)
    sys.exit(1)
print("deps.sh: README.md lists the %d direct dependencies of go.mod" % len(mod))
' "$mode" README.md
