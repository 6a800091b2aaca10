#!/usr/bin/env bash
# Builds versitygw (an S3-compatible server with a posix backend) from the Go module proxy into a version-keyed cache.
# The artifact tests start it on 127.0.0.1; they skip with a pointer to this script when the binary is missing.
set -euo pipefail

VERSITYGW_VERSION="${VERSITYGW_VERSION:-v1.8.0}"
CACHE="${RUNYARD_CACHE:-$HOME/.cache/runyard}"
out="$CACHE/bin/versitygw-$VERSITYGW_VERSION"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
log() { printf '[build-s3-server] %s\n' "$*" >&2; }

if [ -x "$out/versitygw" ]; then
  log "versitygw $VERSITYGW_VERSION cached at $out/versitygw"
  exit 0
fi

# A throw-away module, as in hack/build-binaries.sh, so MVS resolves exactly versitygw's own requirements.
src="$CACHE/src/versitygw-$VERSITYGW_VERSION"
rm -rf "$src" && mkdir -p "$src"
cd "$src"
go mod init runyard.local/build >/dev/null 2>&1
log "resolving github.com/versity/versitygw@$VERSITYGW_VERSION"
go get -tool "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
mkdir -p "$out.tmp"
log "building versitygw"
go build -trimpath -ldflags "all=-s -w" -o "$out.tmp/versitygw" github.com/versity/versitygw/cmd/versitygw
rm -rf "$out" && mv "$out.tmp" "$out"
log "done: $out/versitygw"
