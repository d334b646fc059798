#!/usr/bin/env bash
# Measures cht-backup's speed and writes the results to BENCHMARKS.md. Speed is measured here,
# never asserted in tests. Run as root after scripts/test-env.sh: the comparisons and the
# throughput over SSH use the test sshd on 127.0.0.1, the CouchDB night uses the real CouchDB
# image (couchdb-real:3, imported from ../shared/couchdb when present). What cannot run is named
# in the output and in BENCHMARKS.md, never silently left out.
#
#   bash scripts/bench.sh                       # defaults below
#   BENCH_MB=1024 BENCH_ROUNDS=5 bash scripts/bench.sh
#
# BENCH_MB      size of the sample CHT host's CouchDB data (300)
# BENCH_ROUNDS  alternating rounds of each comparison; the median of each is compared (5)
# BENCH_COMPARE_ROUNDS rounds of the comparison with plain borg and borgmatic, full backup and
#               unchanged night (11)
# BENCH_FULL_ROUNDS rounds of the full backup against plain borg, those rounds included (51): its
#               target is 3 %, and two runs of plain borg next to each other on this machine
#               differ by 7.6 % (standard deviation of their log ratio, 8 such pairs), so it takes
#               this many for the median to be known to about ±3 % (95 %)
# BENCH_FILES   files of the tree on which cht-backup's own memory is measured (100000)
# BENCH_DOCS    documents in the real CouchDB before the night of writes (30000)
# BENCH_SECTIONS which sections to run (compare couchdb memory parallel throughput)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

mb=${BENCH_MB:-300}
rounds=${BENCH_ROUNDS:-5}
compare_rounds=${BENCH_COMPARE_ROUNDS:-11}
full_rounds=${BENCH_FULL_ROUNDS:-51}
[ "$full_rounds" -lt "$compare_rounds" ] && full_rounds=$compare_rounds
nfiles_mem=${BENCH_FILES:-100000}
docs=${BENCH_DOCS:-30000}
sections=${BENCH_SECTIONS:-compare couchdb memory parallel throughput}
want() { [[ " $sections " == *" $1 "* ]]; }

work=$(mktemp -d /var/tmp/cht-backup-bench.XXXXXX)
mkdir -p "$work/repos"
remote_paths=()
couch=""
cleanup() {
  [ -n "$couch" ] && { docker unpause "$couch" >/dev/null 2>&1 || true; docker rm -f "$couch" >/dev/null 2>&1 || true; }
  for p in "${remote_paths[@]}"; do rm -rf "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/cht-backup" .
go build -o "$work/couchload" ./scripts/couchload
B="$work/cht-backup"
chunker=$(sed -n 's/^\tCouchDBChunkerParams = "\(.*\)"$/\1/p' borg/chunker.go)
borg_default=$(sed -n 's/^\tBorgDefaultChunkerParams = "\(.*\)"$/\1/p' borg/chunker.go)

head -c 32 /dev/urandom | base64 > "$work/pass"; chmod 600 "$work/pass"
export BORG_BASE_DIR="$work/borg-base"
export CHT_BACKUP_SKIP=tls,credentials # no containers in the samples
# Plain borg and borgmatic, as a user would run them, get the passphrase from this command.
export BORG_PASSCOMMAND="cat $work/pass"
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

ssh_ok=false
env_file=/var/tmp/cht-backup-testenv/env
if [ "$(id -u)" -eq 0 ] && [ -f "$env_file" ]; then
  # shellcheck disable=SC1090
  . "$env_file"
  ssh_ok=true
  ssh_cmd="ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -i $SSH_FORCED_KEY"
  ssh_flags=(--ssh-key "$SSH_FORCED_KEY" --known-hosts "$SSH_KNOWN_HOSTS")
fi
# new_repo VAR LABEL: sets VAR to a fresh repository, over SSH when the test sshd is there, and
# registers it for removal (no subshell, so the list survives).
new_repo() {
  if $ssh_ok; then
    local p="$SSH_REPO_ROOT/bench-$$-$2"
    remote_paths+=("$p")
    printf -v "$1" '%s' "ssh://$SSH_USER@$SSH_HOST:$SSH_PORT$p"
  else
    printf -v "$1" '%s' "$work/repos/$2"
  fi
}
where="local disk"
$ssh_ok && where="SSH to 127.0.0.1 (test sshd, forced borg serve key)"

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan" }'; }
# paired A B: the ratio of the runs of one round, A's line n over B's line n, one per line.
paired() { paste "$1" "$2" | awk '$2>0 {printf "%.4f\n", $1/$2}'; }
# spread: "median lo hi min max" of the numbers on stdin, lo-hi the median's 95 % interval. The
# interval comes from order statistics (the binomial's normal approximation), so it assumes
# nothing of their spread.
spread() {
  sort -g | awk '{a[NR]=$1} END{ med = (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2
    h = 0.98 * sqrt(NR); lo = int(NR/2 - h); hi = int(NR/2 + 1 + h + 0.999)
    if (lo < 1) lo = 1; if (hi > NR) hi = NR
    printf "%.4f %.4f %.4f %.4f %.4f\n", med, a[lo], a[hi], a[1], a[NR] }'
}
mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1048576}'; }
# run_timed FILE cmd...: runs cmd, appends its wall time to FILE, fails the bench on error.
run_timed() {
  local file=$1; shift
  local t0 t1
  t0=$(now)
  "$@" >"$work/out" 2>"$work/err" || { echo "bench: $* failed:"; tail -20 "$work/err"; exit 1; }
  t1=$(now)
  echo "$(secs "$t0" "$t1")" >> "$file"
}
stored_of() { jq '[.repositories[].deduplicated_size] | add' "$1"; }

verdicts=()
# judge LABEL VALUE OP LIMIT UNIT: one line of the targets section, printed as it is judged
judge() {
  local ok
  ok=$(awk -v v="$2" -v l="$4" -v op="$3" 'BEGIN{v+=0; l+=0; print ((op==">=" && v>=l) || (op=="<=" && v<=l) || (op=="<" && v<l)) ? "met" : "MISSED"}')
  verdicts+=("- **$ok**: $1: $2$5 (target $3 $4$5)")
  echo "target $ok: $1: $2$5 (target $3 $4$5)"
}
md=()   # BENCHMARKS.md body, line by line
section() { md+=("" "## $1" ""); echo; echo "== $1"; }
line() { md+=("$1"); echo "$1"; }

sample="$work/cht"
if want compare || want throughput || want parallel; then
  ranges=4 dbs=8
  files=$(( ranges * (dbs + 3) + 2 ))
  go run ./scripts/sampletree -size $(( mb * 1024 * 1024 / files )) -ranges "$ranges" -dbs "$dbs" "$sample" >/dev/null
  data_bytes=$(du -sb "$sample/couchdb" | cut -f1)
  nfiles=$(find "$sample/couchdb" -type f | wc -l)
  # The very paths cht-backup gives borg, in its order, but its own staging (the manifest).
  dry=(--config /dev/null --passphrase-file "$work/pass" --state-dir "$work/dry-state" --cht-dir "$sample" --repo "$work/dry-repo")
  "$B" init "${dry[@]}" >/dev/null
  mapfile -t paths < <("$B" backup --dry-run --json "${dry[@]}" | jq -r '.paths[] | select(. != "cht-backup")')
  # cht-backup's archive also holds its manifest, written just before borg create; plain borg and
  # borgmatic get a file written the same way. Besides fairness this matters for borg's files
  # cache: borg does not remember files whose ctime is as new as the newest one it read, and a
  # generated sample has many files of one ctime.
  mkdir -p "$work/stamp"
  paths+=("$work/stamp")
fi
# stamp: the fresh file that stands in for cht-backup's manifest in plain borg's and borgmatic's runs.
stamp() { { date -u +%FT%T.%N; head -c 3000 /dev/urandom | base64; } > "$work/stamp/manifest.json"; }

# 1. cht-backup against plain borg create and against borgmatic: full backup and unchanged night.
if want compare; then
  section "Overhead: cht-backup against plain borg create and borgmatic"
  bm=$(command -v borgmatic || true)
  [ -z "$bm" ] && { echo "bench: borgmatic is not installed (apt-get install borgmatic): compared with plain borg only"; }
  all_tools=(cht raw)
  [ -n "$bm" ] && all_tools+=(bm)
  for r in $(seq "$full_rounds"); do
    # The first rounds compare all three on both nights; the rest only what the tightest target
    # needs, cht-backup against plain borg on a full backup.
    if [ "$r" -le "$compare_rounds" ]; then tools=("${all_tools[@]}") nights=(full unchanged)
    else tools=(cht raw) nights=(full); fi
    declare -A repo=()
    for t in "${tools[@]}"; do
      new_repo "repo[$t]" "cmp-$r-$t"
      if [ "$t" = cht ]; then
        "$B" init --config /dev/null --passphrase-file "$work/pass" --state-dir "$work/cmp-state-$r" --repo "${repo[$t]}" "${ssh_flags[@]}" >/dev/null
      else
        # Append-only like the repository cht-backup makes, so the tools are compared on one
        # kind of repository.
        BORG_RSH="${ssh_cmd:-ssh}" borg init -e repokey-blake2 --append-only "${repo[$t]}" >/dev/null 2>&1
      fi
    done
    if [[ " ${tools[*]} " == *" bm "* ]]; then
      {
        echo "location:"
        echo "    source_directories:"
        for p in "${paths[@]}"; do echo "        - $p"; done
        echo "    repositories:"
        echo "        - ${repo[bm]}"
        echo "storage:"
        echo "    encryption_passcommand: cat $work/pass"
        echo "    compression: lz4"
        echo "    chunker_params: $chunker"
        [ -n "${ssh_cmd:-}" ] && echo "    ssh_command: $ssh_cmd"
        echo "retention:"
        echo "    keep_daily: 7"
      } > "$work/borgmatic-$r.yaml"
    fi
    # Each tool's order in the round turns, so none always runs first on a warm page cache.
    order=("${tools[@]:$(( (r - 1) % ${#tools[@]} ))}" "${tools[@]:0:$(( (r - 1) % ${#tools[@]} ))}")
    for night in "${nights[@]}"; do
      for t in "${order[@]}"; do
        case $t in
          cht) run_timed "$work/t-$night-cht" "$B" backup --config /dev/null --passphrase-file "$work/pass" --state-dir "$work/cmp-state-$r" \
                 --cht-dir "$sample" --repo "${repo[cht]}" "${ssh_flags[@]}" ;;
          raw) stamp; run_timed "$work/t-$night-raw" env BORG_RSH="${ssh_cmd:-ssh}" borg create --compression lz4 --chunker-params "$chunker" \
                 "${repo[raw]}::bench-$night" "${paths[@]}" ;;
          bm)  stamp; run_timed "$work/t-$night-bm" "$bm" --config "$work/borgmatic-$r.yaml" create ;;
        esac
      done
      sleep 1 # archive names have whole seconds
    done
    # 51 rounds of three 340 MB repositories would not fit on the disk.
    rm -rf "${SSH_REPO_ROOT:-/nonexistent}/bench-$$-cmp-$r-"* "$work/repos/cmp-$r-"* "$work/cmp-state-$r"
  done
  line "- repository: $where; sample CHT host of $(mib "$data_bytes") MiB in $nfiles CouchDB files (random data), lz4, chunker params $chunker for all three"
  line "- $compare_rounds rounds; in each, every tool backs up into its own new repository, then backs up again with nothing changed; the order of the tools turns each round"
  line "- the full backup against plain borg: $full_rounds rounds, those $compare_rounds and $(( full_rounds - compare_rounds )) more of cht-backup and plain borg only, because its target (3 %) is smaller than this machine's noise: two runs of plain borg next to each other differ by 7.6 % (standard deviation of 8 such pairs, measured once on 2026-12-01)"
  line "- ratio: the median of the rounds' ratios, each of two runs next to each other in time, which cancels the machine's slow and fast spells; the range of the rounds' ratios and the ratio of the median times are given beside it, and for the full backup the 95 % interval of the median"
  line "- every repository is made by \`borg init -e repokey-blake2 --append-only\` (cht-backup's by its own init, which does the same)"
  line "- plain borg: \`borg create --compression lz4 --chunker-params $chunker REPO::NAME\` with cht-backup's paths, its manifest replaced by a file of the same size written just before each run"
  [ -n "$bm" ] && line "- borgmatic $("$bm" --version): \`borgmatic create\` with the same paths, compression and chunker params"
  line ""
  line "| run | cht-backup (median) | plain borg | borgmatic | cht-backup / plain borg | cht-backup / borgmatic |"
  line "|---|---|---|---|---|---|"
  # vs OTHER: "ratio (rounds lo-hi; medians m)", cht-backup against OTHER in this night's runs.
  # cht-backup's runs are taken only from the rounds OTHER ran in.
  vs() {
    local f="$work/t-$night-$1" c="$work/t-$night-cht-vs-$1"
    head -n "$(wc -l < "$f")" "$work/t-$night-cht" > "$c"
    local med lo hi mn mx
    read -r med lo hi mn mx < <(paired "$c" "$f" | spread)
    printf "%.2f (rounds %.2f-%.2f; medians %s)" "$med" "$mn" "$mx" "$(ratio "$(median < "$c")" "$(median < "$f")")"
  }
  for night in full unchanged; do
    c=$(median < "$work/t-$night-cht"); rw=$(median < "$work/t-$night-raw"); b="-" rb="-"
    rr=$(vs raw); eval "r_${night}_raw=${rr%% *}"
    if [ -n "$bm" ]; then b="$(median < "$work/t-$night-bm") s"; rb=$(vs bm); eval "r_${night}_bm=${rb%% *}"; fi
    line "| $night backup | $c s | $rw s | $b | $rr | $rb |"
  done

  # Where cht-backup's time goes: more runs, its borg create timed from inside by a wrapper, so
  # what cht-backup adds is measured within one run, free of the noise between runs.
  cat > "$work/borg-timed" <<EOF
#!/bin/sh
s=\$(date +%s.%N)
$(command -v borg) "\$@"
rc=\$?
[ "\$1" = create ] && echo "\$s \$(date +%s.%N)" >> "$work/borg-create-times"
exit \$rc
EOF
  chmod +x "$work/borg-timed"
  for r in $(seq "$rounds"); do
    new_repo orepo "own-$r"
    os=(--config /dev/null --passphrase-file "$work/pass" --state-dir "$work/own-state-$r" --repo "$orepo" --borg "$work/borg-timed" "${ssh_flags[@]}")
    "$B" init "${os[@]}" >/dev/null
    for night in full unchanged; do
      rm -f "$work/borg-create-times"
      t0=$(now)
      "$B" backup "${os[@]}" --cht-dir "$sample" >"$work/out" 2>"$work/err" || { echo "bench: cht-backup backup failed:"; tail -20 "$work/err"; exit 1; }
      t1=$(now)
      read -r b0 b1 < "$work/borg-create-times"
      echo "$(secs "$t0" "$t1") $(secs "$b0" "$b1")" >> "$work/own-$night"
      sleep 1
    done
  done
  line ""
  line "What cht-backup adds to the borg create it runs, measured within each run ($rounds more runs of each; the borg create is timed by a wrapper script around borg, whose own start is counted as borg's):"
  line ""
  line "| run | cht-backup | its borg create | cht-backup's own time | cht-backup / its borg create |"
  line "|---|---|---|---|---|"
  for night in full unchanged; do
    line "| $night backup | $(cut -d' ' -f1 "$work/own-$night" | median) s | $(cut -d' ' -f2 "$work/own-$night" | median) s | $(awk '{printf "%.3f\n", $1-$2}' "$work/own-$night" | median | awk '{printf "%.0f ms", $1*1000}') | $(awk '{printf "%.4f\n", $1/$2}' "$work/own-$night" | median | awk '{printf "%.3f", $1}') |"
  done
  line ""
  read -r full_med full_lo full_hi _ < <(paired "$work/t-full-cht" "$work/t-full-raw" | spread)
  full_med=$(printf %.3f "$full_med") full_int=$(printf %.3f-%.3f "$full_lo" "$full_hi")
  line "Full backup, cht-backup / plain borg, all $full_rounds rounds: median $full_med, 95 % interval of the median $full_int."
  line ""
  judge "full backup, cht-backup / plain borg, median of $full_rounds paired rounds (95 % interval $full_int)" "$full_med" "<=" 1.03 "×"
  judge "full backup, cht-backup / the borg create it runs, within one run" "$(awk '{printf "%.4f\n", $1/$2}' "$work/own-full" | median | awk '{printf "%.3f", $1}')" "<=" 1.03 "×"
  judge "unchanged night, cht-backup / plain borg" "$r_unchanged_raw" "<=" 1.15 "×"
  [ -n "$bm" ] && judge "unchanged night, cht-backup / borgmatic" "$r_unchanged_bm" "<=" 0.75 "×"
fi

# 2. A night of writes on a real CouchDB: bytes stored against the growth of the data dir.
if want couchdb; then
  section "A night of writes on a real CouchDB 3.4.3"
  if ! docker image inspect couchdb-real:3 >/dev/null 2>&1 && [ -x ../shared/couchdb/load-image.sh ]; then
    ../shared/couchdb/load-image.sh >/dev/null
  fi
  if ! docker image inspect couchdb-real:3 >/dev/null 2>&1; then
    line "- not measured: the image couchdb-real:3 is missing (../shared/couchdb/load-image.sh imports it)"
    judge "night of growth stored / growth (not measured)" "nan" "<=" 1.3 "×"
  else
    cc="$work/couchcht"
    mkdir -p "$cc/couchdb" "$cc/compose" "$cc/upgrade-service"
    printf 'COUCHDB_USER=admin\nCOUCHDB_PASSWORD=secret\nCOUCHDB_DATA=%s\n' "$cc/couchdb" > "$cc/upgrade-service/.env"
    chmod 600 "$cc/upgrade-service/.env"
    printf 'services:\n  couchdb:\n    image: couchdb-real:3\n' > "$cc/compose/cht-couchdb.yml"
    couch="cht-backup-bench-couch-$$"
    docker run -d --name "$couch" -v "$cc/couchdb:/opt/couchdb/data" couchdb-real:3 >/dev/null
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$couch")
    url="http://$ip:5984"
    for _ in $(seq 120); do curl -sf "$url/_up" >/dev/null && break; sleep 0.5; done
    load() { "$work/couchload" -url "$url" -db "$1" -n "$2" -seed "$3"; }
    load medic "$docs" 1; load medic-sentinel $(( docs / 2 )) 2; load medic-users-meta $(( docs / 10 )) 3; load _users 500 4
    sleep 2
    # borg's default, two sizes in between, and ours: each into its own repository.
    kinds=(default 16 15 ours)
    declare -A crepo=() cparams=([default]=$borg_default [16]=buzhash,16,20,18,4095 [15]=buzhash,15,19,17,4095 [ours]=$chunker)
    # The container is no CHT compose project's, so the TLS and credential parts cannot be found
    # in it; they are not what is measured here, and without them the runs would end partial.
    common=(--config /dev/null --passphrase-file "$work/pass" --state-dir "$work/couch-state" --cht-dir "$cc")
    bcommon=("${common[@]}" --skip tls --skip credentials)
    # couch_backup JSON REPO [WRAPPER...]: a backup of the live CouchDB, its report to JSON. Exit
    # status 1 with the archive made is what a CouchDB writing while borg reads it gives (a file
    # changed while read): the run counts, and its warnings are listed in BENCHMARKS.md.
    live_warnings=()
    couch_backup() {
      local json=$1 repo=$2 rc=0
      shift 2
      "$@" "$B" backup --json "${bcommon[@]}" --repo "$repo" > "$json" 2>"$work/err" || rc=$?
      if [ "$rc" -eq 1 ] && [ "$(jq '[.repositories[] | .ok] | all' "$json" 2>/dev/null)" = true ]; then
        mapfile -t -O "${#live_warnings[@]}" live_warnings < <(jq -r '.repositories[].warnings[]? | "\(.kind): \(.path)"' "$json")
        return 0
      fi
      [ "$rc" -eq 0 ] && return 0
      echo "bench: a backup of the live CouchDB to $repo failed (exit status $rc):"
      jq -c '.repositories[]? | {ok, error, hint, warnings, missing}' "$json" 2>/dev/null || head -c 2000 "$json"
      tail -5 "$work/err"
      exit 1
    }
    for k in "${kinds[@]}"; do
      crepo[$k]="$work/couch-repo-$k"
      "$B" init "${common[@]}" --repo "${crepo[$k]}" --chunker-params "${cparams[$k]}" >/dev/null
    done
    declare -A rss=() took=()
    for k in "${kinds[@]}"; do
      couch_backup "$work/out" "${crepo[$k]}"
    done
    du0=$(du -sb "$cc/couchdb" | cut -f1)
    load medic 1500 11; load medic-sentinel 500 12; load medic-users-meta 50 13
    sleep 2
    du1=$(du -sb "$cc/couchdb" | cut -f1)
    growth=$(( du1 - du0 ))
    sleep 1
    for k in "${kinds[@]}"; do
      t0=$(now)
      couch_backup "$work/night-$k.json" "${crepo[$k]}" /usr/bin/time -f '%M' -o "$work/rss-$k"
      took[$k]=$(secs "$t0" "$(now)")
      # time writes "Command exited with non-zero status 1" above the figure after a warning.
      rss[$k]=$(( $(tail -n 1 "$work/rss-$k") / 1024 ))
    done
    chunks() { BORG_RSH=ssh borg info --json "$1" | jq .cache.stats.total_unique_chunks; }
    line "- data dir after the first backup: $(mib "$du0") MiB ($docs medic documents, $(( docs / 2 )) medic-sentinel, $(( docs / 10 )) medic-users-meta, 500 _users; two views built)"
    line "- the night: 1500 + 500 + 50 new documents, views read again; the data dir grew by $(mib "$growth") MiB"
    line "- stored = borg's deduplicated size of the night's archive (lz4, so it may be below the growth); peak RSS is that of the largest process of the run (borg's)"
    line ""
    line "| chunker params | stored by the night | stored / growth | backup time | peak RSS | chunks in repository |"
    line "|---|---|---|---|---|---|"
    for k in "${kinds[@]}"; do
      s=$(stored_of "$work/night-$k.json")
      eval "stored_$k=$s"
      line "| ${cparams[$k]}$([ $k = ours ] && echo " (cht-backup's)")$([ $k = default ] && echo " (borg's default)") | $(mib "$s") MiB | $(ratio "$s" "$growth") | ${took[$k]} s | ${rss[$k]} MiB | $(chunks "${crepo[$k]}") |"
    done
    judge "night of growth on a real CouchDB, stored / growth, $chunker" "$(ratio "$stored_ours" "$growth")" "<=" 1.3 "×"

    # A compaction caught in progress: CouchDB is paused once its .compact files hold 1 MiB; the
    # backup leaves them out, then plain borg archives them too, into the same repository. The
    # compaction of this medic takes well under a second at full speed, so CouchDB gets a
    # twentieth of a CPU while it runs, or the files would be caught empty or not at all.
    compact_bytes() { find "$cc/couchdb" -name '*.compact*' -printf '%s\n' | awk '{s+=$1} END{print s+0}'; }
    docker update --cpus 0.05 "$couch" >/dev/null
    curl -sf -X POST -H 'Content-Type: application/json' -u admin:secret "$url/medic/_compact" >/dev/null
    caught=false
    for _ in $(seq 1500); do
      # The freezer cannot stop a CouchDB held to a twentieth of a CPU, so the hold is lifted
      # first, and a pause that finds its tasks still throttled is tried again.
      if [ "$(compact_bytes)" -ge 1048576 ]; then
        docker update --cpus "$(nproc)" "$couch" >/dev/null
        for _ in $(seq 20); do docker pause "$couch" >/dev/null 2>&1 && break; sleep 0.1; done
        [ "$(docker inspect -f '{{.State.Paused}}' "$couch")" = true ] || { echo "bench: CouchDB could not be paused" >&2; exit 1; }
        caught=true; break
      fi
      sleep 0.02
    done
    if $caught; then
      cbytes=$(compact_bytes)
      sleep 1
      couch_backup "$work/compact-ours.json" "${crepo[ours]}"
      without=$(stored_of "$work/compact-ours.json")
      mapfile -t cpaths < <(jq -r '.paths[] | select(. != "cht-backup")' "$work/compact-ours.json")
      with=$(borg create --json --compression lz4 --chunker-params "$chunker" "${crepo[ours]}::with-compaction-files" "${cpaths[@]}" | jq .archive.stats.deduplicated_size)
      docker unpause "$couch" >/dev/null
      line ""
      line "Compaction caught in progress (medic, CouchDB paused): $(mib "$cbytes") MiB of .compact files beside their live files. cht-backup left them out (its archive stored $(mib "$without") MiB); archiving them as well would have stored $(mib "$with") MiB more on this night. That is mostly a saving moved to the next night: the compacted file deduplicates against a partial copy already archived (scripts/couchdb-compaction-files.sh partial, README)."
    else
      line ""
      line "Compaction in progress: not caught (the compaction of medic ended before its .compact files held 1 MiB); nothing measured."
    fi
    docker rm -f "$couch" >/dev/null; couch=""
    line ""
    if [ "${#live_warnings[@]}" -eq 0 ]; then
      line "Every backup of the live CouchDB above ended without a warning."
    else
      line "Backups of the live CouchDB above that ended with borg's warnings (exit status 1, the archive made), as CouchDB wrote while borg read: $(printf '%s; ' "${live_warnings[@]}" | sed 's/; $//')."
    fi
  fi
fi

# 3. cht-backup's own peak memory on a tree of many files (VmHWM of its own process, not borg's).
if want memory; then
  section "cht-backup's own memory at $nfiles_mem files"
  mt="$work/many"
  mranges=$(( (nfiles_mem + 999) / 1000 ))
  go run ./scripts/sampletree -size 64 -ranges "$mranges" -dbs 997 "$mt" >/dev/null
  mfiles=$(find "$mt/couchdb" -type f | wc -l)
  mrepo="$work/many-repo"
  mcommon=(--config /dev/null --passphrase-file "$work/pass" --state-dir "$work/many-state" --cht-dir "$mt" --repo "$mrepo")
  "$B" init "${mcommon[@]}" >/dev/null
  "$B" backup "${mcommon[@]}" >/dev/null 2>&1 &
  pid=$!
  hwm=0
  while kill -0 "$pid" 2>/dev/null; do
    v=$(awk '/^VmHWM:/{print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$v" ] && hwm=$v
    sleep 0.02
  done
  wait "$pid"
  hwm_mib=$(awk -v k="$hwm" 'BEGIN{printf "%.1f", k/1024}')
  line "- $mfiles files in the CouchDB data dir; a real backup to a local repository; VmHWM of the cht-backup process read from /proc while it ran: $hwm_mib MiB"
  judge "cht-backup's own peak memory at $mfiles files" "$hwm_mib" "<" 30 " MiB"
fi

# 4. Several repositories at once: cht-backup to a local repository and to one over SSH, each
# alone one after the other (as it wrote them before it wrote different media at once), against
# one run with both configured (which writes them at once).
if want parallel; then
  section "Two repositories: one after the other, or both at once"
  for r in $(seq "$rounds"); do
    for m in turn once; do
      local_repo="$work/par-$r-$m-local"; new_repo remote_repo "par-$r-$m"
      printf 'CHT_BACKUP_REPO=%s,%s\n' "$local_repo" "$remote_repo" > "$work/par-$r-$m.conf"
      pc=(--config "$work/par-$r-$m.conf" --passphrase-file "$work/pass" --state-dir "$work/par-state-$r-$m" "${ssh_flags[@]}")
      "$B" init "${pc[@]}" >/dev/null 2>&1
      eval "par_${m}_args=(\"\${pc[@]}\")"
      eval "par_${m}_local=\$local_repo par_${m}_remote=\$remote_repo"
    done
    turn_run() { "$B" backup "${par_turn_args[@]}" --cht-dir "$sample" --repo "$par_turn_local" && "$B" backup "${par_turn_args[@]}" --cht-dir "$sample" --repo "$par_turn_remote"; }
    once_run() { "$B" backup "${par_once_args[@]}" --cht-dir "$sample"; }
    if (( r % 2 )); then run_timed "$work/t-seq" turn_run; run_timed "$work/t-par" once_run
    else run_timed "$work/t-par" once_run; run_timed "$work/t-seq" turn_run; fi
    # The nightly case: the shard files grown by 1%, as CouchDB's append-only files grow.
    grow=$(( data_bytes / 100 / nfiles + 1 ))
    find "$sample/couchdb/shards" -type f -name '*.couch' | while read -r f; do head -c "$grow" /dev/urandom >> "$f"; done
    if (( r % 2 )); then run_timed "$work/t-seq-night" turn_run; run_timed "$work/t-par-night" once_run
    else run_timed "$work/t-par-night" once_run; run_timed "$work/t-seq-night" turn_run; fi
  done
  s=$(median < "$work/t-seq"); p=$(median < "$work/t-par")
  sn=$(median < "$work/t-seq-night"); pn=$(median < "$work/t-par-night")
  line "- cht-backup backup of the $(mib "$data_bytes") MiB sample to a local repository and to one over $where: one run per repository, one after the other, against one run with both configured, which writes them at once (different media); $rounds alternating rounds, medians"
  line ""
  line "| run | one after the other | both at once | at once / in turn |"
  line "|---|---|---|---|"
  line "| full backup | $s s | $p s | $(ratio "$p" "$s") |"
  line "| a night, shard files grown by 1% | $sn s | $pn s | $(ratio "$pn" "$sn") |"
  line ""
  line "- cht-backup writes repositories on different servers or media at once, and those sharing one in turn. At once must be clearly faster (under 0.9) on the nightly run, the one that runs every day, on this $(nproc)-core machine."
  judge "two repositories on different media, a night: at once / in turn" "$(ratio "$pn" "$sn")" "<" 0.9 "×"
fi

# 5. Throughput of backup, check, restore drill and restore, to a local disk and over SSH.
if want throughput; then
  section "Throughput"
  line "| step | time | throughput (data size / time) | new data stored |"
  line "|---|---|---|---|"
  trepos=("$work/repo")
  tlabels=("local disk")
  if $ssh_ok; then new_repo tp_repo tp; trepos+=("$tp_repo"); tlabels+=("ssh to 127.0.0.1 (forced borg serve key)"); fi
  last_rate=0 last_stored=0
  measure() { # label, bytes (0 = none), command...
    local label=$1 bytes=$2; shift 2
    local t0 t1 s rate="-" stored="-"
    t0=$(now)
    "$@" >"$work/out" 2>"$work/err" || { echo "bench: $label failed:"; cat "$work/err"; exit 1; }
    t1=$(now)
    last_stored=0
    if grep -q '"deduplicated_size"' "$work/out"; then
      last_stored=$(grep -o '"deduplicated_size": [0-9]*' "$work/out" | head -1 | awk '{print $2}')
      stored="$(mib "$last_stored") MiB"
    fi
    s=$(secs "$t0" "$t1")
    last_rate=0
    if [ "$bytes" -gt 0 ]; then
      last_rate=$(awk -v n="$bytes" -v s="$s" 'BEGIN{printf "%.0f", n/s/1000000}')
      rate="$last_rate MB/s"
    fi
    line "| $label | $(printf '%.1f' "$s") s | $rate | $stored |"
  }
  for i in "${!trepos[@]}"; do
    repo=${trepos[$i]} label=${tlabels[$i]}
    tcommon=(--config /dev/null --passphrase-file "$work/pass" --state-dir "$work/tp-state" --cht-dir "$sample" --repo "$repo")
    [ "$i" -gt 0 ] && tcommon+=("${ssh_flags[@]}")
    min_rate=50
    [ "$i" -gt 0 ] && min_rate=25 # over SSH
    measure "init ($label)" 0 "$B" init "${tcommon[@]}"
    measure "first backup ($label)" "$data_bytes" "$B" backup --json "${tcommon[@]}"
    judge "first backup throughput ($label)" "$last_rate" ">=" "$min_rate" " MB/s"
    # A night's growth: 1% appended across the shard files, as CouchDB's append-only files grow.
    grow=$(( data_bytes / 100 / nfiles + 1 ))
    find "$sample/couchdb/shards" -type f -name '*.couch' | while read -r f; do head -c "$grow" /dev/urandom >> "$f"; done
    sleep 1
    measure "next night's backup, 1% grown ($label)" "$data_bytes" "$B" backup --json "${tcommon[@]}"
    # New data stored: the growth plus at most one largest chunk (256 KiB with 2^18) per grown file.
    bound=$(( (data_bytes / 100 + nfiles * 262144) / 1048576 ))
    judge "next night's new data stored ($label)" "$(( last_stored / 1048576 ))" "<=" "$bound" " MiB"
    measure "check ($label)" 0 "$B" check "${tcommon[@]}"
    measure "verify latest: extract + compare ($label)" "$data_bytes" "$B" verify latest "${tcommon[@]}"
    judge "restore drill throughput ($label)" "$last_rate" ">=" "$min_rate" " MB/s"
    measure "restore latest --target ($label)" "$data_bytes" "$B" restore latest --target "$work/restored-$i" "${tcommon[@]}"
    judge "restore throughput ($label)" "$last_rate" ">=" "$min_rate" " MB/s"
    rm -rf "$work/restored-$i"
  done
fi

# Sections other scripts write (scripts/mutation.sh) are kept as they are.
kept=$(sed -n '/^<!-- mutation:begin -->$/,/^<!-- mutation:end -->$/p' BENCHMARKS.md 2>/dev/null || true)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Speed is measured here, not asserted in tests."
  echo
  echo "- machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB memory, $(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- borg $(borg --version | cut -d' ' -f2), $(go version | cut -d' ' -f3); sections run: $sections"
  printf '%s\n' "${md[@]}"
  echo
  echo "## Targets, judged by this run"
  echo
  printf '%s\n' "${verdicts[@]}"
  if [ -n "$kept" ]; then echo; printf '%s\n' "$kept"; fi
} > BENCHMARKS.md
echo "wrote BENCHMARKS.md"
