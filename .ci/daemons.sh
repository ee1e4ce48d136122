# Shell helpers (sourced, not run) that start oxkitd and a containerd loading it, both private
# to one temp directory, and tear them down on exit. Used by .ci/demo and bench/*.sh; the Rust
# integration tests have their own fixture (integration/src/fixture.rs).
#
#   source .ci/daemons.sh
#   start_daemons "$BIN_DIR"     # sets WORK, ADDR (containerd socket), OXKIT_HOST (build API);
#                                # ctr_ wraps ctr; OXKITD_LOG sets oxkitd's --log-level (warn)

start_daemons() {
  local bin=$1 repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  WORK=$(mktemp -d /tmp/oxkit.XXXXXX)
  trap stop_daemons EXIT
  sed -e "s#/var/lib/containerd#$WORK/containerd/root#g" \
      -e "s#/run/containerd#$WORK/containerd/state#g" \
      -e "s#/run/oxkit/snapshotter.sock#$WORK/oxkit.sock#g" "$repo/containerd-config.toml" > "$WORK/config.toml"
  ADDR=$WORK/containerd/state/containerd.sock
  export OXKIT_HOST=unix://$WORK/oxkitd.sock
  # oxkitd first: containerd's first calls to a proxy socket that is not there yet fail.
  "$bin/oxkitd" --root "$WORK/oxkit" --snapshotter-address "$WORK/oxkit.sock" \
    --address "$WORK/oxkitd.sock" --containerd-address "$ADDR" --log-level "${OXKITD_LOG:-warn}" 2>"$WORK/oxkitd.log" &
  OXKITD_PID=$!
  wait_for "oxkitd" "[ -S '$WORK/oxkit.sock' ]" "$WORK/oxkitd.log"
  containerd --config "$WORK/config.toml" --log-level warn 2>"$WORK/containerd.log" &
  CTRD_PID=$!
  wait_for "containerd" "ctr --address '$ADDR' version" "$WORK/containerd.log"
}

wait_for() {
  local what=$1 check=$2 log=$3
  for _ in $(seq 200); do
    if eval "$check" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "$what did not come up within 10 s; its log:" >&2
  cat "$log" >&2
  return 1
}

ctr_() { ctr --address "$ADDR" "$@"; }

stop_daemons() {
  set +e
  # oxkitd first: on its way out it removes what it keeps running in containerd (its shim keeper).
  [ -n "${OXKITD_PID:-}" ] && kill "$OXKITD_PID" 2>/dev/null && wait "$OXKITD_PID" 2>/dev/null
  [ -n "${CTRD_PID:-}" ] && kill "$CTRD_PID" 2>/dev/null && wait "$CTRD_PID" 2>/dev/null
  # Shims outlive containerd; stop those of our state dir, then unmount what they left.
  pkill -f -- "-address $WORK/" 2>/dev/null
  grep " $WORK" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$WORK"
}
