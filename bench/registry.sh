#!/usr/bin/env bash
# Registry benchmark: oxkit pulling a ~200 MB image from a registry into containerd (fetch +
# unpack into snapshots) beside `ctr images pull`, and oxkit pushing a ~200 MB image it built
# beside `skopeo copy` of the same blobs, side by side in one run, loopback only.
#
#   bash bench/registry.sh         # as root; ROUNDS (default 3), WARMUP (1), SIZE_MB (200), LAYERS (4)
#
# Two of Debian's `docker-registry` (the CNCF distribution registry) run on 127.0.0.1, plain
# HTTP, storage in the temp dir (as integration/src/registry.rs starts them): one holds the
# image to pull, the other receives the pushes and is emptied (stopped, its storage removed,
# started again) before every push, so no push finds a blob in the registry and nothing can be
# mounted from another repository. The images are made offline: `FROM busybox:bench` (bench/
# peers.sh) plus LAYERS layers of SIZE_MB/LAYERS MB of /dev/urandom each (incompressible), built
# by oxkit's Dockerfile frontend; layers gzip, as oxkit exports them by default.
#
# Scenarios (median of ROUNDS rounds, after WARMUP rounds that are not counted: in trial runs
# the first round was up to 1.5x slower than the others; in a round each tool runs in turn,
# oxkit first in odd rounds and second in even ones, each after a `sync`):
#   push  oxkit: a cached rebuild of the image it built, exported with `--output
#         type=image,name=127.0.0.1:PORT/oxkit-R:1,push=true` (its layers were compressed by the
#         first build, so the export finds them); the same cached rebuild exported without
#         push (`type=image`, a new name) is timed too, and push-only is the difference.
#         Peer: `skopeo copy oci:DIR docker://127.0.0.1:PORT/skopeo-R:1`, DIR being oxkit's
#         `type=oci` export of the same build (the same compressed blobs, laid out as files),
#         so skopeo uploads what oxkit does with no conversion. Both push to a fresh repository
#         of an empty registry. Neither mounts: oxkit asks each blob of the target repository,
#         tries a cross-repository mount only from repositories it pulled or pushed the blob
#         to (here the previous round's, gone from the emptied registry), and uploads; skopeo
#         would mount from a repository its blob-info cache remembers, which the emptied
#         registry no longer has (the registry's access log is checked for `mount=` and
#         reported).
#   pull  oxkit: `llbgen pull --image 127.0.0.1:PORT/big:1 | oxctl build --no-cache`, the image
#         source alone with resolve mode `pull`: the manifest resolved, the blobs fetched into
#         containerd's content store, the layers applied (containerd's diff service) into
#         oxkit snapshots; no exec, no export. Peer: `ctr -n regbench images pull --plain-http
#         127.0.0.1:PORT/big:1` into the same containerd (overlayfs snapshotter; fetch, then
#         unpack). Before each pull both namespaces are emptied (images, snapshots, blobs,
#         oxkit's build cache) and containerd's GC run, and the script checks that no blob of
#         the image is left on disk: every pull is cold.
#   cache oxkit on a fresh daemon (its own containerd and root, nothing but the base image)
#         building a two-stage Dockerfile with `--import-cache type=registry,ref=…` of the
#         cache that the bench's first daemon exported (`--export-cache …,mode=max`, once,
#         untimed), beside the same build cold on another fresh daemon. The build stage makes
#         CACHE_MB of random data and spends a few CPU seconds hashing; the result copies a
#         tenth of it and runs one step: the import fetches only the result's layers.
# Target (the issue's): pull within 1.1x `ctr images pull`. Push runs before pull, since emptying
# oxkit's namespace drops the build that the push scenario re-exports. Figures are printed,
# never asserted.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}                     # rounds run first and not counted
SIZE_MB=${SIZE_MB:-200}                 # the new layers of each image, in total
LAYERS=${LAYERS:-4}
CACHE_MB=${CACHE_MB:-100}               # the cache scenario's build stage output
PEERS=none                              # neither BuildKit nor buildah: the peers are ctr and skopeo
BENCH=bench/registry.sh
source bench/peers.sh
for tool in docker-registry skopeo curl python3; do
  command -v "$tool" >/dev/null || { say "$tool is missing (apt-get install docker-registry skopeo curl)"; exit 1; }
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)   # whatever else runs on the machine skews the figures
bench_setup
NS=regbench                             # ctr's namespace; oxkit's is buildkit
BLOBS=$WORK/containerd/root/io.containerd.content.v1.content/blobs

# --- the registries ------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
declare -A REG_PORT REG_PID
start_registry() {  # name: serves $T/registry-NAME/data on REG_PORT[NAME] (a free port the first time)
  local dir=$T/registry-$1
  REG_PORT[$1]=${REG_PORT[$1]:-$(free_port)}
  mkdir -p "$dir"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:${REG_PORT[$1]}
EOF
  docker-registry serve "$dir/config.yml" >>"$dir/registry.log" 2>&1 &
  REG_PID[$1]=$!
  wait_for "docker-registry $1" "curl -sf http://127.0.0.1:${REG_PORT[$1]}/v2/" "$dir/registry.log"
}
empty_registry() {  # name: stopped, its storage removed, started again on the same port
  kill "${REG_PID[$1]}"
  wait "${REG_PID[$1]}" 2>/dev/null || true   # its status is that of the kill
  rm -rf "$T/registry-$1/data"
  start_registry "$1"
  sync   # the last run's writes reach the disk now, not during the next timed one
}
start_registry src
start_registry dst
SRC=127.0.0.1:${REG_PORT[src]}
DST=127.0.0.1:${REG_PORT[dst]}

# --- the images ----------------------------------------------------------------------------------
LAYER_BYTES=$((SIZE_MB * 1000000 / LAYERS))
dockerfile() {  # dir, file prefix: FROM busybox:bench + LAYERS layers of random bytes
  mkdir -p "$1"
  { echo "FROM busybox:bench"
    for i in $(seq "$LAYERS"); do echo "RUN head -c $LAYER_BYTES /dev/urandom > /$2-$i"; done
  } >"$1/Dockerfile"
}
oxbuild() {  # context dir, output, extra oxctl flags…
  local dir=$1 output=$2; shift 2
  "$BIN/oxctl" build --progress plain --frontend dockerfile.v0 --local "context=$dir" \
    --local "dockerfile=$dir" --output "$output" "$@"
}
untimed() {  # name, command…: runs it with its output in $T/NAME.log, failing loudly
  local name=$1; shift
  "$@" >"$T/$name.log" 2>&1 || { say "$name failed:"; tail -20 "$T/$name.log" >&2; exit 1; }
}
# CPU seconds (user + system) so far of the daemons a run keeps busy: oxkitd, containerd, and
# the registry REG (src or dst) when set.
daemons_cpu() {
  local pid
  for pid in "$OXKITD_PID" "$CTRD_PID" ${REG:+"${REG_PID[$REG]}"}; do
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f ", ($14 + $15) / hz}' "/proc/$pid/stat"
  done
}
timed() {  # name, command…: like untimed; elapsed ns on stdout, CPU seconds in $T/NAME.cpu
  local name=$1 t0 t1 before after
  before=$(daemons_cpu)
  t0=$(now)
  untimed "$@"
  t1=$(now)
  after=$(daemons_cpu)
  # `times`' second line: what this subshell's children (the command, above all) used; into a
  # file, as a pipe would run it in a subshell of its own, one without children.
  times >"$T/$name.times"
  { tail -1 "$T/$name.times" | awk '{gsub(/[ms]/, " "); printf "client %.2f", $1 * 60 + $2 + $3 * 60 + $4}'
    awk -v b="$before" -v a="$after" 'BEGIN {
      split(b, x, " "); n = split(a, y, " "); split("oxkitd containerd registry", w, " ")
      for (i = 1; i <= n; i++) printf ", %s %.2f", w[i], y[i] - x[i] }'
    echo
  } >"$T/$name.cpu"
  echo $((t1 - t0))
}
layers_of() {  # OCI layout dir: its (only) manifest's layer digests, one a line
  python3 - "$1" <<'PY'
import json, sys
root = sys.argv[1]
blob = lambda d: f"{root}/blobs/{d.replace(':', '/')}"
index = json.load(open(f"{root}/index.json"))
for layer in json.load(open(blob(index["manifests"][0]["digest"])))["layers"]:
    print(layer["digest"])
PY
}
blob_bytes() { find "$1/blobs" -type f -printf '%s\n' | awk '{s += $1} END {print s}'; }

say "building the images: busybox + $LAYERS x $LAYER_BYTES random bytes, twice (one to pull, one to push)"
dockerfile "$T/pull-image" pull
dockerfile "$T/push-image" push
untimed build-pull oxbuild "$T/pull-image" "type=oci,dest=$T/pull.tar,name=$SRC/big:1"
untimed copy-in skopeo copy -q --dest-tls-verify=false "oci-archive:$T/pull.tar" "docker://$SRC/big:1"
mkdir "$T/pull-oci" && tar -C "$T/pull-oci" -xf "$T/pull.tar"
mapfile -t PULL_LAYERS < <(layers_of "$T/pull-oci")
PULL_BYTES=$(blob_bytes "$T/pull-oci")
rm -rf "$T/pull.tar" "$T/pull-oci"
untimed build-push oxbuild "$T/push-image" type=image,name=docker.io/library/push-src:1
untimed export-push oxbuild "$T/push-image" "type=oci,dest=$T/push.tar"
mkdir "$T/push-oci" && tar -C "$T/push-oci" -xf "$T/push.tar" && rm "$T/push.tar"
mapfile -t PUSH_LAYERS < <(layers_of "$T/push-oci")
PUSH_BYTES=$(blob_bytes "$T/push-oci")
say "image to pull: $SRC/big:1, ${#PULL_LAYERS[@]} layers, $PULL_BYTES bytes of blobs;" \
  "image to push: ${#PUSH_LAYERS[@]} layers, $PUSH_BYTES bytes of blobs"

# --- push ----------------------------------------------------------------------------------------
manifest_layers() {  # repository:tag in DST: its manifest's layer digests, one a line
  curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$DST/v2/${1%:*}/manifests/${1##*:}" \
    | python3 -c 'import json, sys; [print(l["digest"]) for l in json.load(sys.stdin)["layers"]]'
}
declare -A PUSH
push_oxkit() {  # round: export alone, then export + push to an empty registry
  PUSH[export]+="$(timed oxkit.export oxbuild "$T/push-image" "type=image,name=docker.io/library/push-src:r$1") "
  empty_registry dst
  PUSH[oxkit]+="$(timed oxkit.push oxbuild "$T/push-image" "type=image,name=$DST/oxkit-$1:1,push=true") "
  [ "$(manifest_layers "oxkit-$1:1")" = "$(printf '%s\n' "${PUSH_LAYERS[@]}")" ] \
    || say "oxkit pushed other layers than skopeo's source has: $(manifest_layers "oxkit-$1:1" | tr '\n' ' ')"
  grep -q 'CACHED' "$T/oxkit.push.log" || say "oxkit's push rebuild was not cached: $(tail -5 "$T/oxkit.push.log")"
}
push_skopeo() {  # round
  empty_registry dst
  PUSH[skopeo]+="$(timed skopeo.push skopeo copy --dest-tls-verify=false "oci:$T/push-oci" "docker://$DST/skopeo-$1:1") "
  [ "$(manifest_layers "skopeo-$1:1")" = "$(printf '%s\n' "${PUSH_LAYERS[@]}")" ] \
    || say "skopeo pushed other layers than it was given: $(manifest_layers "skopeo-$1:1" | tr '\n' ' ')"
}
REG=dst
for r in $(seq $((WARMUP + ROUNDS))); do
  # Odd rounds oxkit first, even rounds the peer first: what one run leaves (writeback, caches)
  # falls on both alike.
  if ((r % 2)); then push_oxkit "$r"; push_skopeo "$r"; else push_skopeo "$r"; push_oxkit "$r"; fi
  if ((r <= WARMUP)); then PUSH=(); say "push warm-up round $r/$WARMUP done (not counted)"
  else say "push round $((r - WARMUP))/$ROUNDS done"; fi
done
MOUNTS=$(grep -c 'mount=' "$T/registry-dst/registry.log" || true)
say "oxkit's push: $(grep -h 'pushed .*blobs uploaded' "$T/oxkit.push.log" | tail -1 | sed 's/^#[0-9]* [0-9.]* //')"
say "skopeo's push: $(grep -c '^Copying blob' "$T/skopeo.push.log") blobs copied;" \
  "cross-repository mount requests in the push registry's log, all rounds: $MOUNTS"

# --- pull ----------------------------------------------------------------------------------------
"$BIN/llbgen" pull --image "$SRC/big:1" >"$T/pull.llb"
empty_ns() {  # namespace, snapshotter: no images, no snapshots, no blobs
  local ns=$1 sn=$2 keys
  ctr_ -n "$ns" images ls -q | xargs -r ctr --address "$ADDR" -n "$ns" images rm >/dev/null
  # Leaves first (a parent cannot go before its children), until none is left.
  for _ in $(seq 20); do
    keys=$(ctr_ -n "$ns" snapshots --snapshotter "$sn" ls | python3 -c '
import re, sys
# KEY PARENT KIND, space-aligned; a key may hold a space ("extract-… sha256:…").
row = re.compile(r"^(.+?)\s+(?:(sha256:[0-9a-f]{64})\s+)?(Active|Committed|View)\s*$")
rows = [m.groups() for m in map(row.match, sys.stdin.read().splitlines()[1:]) if m]
parents = {parent for _, parent, _ in rows if parent}
print("\n".join(key for key, _, _ in rows if key not in parents))')
    [ -z "$keys" ] && break
    while IFS= read -r k; do ctr_ -n "$ns" snapshots --snapshotter "$sn" rm "$k" >/dev/null 2>&1 || true; done <<<"$keys"
  done
  ctr_ -n "$ns" content ls -q | xargs -r ctr --address "$ADDR" -n "$ns" content rm >/dev/null
}
gc() {  # a synchronous containerd GC: deleting a lease with --sync runs one
  ctr_ leases create --id regbench-gc >/dev/null
  ctr_ leases rm --sync regbench-gc >/dev/null
}
cold() {  # both namespaces emptied; fails if a blob of the image is still on disk
  "$BIN/oxctl" prune >/dev/null
  empty_ns buildkit oxkit
  empty_ns "$NS" overlayfs
  gc
  sync   # as in empty_registry
  local d left=0
  for d in "${PULL_LAYERS[@]}"; do [ -e "$BLOBS/${d/://}" ] && left=$((left + 1)); done
  [ "$left" = 0 ] || { say "$left layer blobs of the image are still in containerd's content store"; exit 1; }
  [ -z "$(ctr_ -n buildkit snapshots --snapshotter oxkit ls | tail -n +2)" ] \
    || say "oxkit snapshots left: $(ctr_ -n buildkit snapshots --snapshotter oxkit ls | tail -n +2 | tr '\n' ';')"
}
duration_ns() {  # a duration as "1.2s", "950.1ms" (Go's, BuildKit's progress) -> ns; n/a if empty
  awk -v d="$1" 'BEGIN {
    if (d == "") { print "n/a"; exit }
    f = 1e9; if (d ~ /ms$/) f = 1e6; else if (d ~ /(µs|us)$/) f = 1e3; else if (d ~ /ns$/) f = 1
    sub(/[a-zµ]+$/, "", d); printf "%.0f", d * f }'
}
declare -A PULL UNPACK
pull_oxkit() {
  cold
  PULL[oxkit]+="$(timed oxkit.pull "$BIN/oxctl" build --no-cache --progress plain <"$T/pull.llb") "
  grep -q "pulled $SRC/big:1: $((${#PULL_LAYERS[@]} + 1)) blobs fetched" "$T/oxkit.pull.log" \
    || say "oxkit's pull did not fetch every blob: $(grep -h 'pulled ' "$T/oxkit.pull.log")"
  OX_SNAPSHOTS=$(ctr_ -n buildkit snapshots --snapshotter oxkit ls | tail -n +2 | wc -l)
  # The image vertex's time is the unpack: the pull runs while its cache key is computed.
  UNPACK[oxkit]+="$(duration_ns "$(grep -aoE '^#[0-9]+ DONE [0-9.]+s' "$T/oxkit.pull.log" | tail -1 | awk '{print $3}')") "
}
pull_ctr() {
  cold
  PULL[ctr]+="$(timed ctr.pull ctr_ -n "$NS" images pull --plain-http "$SRC/big:1") "
  CTR_SNAPSHOTS=$(ctr_ -n "$NS" snapshots ls | tail -n +2 | wc -l)
  # ctr fetches everything, then unpacks and prints `done: <Go duration>`.
  UNPACK[ctr]+="$(duration_ns "$(grep -aoE '^done: [0-9.]+[mµn]?s' "$T/ctr.pull.log" | tail -1 | awk '{print $2}')") "
}
REG=src
for r in $(seq $((WARMUP + ROUNDS))); do
  if ((r % 2)); then pull_oxkit; pull_ctr; else pull_ctr; pull_oxkit; fi
  if ((r <= WARMUP)); then PULL=() UNPACK=(); say "pull warm-up round $r/$WARMUP done (not counted)"
  else say "pull round $((r - WARMUP))/$ROUNDS done"; fi
done
say "snapshots after the last pull: oxkit's $OX_SNAPSHOTS, ctr's $CTR_SNAPSHOTS" \
  "(the image has ${#PULL_LAYERS[@]} layers)"
say "oxkit's last pull (plain progress; the fetch comes before the vertex starts, DONE times the unpack): $(tr '\n' ';' <"$T/oxkit.pull.log")"
say "ctr's last pull (fetch, then unpack): $(grep -aE '^(elapsed|unpacking|done)' "$T/ctr.pull.log" | tail -3 | tr -s ' ' | tr '\n' ';')"

# --- cache: a cached rebuild on another daemon -----------------------------------------------------
mkdir -p "$T/cache-app"
# The pulls emptied the namespace: the base comes back first.
ctr_ -n buildkit images import --snapshotter oxkit "$T/busybox.tar" >/dev/null
cat >"$T/cache-app/Dockerfile" <<EOF
FROM busybox:bench AS build
RUN head -c ${CACHE_MB}000000 /dev/urandom > /data && head -c 1000000000 /dev/zero | sha256sum > /sum
RUN head -c ${CACHE_MB}00000 /data > /artifact && cat /sum >> /artifact
FROM busybox:bench
COPY --from=build /artifact /app/artifact
COPY note.txt /app/note.txt
RUN sha256sum /app/artifact /app/note.txt > /app/sums
EOF
echo "a file of the context" >"$T/cache-app/note.txt"
CACHE_REF=$SRC/cache:bench
untimed cache-export oxbuild "$T/cache-app" type=image,name=docker.io/library/cache-src:1 \
  --export-cache "type=registry,ref=$CACHE_REF,mode=max"
# fresh FN ARGS…: runs FN on an oxkitd + containerd of its own (the base image imported), as the
# globals start_daemons sets; the bench's own daemons are put back after.
fresh() {
  local work=$WORK addr=$ADDR host=$OXKIT_HOST ox=$OXKITD_PID ct=$CTRD_PID rc=0
  start_daemons "$BIN"
  ctr_ -n buildkit images import --snapshotter oxkit "$T/busybox.tar" >/dev/null
  "$@" || rc=$?
  stop_daemons
  WORK=$work ADDR=$addr OXKIT_HOST=$host OXKITD_PID=$ox CTRD_PID=$ct
  trap bench_cleanup EXIT   # start_daemons set its own
  return $rc
}
declare -A CACHE
cache_import() {
  CACHE[import]+="$(timed cache.import oxbuild "$T/cache-app" type=image,name=docker.io/library/cache:1 \
    --import-cache "type=registry,ref=$CACHE_REF") "
  # Every RUN and COPY of the import is CACHED.
  local n
  grep -aE '^#[0-9]+ \[.*(RUN|COPY)' "$T/cache.import.log" | cut -d' ' -f1 | while read -r n; do
    grep -aq "^$n CACHED" "$T/cache.import.log" || say "step $n ran despite the import"
  done
}
cache_cold() {
  CACHE[cold]+="$(timed cache.cold oxbuild "$T/cache-app" type=image,name=docker.io/library/cache:1) "
}
REG=src
for r in $(seq $((WARMUP + ROUNDS))); do
  if ((r % 2)); then fresh cache_import; fresh cache_cold; else fresh cache_cold; fresh cache_import; fi
  if ((r <= WARMUP)); then CACHE=(); say "cache warm-up round $r/$WARMUP done (not counted)"
  else say "cache round $((r - WARMUP))/$ROUNDS done"; fi
done
say "the last import's fetches: $(grep -a 'imported layer' "$T/cache.import.log" | sed 's/^#[0-9]* [0-9.]* //' | tr '\n' ';')"

# --- the figures ---------------------------------------------------------------------------------
say "load average (1, 5, 15 min) when the bench started: $LOAD_BEFORE; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
raw() { for v in $1; do printf '%s ' "$(ms "$v")"; done; }
for name in oxkit.pull ctr.pull oxkit.push skopeo.push cache.import cache.cold; do
  say "CPU seconds in the last $name: $(cat "$T/$name.cpu")"
done
say "rounds (ms) pull: oxkit $(raw "${PULL[oxkit]}")| ctr $(raw "${PULL[ctr]}")"
say "rounds (ms) unpack part of the pull: oxkit $(raw "${UNPACK[oxkit]}")| ctr $(raw "${UNPACK[ctr]}")"
say "rounds (ms) cache: import on a fresh daemon $(raw "${CACHE[import]}")| cold on a fresh daemon $(raw "${CACHE[cold]}")"
say "rounds (ms) push: oxkit $(raw "${PUSH[oxkit]}")| oxkit export alone $(raw "${PUSH[export]}")| skopeo $(raw "${PUSH[skopeo]}")"
PULL_OX=$(ms "$(med "${PULL[oxkit]}")") PULL_CTR=$(ms "$(med "${PULL[ctr]}")")
# The rest of each pull (start, resolve, fetch into the content store), round by round.
rest() { paste -d' ' <(tr ' ' '\n' <<<"${PULL[$1]}" | grep .) <(tr ' ' '\n' <<<"${UNPACK[$1]}" | grep .) \
  | awk '$2 == "n/a" {next} {printf "%.0f\n", $1 - $2}' | median; }
med_or_na() { local v; v=$(rest "$1"); if [ -n "$v" ]; then ms "$v"; else echo n/a; fi; }
unpack_med() { if [[ " ${UNPACK[$1]} " == *n/a* ]]; then echo n/a; else ms "$(med "${UNPACK[$1]}")"; fi; }
UNPACK_OX=$(unpack_med oxkit) UNPACK_CTR=$(unpack_med ctr)
FETCH_OX=$(med_or_na oxkit) FETCH_CTR=$(med_or_na ctr)
PUSH_OX=$(ms "$(med "${PUSH[oxkit]}")") PUSH_EXPORT=$(ms "$(med "${PUSH[export]}")")
PUSH_SK=$(ms "$(med "${PUSH[skopeo]}")")
CACHE_IMPORT=$(ms "$(med "${CACHE[import]}")") CACHE_COLD=$(ms "$(med "${CACHE[cold]}")")
PUSH_ONLY=$(awk -v a="$PUSH_OX" -v b="$PUSH_EXPORT" 'BEGIN {printf "%.1f", a - b}')

echo
echo "registry benchmark: docker-registry on loopback, images of busybox + $LAYERS x $((LAYER_BYTES / 1000000)) MB random" \
  "layers (pull $PULL_BYTES bytes of blobs, push $PUSH_BYTES), ROUNDS=$ROUNDS after $WARMUP warm-up (medians; ratios below 1.0 mean oxkit is faster)"
row() { printf '%-26s %10s %10s %7s  %-28s %s\n' "$@"; }
row scenario oxkit_ms peer_ms ratio peer target
row "pull (fetch + unpack)" "$PULL_OX" "$PULL_CTR" "$(ratio "$PULL_OX" "$PULL_CTR")" "ctr images pull (overlayfs)" "<= 1.1x"
row "  rest: start, fetch" "$FETCH_OX" "$FETCH_CTR" "$(ratio "$FETCH_OX" "$FETCH_CTR")" "ctr (total - unpack)" ""
row "  unpack" "$UNPACK_OX" "$UNPACK_CTR" "$(ratio "$UNPACK_OX" "$UNPACK_CTR")" "ctr (its 'done:' time)" ""
row "push (cached build + push)" "$PUSH_OX" "$PUSH_SK" "$(ratio "$PUSH_OX" "$PUSH_SK")" "skopeo copy oci:DIR" ""
row "push alone (minus export)" "$PUSH_ONLY" "$PUSH_SK" "$(ratio "$PUSH_ONLY" "$PUSH_SK")" "skopeo copy oci:DIR" ""
row "cache import, other daemon" "$CACHE_IMPORT" "$CACHE_COLD" "$(ratio "$CACHE_IMPORT" "$CACHE_COLD")" "the same build cold" ""
echo "(the cached build with a type=image export and no push took $PUSH_EXPORT ms; no push mounted" \
  "a blob: the registry is emptied before each push, so oxkit's mount requests (from the previous" \
  "round's repository) fail and it uploads; mount requests seen: $MOUNTS)"
