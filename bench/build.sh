#!/usr/bin/env bash
# Build benchmark: oxkit beside BuildKit (as embedded in Debian's `docker.io` dockerd 20.10) and
# buildah, side by side in one run on the same machine, same busybox base, loopback only.
#
#   bash bench/build.sh            # as root; defaults below, override with the env vars
#
# Scenarios (median of ROUNDS rounds each, tools interleaved within a round in serpentine order,
# see round_order in bench/peers.sh):
#   per-step  cold build of STEPS `RUN true # step i` steps minus a cold build of 1 step,
#             divided by STEPS-1 (oxctl build --no-cache; docker build --no-cache;
#             buildah bud --no-cache --layers)
#   cached    a fully cached rebuild of the STEPS-step build (the second identical build)
# Every build exports its result as an image into the tool's own store: oxkit
# `--output type=image,name=…` (containerd, namespace buildkit), docker's image store (`-t`),
# buildah's store (`-t`). oxkit's definitions come from `llbgen llb`, the peers' Dockerfiles from
# `llbgen dockerfile` — the same `/bin/sh -c "true # step i"` commands.
#
# Peers are installed if missing and started with all their state in one temp dir, the base image
# made offline (bench/peers.sh). A peer that cannot run here is reported and left out; the others
# are still measured. Figures are printed, never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-20}
ROUNDS=${ROUNDS:-5}
[ "$STEPS" -ge 2 ] || { echo "bench/build.sh: STEPS must be at least 2" >&2; exit 1; }
BENCH=bench/build.sh
source bench/peers.sh   # PEERS, BUILDAH_DRIVER, BUILDAH_ISOLATION: see there
bench_setup

# --- build definitions -----------------------------------------------------------------------
for n in 1 "$STEPS"; do
  "$BIN/llbgen" llb --steps "$n" --image "$IMAGE" >"$T/llb.$n"
  mkdir -p "$T/ctx.$n"
  "$BIN/llbgen" dockerfile --steps "$n" --image busybox:bench >"$T/ctx.$n/Dockerfile"
done

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
  for tool in $(round_order "$r"); do
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
