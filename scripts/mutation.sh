#!/usr/bin/env bash
# Mutation testing of the pure packages: gremlins (pinned, through go run) changes the code one
# operator at a time and runs the package's tests; a mutant that no test notices "lived" and shows
# a gap. Writes the score per package into BENCHMARKS.md between the mutation markers, and the
# surviving mutants to mutation-report/ for reading.
#
# Slow (minutes per package on 2 cores), so it stays out of the test command.
#
#   bash scripts/mutation.sh [PACKAGE_DIR...]     default: borg sources restore state
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

readonly GREMLINS=github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0
readonly OUT=mutation-report
pkgs=("$@")
((${#pkgs[@]})) || pkgs=(borg sources restore state)

mkdir -p "$OUT"
rows=()
for pkg in "${pkgs[@]}"; do
	echo "mutation: $pkg" >&2
	json="$OUT/$pkg.json"
	# One worker: the tests of borg/ and sources/ run the real borg, and two at once on two
	# cores time out. The coefficient gives each mutant's test run room over the clean run.
	go run "$GREMLINS" unleash "./$pkg" --workers 1 --timeout-coefficient 5 \
		--output "$json" --output-statuses lt >"$OUT/$pkg.txt" 2>&1 || true
	row=$(python3 - "$json" "$pkg" <<'PY'
import json, sys
path, pkg = sys.argv[1], sys.argv[2]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"| `{pkg}/` | - | - | - | - | run failed ({e.__class__.__name__}); see mutation-report/{pkg}.txt |")
    sys.exit(0)
killed = d.get("mutants_killed", 0)
lived = d.get("mutants_lived", 0)
timed = d.get("mutants_timed_out", 0) if "mutants_timed_out" in d else 0
notcov = d.get("mutants_not_covered", 0)
eff = d.get("test_efficacy", 0.0)
cov = d.get("mutations_coverage", 0.0)
print(f"| `{pkg}/` | {killed} | {lived} | {notcov} | {eff:.1f} % | {cov:.1f} % mutant coverage, {timed} timed out |")
PY
)
	rows+=("$row")
done

block=$(
	echo "<!-- mutation:begin -->"
	echo "## Mutation score"
	echo
	echo "Written by \`scripts/mutation.sh\` on $(date -u +%Y-%m-%d) with gremlins v0.6.0, over each package's own tests."
	echo "Efficacy is killed / (killed + lived). Surviving mutants are listed in \`mutation-report/<package>.txt\`."
	echo
	echo "| package | killed | lived | not covered | efficacy | notes |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo "<!-- mutation:end -->"
)
python3 - "$block" <<'PY'
import re, sys
block = sys.argv[1]
p = "BENCHMARKS.md"
try:
    s = open(p).read()
except FileNotFoundError:
    s = "# Benchmarks\n"
pat = re.compile(r"<!-- mutation:begin -->.*?<!-- mutation:end -->", re.S)
s = pat.sub(lambda _: block, s) if pat.search(s) else s.rstrip("\n") + "\n\n" + block + "\n"
open(p, "w").write(s)
PY
echo "wrote the mutation score to BENCHMARKS.md" >&2
