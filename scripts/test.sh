#!/usr/bin/env bash
# Runs every test of cht-backup: sets up the real components (borg, a test sshd on 127.0.0.1,
# dockerd) with scripts/test-env.sh, checks formatting and vet, then runs go test on all packages
# through gotestsum and lists every skipped test at the end.
# As root on a fresh Debian/Ubuntu machine this is all it takes. Extra arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "test: Go is not installed (https://go.dev/doc/install)" >&2; exit 2; }

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/test-env.sh
else
  echo "test: NOT ROOT: the end-to-end tests (real borg, sshd, dockerd) will be skipped; run it as root, or with sudo" >&2
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
go vet -tags testhold . ./restore/ # the test holds, built into the end-to-end tests' binary only

# gotestsum runs go test and ends with a summary that lists every skipped and failed test with
# its output, so no skip is silent. The events also go to a file that skipreport reads: as root,
# where test-env.sh has installed every real component, a skip for any reason but a missing
# ../shared/couchdb is a failure.
events=$(mktemp /tmp/cht-backup-test-events.XXXXXX)
trap 'rm -f "$events"' EXIT
status=0
go run gotest.tools/gotestsum@v1.13.0 --format testname --jsonfile "$events" -- \
  -count=1 -timeout 60m "$@" ./... || status=$?
strict=()
[ "$(id -u)" -eq 0 ] && strict=(-strict)
go run ./scripts/skipreport "${strict[@]}" "$events" || { [ "$status" -ne 0 ] || status=1; }
exit "$status"
