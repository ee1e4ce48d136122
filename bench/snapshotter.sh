#!/usr/bin/env bash
# Snapshotter benchmark: oxkit (through containerd's proxy plugin) beside containerd's built-in
# overlayfs snapshotter, in the same containerd, in the same run. Prints each figure for both and
# the ratio oxkit/overlayfs (below 1.0 means oxkit is faster).
#
#   bash bench/snapshotter.sh            # defaults below; override with the env vars
#
# Phases:
#   chain   Prepare+Mounts+Commit of LAYERS snapshots, Stat of each, Remove of the chain
#           (through containerd's Snapshots API, i.e. the metadata layer plus the snapshotter)
#   import  `ctr images import` of an image with IMPORT_LAYERS layers x IMPORT_FILES files
#   run     `ctr run --rm IMAGE true` start-to-exit time
# PHASES="chain import run" picks phases.
set -euo pipefail
cd "$(dirname "$0")/.."

LAYERS=${LAYERS:-100}
ROUNDS=${ROUNDS:-6}
IMPORT_LAYERS=${IMPORT_LAYERS:-10}
IMPORT_FILES=${IMPORT_FILES:-2000}
IMPORT_FILE_SIZE=${IMPORT_FILE_SIZE:-1024}
RUNS=${RUNS:-10}
PHASES=${PHASES:-chain import run}
want() { [[ " $PHASES " == *" $1 "* ]]; }

[ "$(id -u)" = 0 ] || { echo "bench/snapshotter.sh: must run as root" >&2; exit 1; }
for tool in containerd ctr runc; do
  command -v "$tool" >/dev/null || { echo "bench/snapshotter.sh: $tool is missing (bash .ci/setup installs it)" >&2; exit 1; }
done

cargo build --release --locked -q -p oxkit-cmd -p oxkit-bench -p oxkit-integration --bin oxkitd --bin snapbench --bin oxkit-mkimage
BIN=$PWD/target/release

source .ci/daemons.sh
start_daemons "$BIN"

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.1f", ns/1e6}'; }

declare -A RESULT
report() { RESULT["$1/$2"]=$3; }

# --- chain ---------------------------------------------------------------------------------
want chain && for sn in overlayfs oxkit; do
  while read -r line; do
    phase=$(sed -E 's/.*"phase":"([^"]+)".*/\1/' <<<"$line")
    v=$(sed -E 's/.*"median_ms":([0-9.]+).*/\1/' <<<"$line")
    report "$phase" "$sn" "$v"
  done < <("$BIN/snapbench" --address "$ADDR" --snapshotter "$sn" --namespace "chain-$sn" --layers "$LAYERS" --rounds "$ROUNDS")
done

# --- import --------------------------------------------------------------------------------
"$BIN/oxkit-mkimage" --out "$WORK/many.tar" --name docker.io/library/many:bench \
  --layers "$IMPORT_LAYERS" --files-per-layer "$IMPORT_FILES" --file-size "$IMPORT_FILE_SIZE" >/dev/null
"$BIN/oxkit-mkimage" --out "$WORK/busybox.tar" --name docker.io/library/busybox:bench >/dev/null
# Rounds alternate which snapshotter goes first, and each import starts after `sync`, so neither
# pays for the other's write-back.
declare -A IMPORT_TIMES
want import && for r in $(seq "$ROUNDS"); do
  order="overlayfs oxkit"; [ $((r % 2)) = 0 ] && order="oxkit overlayfs"
  for sn in $order; do
    sync
    t0=$(now)
    ctr_ -n "import-$sn" images import --snapshotter "$sn" "$WORK/many.tar" >/dev/null
    t1=$(now)
    IMPORT_TIMES[$sn]+="$((t1 - t0)) "
    ctr_ -n "import-$sn" images rm --sync docker.io/library/many:bench >/dev/null
  done
done
want import && for sn in overlayfs oxkit; do
  report import "$sn" "$(ms "$(tr ' ' '\n' <<<"${IMPORT_TIMES[$sn]}" | grep . | median)")"
done

# --- run -----------------------------------------------------------------------------------
declare -A RUN_TIMES
want run && for sn in overlayfs oxkit; do
  ctr_ -n "run-$sn" images import --snapshotter "$sn" "$WORK/busybox.tar" >/dev/null
  ctr_ -n "run-$sn" run --rm --snapshotter "$sn" docker.io/library/busybox:bench warm true
done
want run && for i in $(seq "$RUNS"); do
  order="overlayfs oxkit"; [ $((i % 2)) = 0 ] && order="oxkit overlayfs"
  for sn in $order; do
    t0=$(now)
    ctr_ -n "run-$sn" run --rm --snapshotter "$sn" docker.io/library/busybox:bench "r$i" true
    t1=$(now)
    RUN_TIMES[$sn]+="$((t1 - t0)) "
  done
done
want run && for sn in overlayfs oxkit; do
  report run "$sn" "$(ms "$(tr ' ' '\n' <<<"${RUN_TIMES[$sn]}" | grep . | median)")"
done

echo
echo "snapshotter benchmark: median ms (chain: $LAYERS layers x $ROUNDS rounds; import: $IMPORT_LAYERS x $IMPORT_FILES files; run: $RUNS runs)"
printf '%-30s %12s %12s %14s\n' phase overlayfs oxkit oxkit/overlayfs
for phase in prepare_mounts_commit_chain stat_each remove_chain import run; do
  a=${RESULT[$phase/overlayfs]:-}; b=${RESULT[$phase/oxkit]:-}
  [ -n "$a" ] || continue
  printf '%-30s %12s %12s %14s\n' "$phase" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b/a}')"
done
