#!/usr/bin/env bash
# Build the Go example offline: Go stubs from protos/ with `buf generate` (buf.gen.yaml, Debian's
# protoc-gen-go and protoc-gen-go-grpc), then `go build` in GOPATH mode against Debian's Go
# packages in /usr/share/gocode (golang-google-grpc-dev, golang-google-protobuf-dev), so no Go
# module proxy is needed. Usage: clients/go/build.sh [OUT]   (default build/clients)
# Writes OUT/go/bin/vitrine-client; the generated stubs stay in OUT/go/src (never committed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="$(mkdir -p "${1:-$ROOT/build/clients}" && cd "${1:-$ROOT/build/clients}" && pwd)/go"
BUF="${BUF:-$ROOT/.venv/bin/buf}"
GOCODE="${GOCODE:-/usr/share/gocode}"

missing=()
[ -x "$BUF" ] || missing+=("buf ($BUF: make install)")
for tool in go protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null || missing+=("$tool (make tools)")
done
[ -d "$GOCODE/src/google.golang.org/grpc" ] || missing+=("$GOCODE/src/google.golang.org/grpc (make tools)")
# grpc-go's codec goes through github.com/golang/protobuf: its 1.3 package (the one apt picks for
# golang-google-grpc-dev by default) builds, then panics decoding today's generated messages.
[ -f "$GOCODE/src/github.com/golang/protobuf/proto/registry.go" ] ||
  missing+=("github.com/golang/protobuf 1.5 (golang-github-golang-protobuf-1-5-dev: make tools)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "clients/go/build.sh: missing ${missing[*]}" >&2
  exit 1
fi

# The go_package import path, github.com/vitrine-museum/vitrine/gen/go/vitrine/v1, inside GOPATH.
rm -rf "$OUT/src"
(cd "$ROOT" && "$BUF" generate --template buf.gen.yaml -o "$OUT/src/github.com/vitrine-museum/vitrine")
cd "$ROOT/clients/go"
GO111MODULE=off GOPATH="$OUT:$GOCODE" GOFLAGS= go build -o "$OUT/bin/vitrine-client" .
echo "built $OUT/bin/vitrine-client"
