#!/usr/bin/env bash
# Measures cht-backup's speed on a sample CHT host and writes the results to BENCHMARKS.md.
# Speed is measured here, never asserted in tests. Run as root after scripts/test-env.sh to include
# the SSH repository (the test sshd on 127.0.0.1); a local repository is always measured.
#
#   bash scripts/bench.sh            # BENCH_MB=1024 by default
#   BENCH_MB=4096 bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

mb=${BENCH_MB:-1024}
work=$(mktemp -d /var/tmp/cht-backup-bench.XXXXXX)
trap 'rm -rf "$work"; [ -n "${remote_path:-}" ] && rm -rf "$remote_path"' EXIT

go build -o "$work/cht-backup" .
B="$work/cht-backup"
ranges=8 dbs=8
files=$(( ranges * (dbs + 3) + 2 ))
size=$(( mb * 1024 * 1024 / files ))
go run ./scripts/sampletree -size "$size" -ranges "$ranges" -dbs "$dbs" "$work/cht" >/dev/null
data_bytes=$(du -sb "$work/cht/couchdb" | cut -f1)
nfiles=$(find "$work/cht/couchdb" -type f | wc -l)

head -c 32 /dev/urandom | base64 > "$work/pass"; chmod 600 "$work/pass"
common=(--config /dev/null --passphrase-file "$work/pass" --state-dir "$work/state" --cht-dir "$work/cht")
export CHT_BACKUP_SKIP=tls,credentials # no containers in the sample
export BORG_BASE_DIR="$work/borg-base"

repos=("$work/repo")
labels=("local disk")
env_file=/var/tmp/cht-backup-testenv/env
if [ "$(id -u)" -eq 0 ] && [ -f "$env_file" ]; then
  # shellcheck disable=SC1090
  . "$env_file"
  remote_path="$SSH_REPO_ROOT/bench-$$"
  repos+=("ssh://$SSH_USER@$SSH_HOST:$SSH_PORT$remote_path")
  labels+=("ssh to 127.0.0.1 (forced borg serve key)")
  common+=(--ssh-key "$SSH_FORCED_KEY" --known-hosts "$SSH_KNOWN_HOSTS")
fi

now() { date +%s.%N; }
rows=()
verdicts=()
last_rate=0 last_stored=0
measure() { # label, bytes (0 = none), command...
  local label=$1 bytes=$2; shift 2
  local t0 t1 secs rate="-"
  t0=$(now)
  "$@" >"$work/out" 2>"$work/err" || { echo "bench: $label failed:"; cat "$work/err"; exit 1; }
  t1=$(now)
  local stored="-"
  last_stored=0
  if grep -q '"deduplicated_size"' "$work/out"; then
    last_stored=$(grep -o '"deduplicated_size": [0-9]*' "$work/out" | head -1 | awk '{print $2}')
    stored=$(awk -v b="$last_stored" 'BEGIN{printf "%.1f MiB", b/1048576}')
  fi
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')
  last_rate=0
  if [ "$bytes" -gt 0 ]; then
    last_rate=$(awk -v n="$bytes" -v s="$secs" 'BEGIN{printf "%.0f", n/s/1000000}')
    rate="$last_rate MB/s"
  fi
  rows+=("| $label | $(printf '%.1f' "$secs") s | $rate | $stored |")
  printf '%-70s %8.1f s  %-10s %s\n' "$label" "$secs" "$rate" "$stored"
}

# judge LABEL VALUE OP LIMIT UNIT: one line of the targets section
judge() {
  local ok
  ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN{print ((op==">=" && v>=l) || (op=="<=" && v<=l)) ? "met" : "NOT MET"}')
  verdicts+=("- $ok: $1: $2 $5 (target $3 $4 $5)")
}

for i in "${!repos[@]}"; do
  repo=${repos[$i]} label=${labels[$i]}
  min_rate=50
  [ "$i" -gt 0 ] && min_rate=25 # over SSH
  measure "init ($label)" 0 "$B" init --repo "$repo" "${common[@]}"
  measure "first backup, ${mb} MiB ($label)" "$data_bytes" "$B" backup --json --repo "$repo" "${common[@]}"
  judge "first backup throughput ($label)" "$last_rate" ">=" "$min_rate" "MB/s"
  # A night's growth: 1% appended across the shard files, as CouchDB's append-only files grow.
  grow=$(( data_bytes / 100 / nfiles + 1 ))
  find "$work/cht/couchdb/shards" -type f -name '*.couch' | while read -r f; do head -c "$grow" /dev/urandom >> "$f"; done
  sleep 1
  measure "next night's backup, 1% grown ($label)" "$data_bytes" "$B" backup --json --repo "$repo" "${common[@]}"
  # New data stored: the growth plus at most one average borg chunk (2 MiB) per grown file.
  bound=$(( (data_bytes / 100 + nfiles * 2 * 1048576) / 1048576 ))
  judge "next night's new data stored ($label)" "$(( last_stored / 1048576 ))" "<=" "$bound" "MiB"
  measure "check ($label)" 0 "$B" check --repo "$repo" "${common[@]}"
  if "$B" verify --help >/dev/null 2>&1; then
    measure "verify latest: extract + compare ($label)" "$data_bytes" "$B" verify latest --repo "$repo" "${common[@]}"
    judge "restore drill throughput ($label)" "$last_rate" ">=" "$min_rate" "MB/s"
    measure "restore latest --target ($label)" "$data_bytes" "$B" restore latest --target "$work/restored-$i" --repo "$repo" "${common[@]}"
    judge "restore throughput ($label)" "$last_rate" ">=" "$min_rate" "MB/s"
    rm -rf "$work/restored-$i"
  fi
done

# Sections other scripts write (scripts/mutation.sh) are kept as they are.
kept=$(sed -n '/^<!-- mutation:begin -->$/,/^<!-- mutation:end -->$/p' BENCHMARKS.md 2>/dev/null || true)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u +%Y-%m-%d). Speed is measured here, not asserted in tests."
  echo
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB memory, $(uname -sr)"
  echo "- borg $(borg --version | cut -d' ' -f2), $(go version | cut -d' ' -f3)"
  echo "- sample: $nfiles CouchDB files, $(( data_bytes / 1024 / 1024 )) MiB of random (incompressible) data, lz4; TLS and credentials skipped (no containers)"
  echo
  echo "| step | time | throughput (data size / time) | new data stored |"
  echo "|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "## Targets, judged by this run"
  echo
  echo "- Backup, restore drill and restore run at disk or network speed: at least 50 MB/s to a local disk and 25 MB/s over SSH on this 2-core machine, so 10 GiB of CouchDB data takes minutes, not hours."
  echo "- The next night's backup stores only what is new: the growth plus at most one average borg chunk (2 MiB) per grown file. CouchDB's files grow by appending, so borg reads each grown file again, but re-stores only its last chunk; unchanged files are skipped by borg's files cache."
  echo
  printf '%s\n' "${verdicts[@]}"
  if [ -n "$kept" ]; then echo; printf '%s\n' "$kept"; fi
} > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
