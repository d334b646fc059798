#!/usr/bin/env bash
# Builds the Debian package dist/cht-backup_<version>_<arch>.deb: the binary (with its version and
# commit), the man page and bash/zsh completion generated from the command definitions, the
# systemd unit templates, /etc/cht-backup (0700) with a commented sample config as a conffile,
# and the state dir. nfpm comes through the Go module proxy at a pinned version, so nothing
# beyond Go is needed.
#
#   bash scripts/package.sh              # version from main.go, commit from git
#   VERSION=1.2.3 bash scripts/package.sh
#   GOARCH=arm64 bash scripts/package.sh # another architecture
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
	export PATH="/usr/local/go/bin:$PATH"
fi
command -v go >/dev/null 2>&1 || { echo "package: Go is not installed; see the README's install section" >&2; exit 2; }

VERSION=${VERSION:-$(sed -n 's/^var version = "\(.*\)"$/\1/p' main.go)}
[[ -n $VERSION ]] || { echo "package: no version found in main.go; set VERSION" >&2; exit 2; }
COMMIT=${COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
ARCH=$(go env GOARCH)
# Debian orders 1.0~rc1 before 1.0; a Go-style pre-release 1.0-rc1 would sort after it.
DEB_VERSION=${VERSION//-/\~}
OUT=${OUT:-$ROOT/dist}

BUILD=$(mktemp -d)
trap 'rm -rf -- "$BUILD"' EXIT

echo "package: building cht-backup $VERSION (commit $COMMIT) for $ARCH" >&2
CGO_ENABLED=0 go build -trimpath \
	-ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
	-o "$BUILD/cht-backup" .

# Generated from the command definitions by the binary just built (cross builds use a host one).
gen="$BUILD/cht-backup"
if [[ $ARCH != "$(GOARCH= go env GOHOSTARCH)" ]]; then
	gen="$BUILD/cht-backup-host"
	GOARCH= go build -o "$gen" .
fi
"$gen" man | gzip -9n >"$BUILD/cht-backup.1.gz"
"$gen" completion bash >"$BUILD/cht-backup.bash"
"$gen" completion zsh >"$BUILD/_cht-backup"

mkdir -p "$OUT"
VERSION=$DEB_VERSION ARCH=$ARCH BUILD=$BUILD \
	go run "$NFPM" package --config scripts/deb/nfpm.yaml --packager deb --target "$OUT" >&2
deb="$OUT/cht-backup_${DEB_VERSION}_${ARCH}.deb"
[[ -f $deb ]] || { echo "package: nfpm did not write $deb" >&2; exit 2; }
echo "$deb"
