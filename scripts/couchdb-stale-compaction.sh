#!/bin/bash
# What the real CouchDB does with compaction files read later than their live file: the case of
# an archive made while CouchDB began a compaction, restored without cht-backup's rule that drops
# such files (restore/compaction.go). The README's chunking section quotes its result.
#
#   bash scripts/couchdb-stale-compaction.sh            # as root, with dockerd and couchdb-real:3
#   CONTROL=1 bash scripts/couchdb-stale-compaction.sh  # the same without the compaction files
#
# 1. CouchDB A gets a database of 500 documents (q=1); a copy of its data dir is taken, A paused:
#    the live file as an archive holds it.
# 2. Every document is updated and 3000 more are added; A compacts on a twentieth of a CPU and is
#    paused once its .compact.data holds 1 MiB; its compaction files are added to the copy.
# 3. CouchDB B opens the copy and compacts the database. Printed: documents, revisions and the
#    file size before and after.
set -euo pipefail
image=couchdb-real:3
docker image inspect "$image" >/dev/null 2>&1 || { echo "no image $image: run ../shared/couchdb/load-image.sh" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 2; }
work=$(mktemp -d /var/tmp/stale-compaction.XXXXXX)
a=stale-compaction-a-$$ b=stale-compaction-b-$$
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
docs() { # FROM TO: new documents of 2000 random bytes each (nothing for snappy to compress)
  python3 -c '
import base64, json, os, sys
a, b = int(sys.argv[1]), int(sys.argv[2])
print(json.dumps({"docs": [{"_id": "d%06d" % i, "pad": base64.b64encode(os.urandom(2000)).decode()} for i in range(a, b)]}))' "$1" "$2" >"$work/docs.json"
}
info() {
  curl -sf "$1/medic" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("documents %d, update_seq %s, file %d bytes" % (d["doc_count"], d["update_seq"].split("-")[0], d["sizes"]["file"]))'
}

ua=$(start "$a" "$work/live")
curl -sf -X PUT "$ua/medic?q=1" >/dev/null
docs 0 500 && post "$ua/medic/_bulk_docs" "$work/docs.json"
echo "A when the live file is read:  $(info "$ua")"
docker pause "$a" >/dev/null && cp -a "$work/live/." "$work/copy/" && docker unpause "$a" >/dev/null

curl -sf "$ua/medic/_all_docs" | python3 -c '
import base64, json, os, sys
rows = json.load(sys.stdin)["rows"]
print(json.dumps({"docs": [{"_id": r["id"], "_rev": r["value"]["rev"], "updated": True, "pad": base64.b64encode(os.urandom(2000)).decode()} for r in rows]}))' >"$work/upd.json"
post "$ua/medic/_bulk_docs" "$work/upd.json"
for s in $(seq 500 500 3000); do docs "$s" $((s + 500)) && post "$ua/medic/_bulk_docs" "$work/docs.json"; done
echo "A when compaction begins:      $(info "$ua")"
docker update --cpus 0.05 "$a" >/dev/null
curl -sf -X POST -H 'Content-Type: application/json' "$ua/medic/_compact" >/dev/null
caught=""
for _ in $(seq 1200); do
  caught=$(find "$work/live/shards" -name '*.couch.compact.data' -size +1024k | head -1)
  [ -n "$caught" ] && break
  sleep 0.05
done
[ -n "$caught" ] || { echo "the compaction was not caught in progress" >&2; exit 1; }
docker update --cpus "$(nproc)" "$a" >/dev/null # the freezer can fail on a cgroup held that low
docker pause "$a" >/dev/null
if [ -z "${CONTROL:-}" ]; then
  for f in $(find "$work/live/shards" -name '*.couch.compact*'); do cp -a "$f" "$work/copy/${f#"$work/live/"}"; done
  echo "the copy holds, beside the live file: $(cd "$work/copy/shards" && find . -name '*.compact*' -printf '%P (%s bytes) ')"
else
  echo "CONTROL: the copy holds no compaction file"
fi
docker rm -f "$a" >/dev/null

ub=$(start "$b" "$work/copy")
echo "B opens the copy:              $(info "$ub")"
curl -sf -X POST -H 'Content-Type: application/json' "$ub/medic/_compact" >/dev/null
sleep 1
for _ in $(seq 240); do
  curl -sf "$ub/medic" | grep -q '"compact_running":false' && break
  sleep 0.5
done
echo "B after compacting the copy:   $(info "$ub")"
curl -sf "$ub/medic/_all_docs?include_docs=true" | python3 -c '
import json, sys
rows = json.load(sys.stdin)["rows"]
print("B serves %d documents, %d of them in the revision written after the live file was read" % (len(rows), sum(1 for r in rows if r["doc"].get("updated"))))'
