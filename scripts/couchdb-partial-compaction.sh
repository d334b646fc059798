#!/bin/bash
# Whether a partial compaction file, archived on one night, is stored again on the next: the
# README's chunking section quotes its result.
#
#   bash scripts/couchdb-partial-compaction.sh     # as root, with dockerd, borg and couchdb-real:3
#
# 1. CouchDB gets a database of 4000 documents (q=1), 2000 of them then updated; night 1 archives
#    the data dir (CouchDB paused while borg reads), with CouchDB's chunker params.
# 2. CouchDB compacts on a twentieth of a CPU and is paused once its .compact.data holds 6 MiB;
#    night 2 archives the data dir with that file.
# 3. The compaction ends and the compacted file replaces the database; night 3 archives it.
# Printed: what each night stored (borg's deduplicated size).
set -euo pipefail
image=couchdb-real:3
params=buzhash,14,18,16,4095 # borg.CouchDBChunkerParams
docker image inspect "$image" >/dev/null 2>&1 || { echo "no image $image: run ../shared/couchdb/load-image.sh" >&2; exit 2; }
command -v borg >/dev/null && command -v python3 >/dev/null || { echo "borg and python3 are needed" >&2; exit 2; }
work=$(mktemp -d /var/tmp/partial-compaction.XXXXXX)
c=partial-compaction-$$
cleanup() { docker rm -f "$c" >/dev/null 2>&1 || true; rm -rf -- "$work"; }
trap cleanup EXIT
mkdir -p "$work/live"

docker run -d --name "$c" -v "$work/live:/opt/couchdb/data" "$image" >/dev/null
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
u="http://admin:secret@$ip:5984"
for _ in $(seq 120); do curl -sf "$u/_up" >/dev/null && break; sleep 0.5; done
post() { curl -sf -X POST -H 'Content-Type: application/json' "$1" -d "@$2" >/dev/null; }
curl -sf -X PUT "$u/medic?q=1" >/dev/null
for s in $(seq 0 500 3500); do
  python3 -c '
import base64, json, os, sys
a = int(sys.argv[1])
print(json.dumps({"docs": [{"_id": "d%06d" % i, "pad": base64.b64encode(os.urandom(2000)).decode()} for i in range(a, a + 500)]}))' "$s" >"$work/docs.json"
  post "$u/medic/_bulk_docs" "$work/docs.json"
done
curl -sf "$u/medic/_all_docs?limit=2000" | python3 -c '
import base64, json, os, sys
rows = json.load(sys.stdin)["rows"]
print(json.dumps({"docs": [{"_id": r["id"], "_rev": r["value"]["rev"], "pad": base64.b64encode(os.urandom(2000)).decode()} for r in rows]}))' >"$work/upd.json"
post "$u/medic/_bulk_docs" "$work/upd.json"

export BORG_PASSPHRASE=experiment BORG_REPO="$work/repo"
borg init -e repokey-blake2 "$work/repo"
night() { # NAME: archives the data dir with CouchDB paused, prints what it stored
  docker pause "$c" >/dev/null 2>&1 || true
  borg create --json --chunker-params "$params" "::$1" "$work/live" |
    python3 -c 'import json, sys; print("%.2f MB" % (json.load(sys.stdin)["archive"]["stats"]["deduplicated_size"] / 1e6))'
  docker unpause "$c" >/dev/null
}
files() { find "$work/live/shards" -name 'medic*' -printf '%f %s bytes, '; }
echo "night 1: $(files)stored $(night n1)"

docker update --cpus 0.05 "$c" >/dev/null
curl -sf -X POST -H 'Content-Type: application/json' "$u/medic/_compact" >/dev/null
caught=""
for _ in $(seq 1200); do
  caught=$(find "$work/live/shards" -name '*.couch.compact.data' -size +6144k | head -1)
  [ -n "$caught" ] && break
  sleep 0.05
done
[ -n "$caught" ] || { echo "the compaction was not caught in progress" >&2; exit 1; }
docker update --cpus "$(nproc)" "$c" >/dev/null # the freezer can fail on a cgroup held that low
docker pause "$c" >/dev/null
echo "night 2: $(files)stored $(night n2)"

for _ in $(seq 240); do
  curl -sf "$u/medic" | grep -q '"compact_running":false' && break
  sleep 0.5
done
echo "night 3: $(files)stored $(night n3)"
