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
	rm -f "$json"
	started=$(date +%s)
	# The mutation tag leaves out the tests that start the real borg, sshd or containers
	# (their files say //go:build !mutation): one such run per mutant would take hours. The
	# test command builds without the tag and runs them. One worker: the CPU is shared.
	# A mutant's run may take the coverage run's time times the coefficient. That run reuses
	# the build cache (-count=1 only stops it reusing the test result), a mutant's run
	# compiles and links again: under a second against several on a busy machine, hence 15.
	# Test helpers (sources/sourcestest/) are not the product: their mutants are left out.
	GOFLAGS=-count=1 go run "$GREMLINS" unleash "./$pkg" --tags mutation --workers 1 --timeout-coefficient 15 \
		--exclude-files 'test/[^/]*\.go$' --output "$json" --output-statuses lt >"$OUT/$pkg.txt" 2>&1 || true
	took=$(($(date +%s) - started))
	row=$(python3 - "$json" "$pkg" "$took" "$(date -u +%Y-%m-%d)" <<'PY'
import json, sys
path, pkg, took, day = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    d = json.load(open(path))
except Exception as e:
    print(f"| `{pkg}/` | - | - | - | - | - | run failed ({e.__class__.__name__}) on {day}; see mutation-report/{pkg}.txt |")
    sys.exit(0)
timed = sum(1 for f in d.get("files") or [] for m in f.get("mutations") or [] if m.get("status") == "TIMED OUT")
killed, lived, notcov = d.get("mutants_killed", 0), d.get("mutants_lived", 0), d.get("mutants_not_covered", 0)
eff = d.get("test_efficacy", 0.0)
print(f"| `{pkg}/` | {killed} | {lived} | {timed} | {notcov} | {eff:.1f} % | {day}, {took // 60} min {took % 60} s |")
PY
)
	rows+=("$row")
done

# Rows of packages not run this time are kept as they were.
python3 - "${rows[@]}" <<'PY'
import re, sys
order = ["borg", "sources", "restore", "state"]
p = "BENCHMARKS.md"
try:
    s = open(p).read()
except FileNotFoundError:
    s = "# Benchmarks\n"
pat = re.compile(r"<!-- mutation:begin -->.*?<!-- mutation:end -->", re.S)
old = pat.search(s)
rows = {}
key = lambda row: row.split("|")[1].strip().strip("`/")
if old:
    for line in old.group(0).splitlines():
        if line.startswith("| `") and line.count("|") == 8:
            rows[key(line)] = line
for row in sys.argv[1:]:
    rows[key(row)] = row
names = sorted(rows, key=lambda n: (order.index(n) if n in order else len(order), n))
block = "\n".join([
    "<!-- mutation:begin -->",
    "## Mutation score",
    "",
    "Written by `scripts/mutation.sh` (gremlins v0.6.0, one worker) over each package's unit tests: the",
    "tests that run the real borg, sshd or containers are built out with `-tags mutation`; the test command",
    "runs them. Efficacy is killed / (killed + lived); a timed-out mutant (a loop that never ends) counts",
    "as neither. Not covered: code that only the real-component tests reach. Survivors are listed in",
    "`mutation-report/<package>.txt`.",
    "",
    "| package | killed | lived | timed out | not covered | efficacy | run on, took |",
    "|---|---|---|---|---|---|---|",
    *[rows[n] for n in names],
    "<!-- mutation:end -->",
])
s = pat.sub(lambda _: block, s) if old else s.rstrip("\n") + "\n\n" + block + "\n"
open(p, "w").write(s)
PY
echo "wrote the mutation score to BENCHMARKS.md" >&2
