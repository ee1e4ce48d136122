#!/usr/bin/env bash
# Runs containerd's snapshotter conformance suite against oxkitd.
#
#   integration/conformance/run.sh [go test flags, e.g. -run 'TestOxkitd/overlay/Basic']
#
# Builds in GOPATH mode against Debian's golang-github-containerd-containerd-dev
# (/usr/share/gocode), so no module downloads are needed. Must run as root: the
# suite mounts what the snapshotter returns. OXKITD_BIN defaults to the debug
# build; OXKITD_LOG_LEVEL, if set, is passed to the daemon as --log-level.
# Exits with go test's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export OXKITD_BIN="${OXKITD_BIN:-$repo/target/debug/oxkitd}"

if [[ $(id -u) -ne 0 ]]; then
	echo "run.sh: the conformance suite mounts snapshots and must run as root" >&2
	exit 1
fi
if [[ ! -x $OXKITD_BIN ]]; then
	echo "run.sh: $OXKITD_BIN is missing; build it with 'cargo build -p oxkit-cmd'" >&2
	exit 1
fi

gopath="$(mktemp -d "${TMPDIR:-/tmp}/oxkit-conformance-gopath.XXXXXX")"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/oxkit"
ln -s "$here" "$gopath/src/oxkit/conformance"

export GO111MODULE=off
export GOPATH="$gopath:/usr/share/gocode"
export GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/oxkit-conformance-gocache}"

out="$gopath/go-test.out"
status=0
go test -v -count=1 -timeout 20m oxkit/conformance -test.root "$@" 2>&1 | tee "$out" || status=$?

# Count the suite's own tests (TestOxkitd/<mode>/<test>), not their parents.
count() { grep -cE "^ *--- $1: [^ /]+/[^ /]+/" "$out" || true; }
echo "conformance suite ran against $OXKITD_BIN"
echo "conformance: $(count PASS) passed, $(count FAIL) failed, $(count SKIP) skipped"
grep -E "^ *--- FAIL: [^ /]+/[^ /]+/" "$out" | sed 's/^ */  /' || true
exit "$status"
