#!/usr/bin/env bash
# Layer export benchmark: oxkit's layer writer (the image exporter's core) against the floors of
# the same work with standard tools, on the same tree in the same run:
#   gzip:  `tar -c | gzip -6`       vs  oxkit gzip level 6
#   zstd:  `tar -c | zstd -3 -T0`   vs  oxkit zstd level 3 (all cores)
# The tree is SIZE_MB of files (FILES of them) with text-like, compressible content.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-500}
FILES=${FILES:-500}
ROUNDS=${ROUNDS:-3}
command -v zstd >/dev/null || { echo "bench/export.sh: zstd is missing (apt-get install zstd)" >&2; exit 1; }

cargo build --release --locked -q -p oxkit-bench --bin layerbench
WORK=$(mktemp -d /tmp/oxexport.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/tree"
python3 - "$WORK/tree" "$SIZE_MB" "$FILES" <<'PY'
import os, random, sys
root, size_mb, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
words = [("%x" % random.getrandbits(random.randint(8, 40))) for _ in range(5000)]
per = size_mb * 1024 * 1024 // files
random.seed(1)
for i in range(files):
    d = os.path.join(root, "d%02d" % (i % 20))
    os.makedirs(d, exist_ok=True)
    text = " ".join(random.choice(words) for _ in range(per // 6)).encode()[:per]
    with open(os.path.join(d, "f%04d" % i), "wb") as f:
        f.write(text)
PY
sync

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
floor() {  # floor gzip|zstd -> ms
  local t0 t1
  t0=$(now)
  if [ "$1" = gzip ]; then tar -C "$WORK/tree" -cf - . | gzip -6 > "$WORK/floor.out"
  else tar -C "$WORK/tree" -cf - . | zstd -q -3 -T0 > "$WORK/floor.out"; fi
  t1=$(now)
  echo $(((t1 - t0) / 1000000))
}
oxkit() { "$PWD/target/release/layerbench" "$WORK/tree" "$1" "$WORK/oxkit.out" | sed -E 's/.*"ms":([0-9]+).*/\1/'; }

printf '%-6s %12s %12s %12s\n' codec floor_ms oxkit_ms oxkit/floor
for codec in gzip zstd; do
  f=$(for _ in $(seq "$ROUNDS"); do floor "$codec"; done | median)
  o=$(for _ in $(seq "$ROUNDS"); do oxkit "$codec"; done | median)
  printf '%-6s %12s %12s %12s\n' "$codec" "$f" "$o" "$(awk -v a="$f" -v b="$o" 'BEGIN {printf "%.2f", b/a}')"
done
