#!/usr/bin/env bash
# Build benchmark: oxkit beside BuildKit (as embedded in Debian's `docker.io` dockerd 20.10) and
# buildah, side by side in one run on the same machine, same busybox base, loopback only.
#
#   bash bench/build.sh            # as root; defaults below, override with the env vars
#
# Scenarios (median of ROUNDS rounds each, tools interleaved within a round):
#   per-step  cold build of STEPS `RUN true # step i` steps minus a cold build of 1 step,
#             divided by STEPS-1 (oxctl build --no-cache; docker build --no-cache;
#             buildah bud --no-cache --layers)
#   cached    a fully cached rebuild of the STEPS-step build (the second identical build)
# Every build exports its result as an image into the tool's own store: oxkit
# `--output type=image,name=…` (containerd, namespace buildkit), docker's image store (`-t`),
# buildah's store (`-t`). oxkit's definitions come from `llbgen llb`, the peers' Dockerfiles from
# `llbgen dockerfile` — the same `/bin/sh -c "true # step i"` commands.
#
# Peers are installed (apt-get install docker.io buildah) if missing and started here, with all
# their state in one temp dir: dockerd with its own --data-root/--exec-root/socket, no iptables,
# no bridge (builds use --network=host); buildah with its own --root/--runroot. The base image is
# made offline by `oxkit-mkimage` (Debian's busybox-static): imported into oxkit's containerd,
# `docker import`ed from its layer, `buildah pull oci-archive:`ed. A peer that cannot run here
# is reported and left out; the others are still measured. Figures are printed, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-5}
PEERS=${PEERS:-buildkit buildah}        # which peers to try
BUILDAH_DRIVER=${BUILDAH_DRIVER:-}      # overlay|vfs; empty: overlay, else vfs
BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-} # oci|chroot; empty: oci (runc), else chroot
export BUILDAH_ISOLATION
[ "$STEPS" -ge 2 ] || { echo "bench/build.sh: STEPS must be at least 2" >&2; exit 1; }
want_peer() { [[ " $PEERS " == *" $1 "* ]]; }

[ "$(id -u)" = 0 ] || { echo "bench/build.sh: must run as root" >&2; exit 1; }
for tool in containerd ctr runc; do
  command -v "$tool" >/dev/null || { echo "bench/build.sh: $tool is missing (bash .ci/setup installs it)" >&2; exit 1; }
done

# --- peers' packages -------------------------------------------------------------------------
# Debian's client is /usr/bin/docker (20.10, whose `docker build` speaks BuildKit by itself); a
# newer client elsewhere on PATH would want the buildx plugin, so the path is explicit.
DOCKER=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
missing=()
want_peer buildkit && { [ -x "$DOCKERD" ] && [ -x "$DOCKER" ] || missing+=(docker.io); }
want_peer buildah && { command -v buildah >/dev/null || missing+=(buildah); }
if [ ${#missing[@]} -gt 0 ]; then
  echo "bench/build.sh: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=l \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || echo "bench/build.sh: apt-get install ${missing[*]} failed; measuring what is there" >&2
fi

cargo build --release --locked -q -p oxkit-cmd -p oxkit-bench -p oxkit-integration \
  --bin oxkitd --bin oxctl --bin llbgen --bin oxkit-mkimage
BIN=$PWD/target/release

# --- oxkit: containerd + oxkitd private to $WORK (torn down by stop_daemons) ----------------
source .ci/daemons.sh
start_daemons "$BIN"
T=$(mktemp -d /tmp/oxbuild.XXXXXX)
DOCKERD_PID=
cleanup() {
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
trap cleanup EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.1f", ns/1e6}'; }

# --- build definitions -----------------------------------------------------------------------
IMAGE=docker.io/library/busybox:bench
for n in 1 "$STEPS"; do
  "$BIN/llbgen" llb --steps "$n" --image "$IMAGE" >"$T/llb.$n"
  mkdir -p "$T/ctx.$n"
  "$BIN/llbgen" dockerfile --steps "$n" --image busybox:bench >"$T/ctx.$n/Dockerfile"
done

# --- base image for everyone ----------------------------------------------------------------
"$BIN/oxkit-mkimage" --out "$T/busybox.tar" --name "$IMAGE" >/dev/null
ctr_ -n buildkit images import --snapshotter oxkit "$T/busybox.tar" >/dev/null
mkdir "$T/oci" && tar -C "$T/oci" -xf "$T/busybox.tar"
LAYER=$(python3 - "$T/oci" <<'PY'
import json, sys
root = sys.argv[1]
blob = lambda d: f"{root}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{root}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
assert len(manifest["layers"]) == 1, "busybox image should have one layer"
print(blob(manifest["layers"][0]["digest"]))
PY
)

AVAILABLE=(oxkit)

# --- BuildKit in dockerd ---------------------------------------------------------------------
docker_() { DOCKER_HOST="unix://$T/docker.sock" DOCKER_CONFIG="$T/docker-config" DOCKER_BUILDKIT=1 "$DOCKER" "$@"; }
if want_peer buildkit; then
  if [ -x "$DOCKERD" ] && [ -x "$DOCKER" ]; then
    mkdir -p "$T/docker-config" && echo '{}' >"$T/daemon.json"
    "$DOCKERD" --config-file "$T/daemon.json" --data-root "$T/docker/data" \
      --exec-root "$T/docker/exec" --pidfile "$T/docker/dockerd.pid" \
      -H "unix://$T/docker.sock" --iptables=false --ip-masq=false --bridge=none \
      --userland-proxy=false --log-level warn >"$T/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    if wait_for dockerd "docker_ version" "$T/dockerd.log" 2>"$T/dockerd.wait" \
       && docker_ import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change 'CMD ["sh"]' "$LAYER" busybox:bench >/dev/null \
       && docker_ build --network=host --no-cache -t bench-check "$T/ctx.1" >"$T/docker-check.log" 2>&1; then
      AVAILABLE+=(buildkit)
    else
      echo "bench/build.sh: BuildKit (dockerd) cannot run here; leaving it out. Its logs:" >&2
      cat "$T/dockerd.wait" "$T/docker-check.log" 2>/dev/null | tail -20 >&2
      tail -20 "$T/dockerd.log" >&2
    fi
  else
    echo "bench/build.sh: docker.io (dockerd, docker) is not installed; leaving BuildKit out" >&2
  fi
fi

# --- buildah ---------------------------------------------------------------------------------
buildah_() { buildah --root "$T/buildah/root" --runroot "$T/buildah/run" --storage-driver "$BUILDAH_DRIVER" "$@"; }
buildah_try() {  # sets up the store with driver $1 and isolation $2; a one-step build must pass
  BUILDAH_DRIVER=$1 BUILDAH_ISOLATION=$2
  buildah_ pull -q "oci-archive:$T/busybox.tar" >/dev/null \
    && buildah_ bud --pull=never --layers --no-cache --network host -t bench-check "$T/ctx.1" >"$T/buildah-check.log" 2>&1
}
buildah_reset() {
  buildah_ rm --all >/dev/null 2>&1; buildah_ umount --all >/dev/null 2>&1
  grep " $T/buildah" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l
  rm -rf "$T/buildah"
}
if want_peer buildah; then
  if command -v buildah >/dev/null; then
    ok= drivers=${BUILDAH_DRIVER:-overlay vfs} isolations=${BUILDAH_ISOLATION:-oci chroot}
    for driver in $drivers; do
      for iso in $isolations; do
        if buildah_try "$driver" "$iso"; then ok=1; break 2; fi
        echo "bench/build.sh: buildah with --storage-driver $driver, isolation $iso failed:" >&2
        tail -5 "$T/buildah-check.log" >&2 2>/dev/null
        buildah_reset
      done
    done
    if [ -n "$ok" ]; then
      BUILDAH_OK=1 AVAILABLE+=(buildah)
      echo "bench/build.sh: buildah $(buildah --version | awk '{print $3}') uses --storage-driver $BUILDAH_DRIVER, isolation $BUILDAH_ISOLATION, --layers" >&2
    else
      echo "bench/build.sh: buildah cannot run here; leaving it out" >&2
    fi
  else
    echo "bench/build.sh: buildah is not installed; leaving it out" >&2
  fi
fi

# --- one build, timed ------------------------------------------------------------------------
# build TOOL N cold|cached -> elapsed ns; the result is exported as image bench-N in the tool's store.
build() {
  local tool=$1 n=$2 mode=$3 nc=() t0 t1 log="$T/$1.log"
  [ "$mode" = cold ] && nc=(--no-cache)
  t0=$(now)
  case $tool in
    oxkit) "$BIN/oxctl" build "${nc[@]}" --progress plain \
             --output "type=image,name=docker.io/library/bench-$n:latest" <"$T/llb.$n" >"$log" 2>&1 ;;
    buildkit) docker_ build --network=host "${nc[@]}" -t "bench-$n" "$T/ctx.$n" >"$log" 2>&1 ;;
    buildah) buildah_ bud --pull=never --layers "${nc[@]}" --network host -t "bench-$n" "$T/ctx.$n" >"$log" 2>&1 ;;
  esac || { echo "bench/build.sh: $tool build ($n steps, $mode) failed:" >&2; tail -20 "$log" >&2; return 1; }
  t1=$(now)
  echo $((t1 - t0))
}

# Warm-up: each tool's first build pays for one-off work (base image unpack, executor setup).
for tool in "${AVAILABLE[@]}"; do build "$tool" 1 cold >/dev/null; done

declare -A COLD1 COLDN CACHED
for r in $(seq "$ROUNDS"); do
  for tool in "${AVAILABLE[@]}"; do
    COLD1[$tool]+="$(build "$tool" 1 cold) "
    COLDN[$tool]+="$(build "$tool" "$STEPS" cold) "
    build "$tool" "$STEPS" cached >/dev/null          # first identical build (fills any gap)
    CACHED[$tool]+="$(build "$tool" "$STEPS" cached) "
  done
  echo "bench/build.sh: round $r/$ROUNDS done" >&2
done
# Sanity (stderr): the last rebuild of each tool was cached, and the images are in the stores.
{
  echo "bench/build.sh: last oxkit rebuild: $(grep -ci cached "$T/oxkit.log") progress lines say CACHED"
  [ -n "${COLDN[buildkit]:-}" ] && echo "bench/build.sh: last BuildKit rebuild: $(grep -c CACHED "$T/buildkit.log") steps CACHED"
  [ -n "${COLDN[buildah]:-}" ] && echo "bench/build.sh: last buildah rebuild: $(grep -ci 'using cache' "$T/buildah.log") steps 'Using cache'"
  echo "bench/build.sh: images: oxkit (containerd, buildkit namespace):" \
    $(ctr_ -n buildkit images ls -q | grep bench- | tr '\n' ' ')
  [ -n "${COLDN[buildkit]:-}" ] && echo "bench/build.sh: images: docker:" $(docker_ images --format '{{.Repository}}:{{.Tag}}' | grep bench- | tr '\n' ' ')
  [ -n "${COLDN[buildah]:-}" ] && echo "bench/build.sh: images: buildah:" $(buildah_ images --format '{{.Name}}:{{.Tag}}' | grep bench- | tr '\n' ' ')
} >&2 || true

raw() { for v in $1; do printf '%s ' "$(ms "$v")"; done; }
for tool in "${AVAILABLE[@]}"; do
  echo "bench/build.sh: rounds (ms) $tool: cold 1 step: $(raw "${COLD1[$tool]}")| cold $STEPS: $(raw "${COLDN[$tool]}")| cached $STEPS: $(raw "${CACHED[$tool]}")" >&2
done

med() { tr ' ' '\n' <<<"$1" | grep . | median; }
declare -A PER_STEP CACHED_MS COLD1_MS COLDN_MS
for tool in oxkit buildkit buildah; do
  if [[ " ${AVAILABLE[*]} " == *" $tool "* ]]; then
    c1=$(med "${COLD1[$tool]}") cn=$(med "${COLDN[$tool]}") ca=$(med "${CACHED[$tool]}")
    COLD1_MS[$tool]=$(ms "$c1") COLDN_MS[$tool]=$(ms "$cn")
    PER_STEP[$tool]=$(awk -v a="$cn" -v b="$c1" -v s="$STEPS" 'BEGIN {printf "%.1f", (a-b)/(s-1)/1e6}')
    CACHED_MS[$tool]=$(ms "$ca")
  else
    COLD1_MS[$tool]=n/a COLDN_MS[$tool]=n/a PER_STEP[$tool]=n/a CACHED_MS[$tool]=n/a
  fi
done
ratio() { [[ $1 == n/a || $2 == n/a ]] && { echo n/a; return; }; awk -v a="$1" -v b="$2" 'BEGIN {if (b <= 0) print "n/a"; else printf "%.2f", a/b}'; }

echo
echo "build benchmark: STEPS=$STEPS ROUNDS=$ROUNDS (medians; ratios below 1.0 mean oxkit is faster)"
printf '%-22s %10s %12s %11s %15s %14s\n' scenario oxkit_ms buildkit_ms buildah_ms oxkit/buildkit oxkit/buildah
row() {  # name, assoc array name
  local -n a=$2
  printf '%-22s %10s %12s %11s %15s %14s\n' "$1" "${a[oxkit]}" "${a[buildkit]}" "${a[buildah]}" \
    "$(ratio "${a[oxkit]}" "${a[buildkit]}")" "$(ratio "${a[oxkit]}" "${a[buildah]}")"
}
row "per-step overhead" PER_STEP
row "cached rebuild ($STEPS)" CACHED_MS
row "cold build (1)" COLD1_MS
row "cold build ($STEPS)" COLDN_MS
