#!/bin/bash
# What the real CouchDB's compaction files cost a backup and a restore. The README's chunking
# section quotes both results. As root, with dockerd, borg and the image couchdb-real:3:
#
#   bash scripts/couchdb-compaction-files.sh stale [control]
#       Compaction files read later than their live file, as an archive holds them when CouchDB
#       began a compaction while borg read, restored without cht-backup's rule that drops them
#       (restore/compaction.go). CouchDB A gets 500 documents (q=1), and a copy of its data dir
#       is taken; every document is then updated, 3000 more are added, and A's compaction is
#       caught in progress; its files go into the copy ("control": they do not). CouchDB B opens
#       the copy and compacts it. Printed: documents, revisions and file size before and after.
#
#   bash scripts/couchdb-compaction-files.sh partial
#       Whether a partial compaction file archived one night is stored again the next. 4000
#       documents, 2000 of them then updated; night 1 archives the data dir; night 2 archives it
#       with a compaction caught in progress (6 MiB); night 3 archives the compacted database.
#       Printed: what each night stored (borg's deduplicated size, CouchDB's chunker params).
set -euo pipefail
image=couchdb-real:3
params=buzhash,14,18,16,4095 # borg.CouchDBChunkerParams
case "${1:-}" in
stale | partial) ;;
*) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
docker image inspect "$image" >/dev/null 2>&1 || { echo "no image $image: run ../shared/couchdb/load-image.sh" >&2; exit 2; }
command -v borg >/dev/null && command -v python3 >/dev/null || { echo "borg and python3 are needed" >&2; exit 2; }
work=$(mktemp -d /var/tmp/couchdb-compaction-files.XXXXXX)
a=compaction-files-a-$$ b=compaction-files-b-$$
cleanup() { docker rm -f "$a" "$b" >/dev/null 2>&1 || true; rm -rf -- "$work"; }
trap cleanup EXIT
mkdir -p "$work/live" "$work/copy"

start() { # NAME DIR: starts CouchDB on DIR, prints its URL once it is up
  docker run -d --name "$1" -v "$2:/opt/couchdb/data" "$image" >/dev/null
  local ip
  ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1")
  for _ in $(seq 120); do curl -sf "http://$ip:5984/_up" >/dev/null && break; sleep 0.5; done
  echo "http://admin:secret@$ip:5984"
}
post() { curl -sf -X POST -H 'Content-Type: application/json' "$1" -d "@$2" >/dev/null; }
add() { # URL FROM TO: documents FROM..TO-1 of 2000 random bytes each (nothing for snappy to compress)
  python3 -c '
import base64, json, os, sys
a, b = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"docs": [{"_id": "d%06d" % i, "pad": base64.b64encode(os.urandom(2000)).decode()} for i in range(a, b)]}))' "$2" "$3" >"$work/docs.json"
  post "$1/medic/_bulk_docs" "$work/docs.json"
}
update() { # URL [LIMIT]: a new revision of the first LIMIT documents (all when none)
  curl -sf "$1/medic/_all_docs${2:+?limit=$2}" | python3 -c '
import base64, json, os, sys
rows = json.load(sys.stdin)["rows"]
print(json.dumps({"docs": [{"_id": r["id"], "_rev": r["value"]["rev"], "updated": True, "pad": base64.b64encode(os.urandom(2000)).decode()} for r in rows]}))' >"$work/upd.json"
  post "$1/medic/_bulk_docs" "$work/upd.json"
}
info() {
  curl -sf "$1/medic" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("documents %d, update_seq %s, file %d bytes" % (d["doc_count"], d["update_seq"].split("-")[0], d["sizes"]["file"]))'
}
compacted() { # URL: waits for the compaction of medic to end
  for _ in $(seq 240); do
    curl -sf "$1/medic" | grep -q '"compact_running":false' && return
    sleep 0.5
  done
}
catch_compaction() { # NAME URL KIB: compacts medic on a twentieth of a CPU, pauses CouchDB once its .compact.data holds KIB
  docker update --cpus 0.05 "$1" >/dev/null
  curl -sf -X POST -H 'Content-Type: application/json' "$2/medic/_compact" >/dev/null
  local caught=""
  for _ in $(seq 1200); do
    caught=$(find "$work/live/shards" -name '*.couch.compact.data' -size +"$3"k | head -1)
    [ -n "$caught" ] && break
    sleep 0.05
  done
  [ -n "$caught" ] || { echo "the compaction was not caught in progress" >&2; exit 1; }
  # The freezer cannot stop tasks held that low: the limit is lifted first, and a pause that
  # finds them still throttled is tried again.
  docker update --cpus "$(nproc)" "$1" >/dev/null
  for _ in $(seq 20); do docker pause "$1" >/dev/null 2>&1 && break; sleep 0.1; done
  [ "$(docker inspect -f '{{.State.Paused}}' "$1")" = true ] || { echo "CouchDB could not be paused" >&2; exit 1; }
}

stale() {
  local ua ub
  ua=$(start "$a" "$work/live")
  curl -sf -X PUT "$ua/medic?q=1" >/dev/null
  add "$ua" 0 500
  echo "A when the live file is read:  $(info "$ua")"
  docker pause "$a" >/dev/null && cp -a "$work/live/." "$work/copy/" && docker unpause "$a" >/dev/null
  update "$ua"
  for s in $(seq 500 500 3000); do add "$ua" "$s" $((s + 500)); done
  echo "A when compaction begins:      $(info "$ua")"
  catch_compaction "$a" "$ua" 1024
  if [ "${1:-}" != control ]; then
    for f in $(find "$work/live/shards" -name '*.couch.compact*'); do cp -a "$f" "$work/copy/${f#"$work/live/"}"; done
    echo "the copy holds, beside the live file: $(cd "$work/copy/shards" && find . -name '*.compact*' -printf '%P (%s bytes) ')"
  else
    echo "control: the copy holds no compaction file"
  fi
  docker rm -f "$a" >/dev/null
  ub=$(start "$b" "$work/copy")
  echo "B opens the copy:              $(info "$ub")"
  curl -sf -X POST -H 'Content-Type: application/json' "$ub/medic/_compact" >/dev/null
  sleep 1
  compacted "$ub"
  echo "B after compacting the copy:   $(info "$ub")"
  curl -sf "$ub/medic/_all_docs?include_docs=true" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
print("B serves %d documents, %d of them in the revision written after the live file was read" % (len(rows), sum(1 for r in rows if r["doc"].get("updated"))))'
}

partial() {
  local u
  u=$(start "$a" "$work/live")
  curl -sf -X PUT "$u/medic?q=1" >/dev/null
  for s in $(seq 0 500 3500); do add "$u" "$s" $((s + 500)); done
  update "$u" 2000
  export BORG_PASSPHRASE=experiment BORG_REPO="$work/repo"
  borg init -e repokey-blake2 "$work/repo"
  night() { # NAME: archives the data dir with CouchDB paused, prints what it stored
    docker pause "$a" >/dev/null 2>&1 || true
    borg create --json --chunker-params "$params" "::$1" "$work/live" |
      python3 -c 'import json, sys; print("%.2f MB" % (json.load(sys.stdin)["archive"]["stats"]["deduplicated_size"] / 1e6))'
    docker unpause "$a" >/dev/null
  }
  files() { find "$work/live/shards" -name 'medic*' -printf '%f %s bytes, '; }
  echo "night 1: $(files)stored $(night n1)"
  catch_compaction "$a" "$u" 6144
  echo "night 2: $(files)stored $(night n2)"
  compacted "$u"
  echo "night 3: $(files)stored $(night n3)"
}

"$@"
