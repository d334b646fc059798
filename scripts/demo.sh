#!/usr/bin/env bash
# The whole cht-backup job on a built-in sample, in one command: a throwaway CHT-like tree and a
# local repository in a temporary directory, then preflight, init, backup, archives, verify,
# status and restore, each step printed. No Docker needed: the TLS and credentials parts (which
# live in the CHT containers) are skipped, and the output says so. Nothing outside the temporary directory is
# touched, apart from installing borgbackup when it is missing.
#
#   bash scripts/demo.sh [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."

keep=no
[ "${1:-}" = "--keep" ] && keep=yes

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null 2>&1 || { echo "demo: Go is needed to build cht-backup (https://go.dev/doc/install)" >&2; exit 2; }

if ! command -v borg >/dev/null 2>&1; then
  step "installing borgbackup"
  if [ "$(id -u)" -ne 0 ]; then echo "demo: borg is missing; run as root so it can be installed, or apt-get install borgbackup" >&2; exit 2; fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq borgbackup >/dev/null
fi

work=$(mktemp -d /tmp/cht-backup-demo.XXXXXX)
cleanup() {
  if [ "$keep" = yes ]; then echo "demo: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

step "building cht-backup"
run go build -o "$work/cht-backup" .
B="$work/cht-backup"

step "a throwaway CHT server tree (made-up data and secrets)"
run go run ./scripts/sampletree -size 262144 "$work/cht"

# The passphrase lives in a 0600 file; borg gets it through a pipe, never argv.
install -m 0600 /dev/null "$work/passphrase"
head -c 24 /dev/urandom | base64 > "$work/passphrase"
cat > "$work/cht-backup.env" <<CONF
CHT_BACKUP_REPO=$work/repo
CHT_BACKUP_PASSPHRASE_FILE=$work/passphrase
CHT_BACKUP_CHT_DIR=$work/cht
CHT_BACKUP_STATE_DIR=$work/state
CHT_BACKUP_SKIP=tls,credentials
CONF
export CHT_BACKUP_CONFIG="$work/cht-backup.env"
echo "config file $CHT_BACKUP_CONFIG:"; sed 's/^/  /' "$CHT_BACKUP_CONFIG"

step "preflight: is everything in place?"
run "$B" preflight

step "init: an encrypted, append-only repository"
run "$B" init

step "backup (Docker is not used here: TLS and credentials are skipped, the output says so)"
run "$B" backup

step "archives"
run "$B" archives

step "verify: the restore drill (extract to scratch space, compare with the manifest)"
run "$B" verify latest

step "status: what ran and when (also a monitoring probe: exit 2 when the last backup is too old)"
run "$B" status

step "restore the archive into a directory"
run "$B" restore latest --target "$work/restored"
echo "restored tree:"; (cd "$work/restored" && find . -maxdepth 2 | sort | sed 's/^/  /')

step "compare the restored CouchDB data and .env with the originals"
run diff -r "$work/cht/couchdb" "$work/restored/couchdb"
run cmp "$work/cht/upgrade-service/.env" "$work/restored/upgrade-service/.env"
echo "identical."

step "done"
echo "The whole cycle ran: preflight, init, backup, archives, verify, status, restore."
