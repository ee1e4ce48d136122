# Shell helpers (sourced, not run) shared by bench/build.sh and bench/local.sh: oxkit's daemons
# (.ci/daemons.sh) and its peers, BuildKit (as embedded in Debian's `docker.io` dockerd 20.10)
# and buildah, all with their state in one temp dir, the same offline busybox base in every
# store, timing helpers, and one cleanup on exit.
#
#   BENCH=bench/x.sh; source bench/peers.sh
#   bench_setup                # as root; sets BIN, T (temp dir, removed on exit), IMAGE (the base,
#                              # busybox:bench in the peers' stores) and AVAILABLE (oxkit and each
#                              # peer that passed a one-step build); docker_ and buildah_ wrap the clients
#
# Peers are installed (apt-get install docker.io buildah) if missing: dockerd with its own
# --data-root/--exec-root/socket, no iptables, no bridge (builds use --network=host); buildah with
# its own --root/--runroot. The base image is made offline by `oxkit-mkimage` (Debian's
# busybox-static): imported into oxkit's containerd, `docker import`ed from its layer,
# `buildah pull oci-archive:`ed. A peer that cannot run here is reported and left out.
PEERS=${PEERS:-buildkit buildah}        # which peers to try; none (any word that is no peer) for none
BUILDAH_DRIVER=${BUILDAH_DRIVER:-}      # overlay|vfs; empty: overlay, else vfs
BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-} # oci|chroot; empty: oci (runc), else chroot
export BUILDAH_ISOLATION
# Debian's client is /usr/bin/docker (20.10, whose `docker build` speaks BuildKit by itself); a
# newer client elsewhere on PATH would want the buildx plugin, so the path is explicit.
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
IMAGE=docker.io/library/busybox:bench

say() { echo "$BENCH: $*" >&2; }
want_peer() { [[ " $PEERS " == *" $1 "* ]]; }
now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
med() { tr ' ' '\n' <<<"$1" | grep . | median; }   # median of a space-separated list
ms() { awk -v ns="$1" 'BEGIN {printf "%.1f", ns/1e6}'; }
# Moves files or directories out of the way into $T/trash (a rename; removed with $T on exit)
# instead of deleting them between timed runs: on an ext4 without a journal (this machine's
# root), creating files where many were just deleted scans the deleted inodes
# (`recently_deleted`), so a deletion right before a run would tax that run's file creation.
discard() { local p; mkdir -p "$T/trash"; for p in "$@"; do
  [ -e "$p" ] || [ -L "$p" ] || continue; mv "$p" "$(mktemp -u "$T/trash/XXXXXXXX")"; done; }
# The tools of round $1 in serpentine order: as listed in odd rounds, reversed in even ones, so
# no tool always runs right after the same one (the disk stays slow for seconds after a tool's
# large writes, even past the `sync`; buildah, listed last, writes the most).
round_order() { if (( $1 % 2 )); then echo "${AVAILABLE[@]}"; else printf '%s\n' "${AVAILABLE[@]}" | tac | xargs; fi; }
ratio() { [[ $1 == n/a || $2 == n/a ]] && { echo n/a; return; }; awk -v a="$1" -v b="$2" 'BEGIN {if (b <= 0) print "n/a"; else printf "%.2f", a/b}'; }
docker_() { DOCKER_HOST="unix://$T/docker.sock" DOCKER_CONFIG="$T/docker-config" DOCKER_BUILDKIT=1 "$DOCKER" "$@"; }
buildah_() { buildah --root "$T/buildah/root" --runroot "$T/buildah/run" --storage-driver "$BUILDAH_DRIVER" "$@"; }

bench_setup() {
  [ "$(id -u)" = 0 ] || { say "must run as root"; exit 1; }
  local tool missing=()
  for tool in containerd ctr runc; do
    command -v "$tool" >/dev/null || { say "$tool is missing (bash .ci/setup installs it)"; exit 1; }
  done
  want_peer buildkit && { [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] || missing+=(docker.io); }
  want_peer buildah && { command -v buildah >/dev/null || missing+=(buildah); }
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l \
      apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
      || say "apt-get install ${missing[*]} failed; measuring what is there"
  fi

  cargo build --release --locked -q -p oxkit-cmd -p oxkit-bench -p oxkit-integration \
    --bin oxkitd --bin oxctl --bin llbgen --bin oxkit-mkimage
  # Where cargo put them: CARGO_TARGET_DIR when set (relative to here, as cargo takes it).
  BIN=${CARGO_TARGET_DIR:-target}/release
  [[ $BIN == /* ]] || BIN=$PWD/$BIN
  # containerd + oxkitd private to $WORK (torn down by stop_daemons, from bench_cleanup).
  source .ci/daemons.sh
  start_daemons "$BIN"
  T=$(mktemp -d /tmp/oxbench.XXXXXX)
  DOCKERD_PID=
  trap bench_cleanup EXIT

  # The base image for everyone; a one-step build checks that each peer works.
  "$BIN/oxkit-mkimage" --out "$T/busybox.tar" --name "$IMAGE" >/dev/null
  ctr_ -n buildkit images import --snapshotter oxkit "$T/busybox.tar" >/dev/null
  mkdir "$T/oci" "$T/check" && tar -C "$T/oci" -xf "$T/busybox.tar"
  printf 'FROM busybox:bench\nRUN true\n' >"$T/check/Dockerfile"
  AVAILABLE=(oxkit)
  want_peer buildkit && start_buildkit
  want_peer buildah && start_buildah
  return 0
}

start_buildkit() {
  [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] || { say "docker.io (dockerd, docker) is not installed; leaving BuildKit out"; return; }
  local layer
  layer=$(python3 - "$T/oci" <<'PY'
import json, sys
root = sys.argv[1]
blob = lambda d: f"{root}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{root}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
assert len(manifest["layers"]) == 1, "busybox image should have one layer"
print(blob(manifest["layers"][0]["digest"]))
PY
  )
  mkdir -p "$T/docker-config" && echo '{}' >"$T/daemon.json"
  "$DOCKERD" --config-file "$T/daemon.json" --data-root "$T/docker/data" \
    --exec-root "$T/docker/exec" --pidfile "$T/docker/dockerd.pid" \
    -H "unix://$T/docker.sock" --iptables=false --ip-masq=false --bridge=none \
    --userland-proxy=false --log-level warn >"$T/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  if wait_for dockerd "docker_ version" "$T/dockerd.log" 2>"$T/dockerd.wait" \
     && docker_ import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
          --change 'CMD ["sh"]' "$layer" busybox:bench >/dev/null \
     && docker_ build --network=host --no-cache -t bench-check "$T/check" >"$T/docker-check.log" 2>&1; then
    AVAILABLE+=(buildkit)
  else
    say "BuildKit (dockerd) cannot run here; leaving it out. Its logs:"
    cat "$T/dockerd.wait" "$T/docker-check.log" 2>/dev/null | tail -20 >&2
    tail -20 "$T/dockerd.log" >&2
  fi
}

buildah_try() {  # sets up the store with driver $1 and isolation $2; a one-step build must pass
  BUILDAH_DRIVER=$1 BUILDAH_ISOLATION=$2
  buildah_ pull -q "oci-archive:$T/busybox.tar" >/dev/null \
    && buildah_ bud --pull=never --layers --no-cache --network host -t bench-check "$T/check" >"$T/buildah-check.log" 2>&1
}
buildah_reset() {
  buildah_ rm --all >/dev/null 2>&1; buildah_ umount --all >/dev/null 2>&1
  grep " $T/buildah" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$T/buildah"
}
start_buildah() {
  command -v buildah >/dev/null || { say "buildah is not installed; leaving it out"; return; }
  local ok= driver iso drivers=${BUILDAH_DRIVER:-overlay vfs} isolations=${BUILDAH_ISOLATION:-oci chroot}
  for driver in $drivers; do
    for iso in $isolations; do
      if buildah_try "$driver" "$iso"; then ok=1; break 2; fi
      say "buildah with --storage-driver $driver, isolation $iso failed:"
      tail -5 "$T/buildah-check.log" >&2 2>/dev/null
      buildah_reset
    done
  done
  if [ -n "$ok" ]; then
    BUILDAH_OK=1 AVAILABLE+=(buildah)
    say "buildah $(buildah --version | awk '{print $3}') uses --storage-driver $BUILDAH_DRIVER, isolation $BUILDAH_ISOLATION, --layers"
  else
    say "buildah cannot run here; leaving it out"
  fi
}

bench_cleanup() {
  set +e
  if [ -n "$DOCKERD_PID" ]; then
    kill "$DOCKERD_PID" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DOCKERD_PID" 2>/dev/null
  fi
  if [ -n "${BUILDAH_OK:-}" ]; then
    buildah_ rm --all >/dev/null 2>&1
    buildah_ umount --all >/dev/null 2>&1
  fi
  # Whatever still runs from our temp dir (dockerd's containerd, shims), by pid.
  local pids=() p c
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = $$ ] && continue
    c=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    [[ $c == *"$T/"* ]] && pids+=("${p#/proc/}")
  done
  [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null && sleep 0.5 && kill -9 "${pids[@]}" 2>/dev/null
  grep " $T/" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$T"
  stop_daemons
}
