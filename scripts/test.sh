#!/usr/bin/env bash
# Runs every test of cht-backup: sets up the real components (borg, a test sshd on 127.0.0.1,
# dockerd) with scripts/test-env.sh, checks formatting and vet, then runs go test on all packages.
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
  echo "test: NOT ROOT: the end-to-end tests (real borg, sshd, dockerd) will be skipped; run with sudo" >&2
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "test: gofmt would change: $unformatted" >&2
  exit 1
fi
go vet ./...
go test -count=1 -timeout 40m "$@" ./...
