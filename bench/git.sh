#!/usr/bin/env bash
# Git source benchmark: oxkit's first build of a remote repository beside the floors `git fetch
# --depth 1` and `git clone`, and beside BuildKit (as embedded in Debian's `docker.io` dockerd
# 20.10, building from the same git URL), side by side in one run, loopback only.
#
#   bash bench/git.sh              # as root; defaults below, override with the env vars
#
# The repository is generated (deterministically: seeded, fixed dates, so the same commit every
# run) by a `git fast-import` stream: COMMITS commits on `main`, each adding a few files and
# editing a few small ones, whose last tree holds TREE_MB MB of varied files (text of several
# languages, executables, incompressible binaries from 1 KB to 4 MB, a symlink) and a
# Dockerfile `FROM scratch` / `COPY . /` for BuildKit. It is repacked as a server would have it
# and served by `git daemon` on 127.0.0.1 (git://127.0.0.1:PORT/repo.git).
#
# Scenarios (median of ROUNDS rounds, tools interleaved within a round):
#   first build  oxkit: `llbgen git --url URL#main | oxctl build --no-cache --output
#                type=local,dest=…` with an empty git cache (the contents of `<oxkitd root>/git`
#                are moved aside before each round: the same daemon, no bare repository);
#                shallow floor: `git init` + `git fetch --depth 1 URL refs/heads/main` +
#                `git checkout FETCH_HEAD`; clone: `git clone URL` (full history + checkout);
#                BuildKit: `docker build --no-cache --output type=local,dest=… URL#main` after
#                `docker builder prune -af` (its git cache is build cache), i.e. its git source
#                (shallow fetch) plus the repository's `COPY . /`.
#   warm build   the commit pinned by hash, already in the cache: nothing is fetched. oxkit:
#                `--no-cache` build of URL#COMMIT (checkout + export); floor: `git checkout` of
#                the commit from the shallow repository into an empty directory; BuildKit:
#                `--no-cache` build of URL#COMMIT.
# Every tool writes the 50 MB tree to a fresh directory; earlier output is moved aside, not
# deleted, between runs (`discard` in bench/peers.sh). Figures are printed, never asserted;
# BuildKit is left out (with a message) when it cannot run here.
set -euo pipefail
cd "$(dirname "$0")/.."

COMMITS=${COMMITS:-5000}
TREE_MB=${TREE_MB:-50}
ROUNDS=${ROUNDS:-3}
PEERS=${PEERS:-buildkit}                # buildkit, or none for oxkit and the floors only (empty means the default)
BENCH=bench/git.sh
source bench/peers.sh
for tool in git python3; do
  command -v "$tool" >/dev/null || { say "$tool is missing"; exit 1; }
done
bench_setup

# Every git command here: no user or system configuration, no questions.
git_() { GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0 git "$@"; }

# --- the repository ----------------------------------------------------------------------------
say "generating the repository ($COMMITS commits, $TREE_MB MB tree)"
mkdir -p "$T/srv"
git_ init -q --bare -b main "$T/srv/repo.git"
python3 - "$COMMITS" "$((TREE_MB * 1000000))" <<'PY' | git_ -C "$T/srv/repo.git" fast-import --quiet
import random, sys
commits, target = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(20261128)
out = sys.stdout.buffer
words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10)))
         for _ in range(3000)]
def text(n):
    b = bytearray()
    while len(b) < n:
        b += b" ".join(rng.choices(words, k=rng.randint(3, 14))) + b"\n"
    return bytes(b[:n])
# The files of the last tree: (path, kind, size), sizes log-uniform per kind, scaled to `target`.
plan = []
for i in range(max(8, target // 17000)):
    r, d = rng.random(), f"d{rng.randrange(40):02d}/s{rng.randrange(8)}"
    if r < 0.72:
        plan.append((f"{d}/f{i:05d}.{rng.choice(['rs', 'c', 'md', 'txt', 'go', 'py'])}",
                     "text", int(200 * 300 ** rng.random())))
    elif r < 0.75:
        plan.append((f"{d}/f{i:05d}.sh", "exec", int(100 * 100 ** rng.random())))
    else:
        plan.append((f"{d}/f{i:05d}.{rng.choice(['bin', 'dat', 'png'])}",
                     "bin", int(1000 * 200 ** rng.random())))
plan += [(f"assets/big{j}.bin", "bin", (1 + j) << 20) for j in range(4)]
scale = target / sum(s for _, _, s in plan)
plan = [(p, k, s if k == "exec" else max(1, int(s * scale))) for p, k, s in plan]
# A third of them in the first commit, the rest spread over the others.
first = len(plan) // 3
created = {c: [] for c in range(commits)}
created[0] = list(range(first))
for i in range(first, len(plan)):
    created[1 + (i - first) * (commits - 1) // (len(plan) - first)].append(i)
content, hot = {}, []
def data(b):
    out.write(b"data %d\n" % len(b)); out.write(b); out.write(b"\n")
def put(mode, path, b):
    out.write(b"M %s inline %s\n" % (mode, path)); data(b)
for c in range(commits):
    touched = list(created[c])
    for i in created[c]:
        _, kind, size = plan[i]
        if kind == "bin":
            content[i] = rng.randbytes(size)
        else:
            content[i] = (b"#!/bin/sh\n" if kind == "exec" else b"") + text(size)
            if size < 16384:
                hot.append(i)
    # Each later commit edits a few lines of three small files.
    for i in rng.sample(hot, min(3, len(hot))) if c else []:
        lines = content[i].split(b"\n")
        at = rng.randrange(len(lines))
        lines[at:at + rng.randint(1, 4)] = text(rng.randint(20, 300)).split(b"\n")
        content[i] = b"\n".join(lines)
        touched.append(i)
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer bench <bench@example.com> %d +0000\n" % (1700000000 + 60 * c))
    data(b"commit %d\n" % c)
    if c == 0:
        put(b"100644", b"Dockerfile", b"FROM scratch\nCOPY . /\n")
        put(b"120000", b"README.link", plan[0][0].encode())
    for i in dict.fromkeys(touched):
        put(b"100755" if plan[i][1] == "exec" else b"100644", plan[i][0].encode(), content[i])
    out.write(b"\n")
PY
git_ -C "$T/srv/repo.git" repack -a -d -f -q
COMMIT=$(git_ -C "$T/srv/repo.git" rev-parse main)
read -r NFILES TREE_BYTES < <(git_ -C "$T/srv/repo.git" ls-tree -r -l main | awk '{n++; s+=$4} END {print n, s}')
say "repository: $(git_ -C "$T/srv/repo.git" rev-list --count main) commits, main = $COMMIT," \
  "$NFILES files, $TREE_BYTES bytes; pack $(du -sm "$T/srv/repo.git" | cut -f1) MB"

# --- git daemon ----------------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# `git-daemon` itself (`git daemon` would leave it running when killed); bench_cleanup kills it
# with everything else whose command line names $T.
"$(git_ --exec-path)/git-daemon" --export-all --reuseaddr --listen=127.0.0.1 --port="$PORT" \
  --base-path="$T/srv" "$T/srv" </dev/null 2>/dev/null &
wait_for "git daemon" "git_ ls-remote git://127.0.0.1:$PORT/repo.git" /dev/null
URL=git://127.0.0.1:$PORT/repo.git
"$BIN/llbgen" git --url "$URL#main" >"$T/llb.main"
"$BIN/llbgen" git --url "$URL#$COMMIT" >"$T/llb.pinned"

# --- one run of each, timed (elapsed ns on stdout; the tree lands in $T/out) -------------------
fresh_out() { discard "$T/out" "$T/floor" "$T/idx"; }
timed() {  # name, command…: runs it with its output in $T/NAME.log
  local name=$1 t0 t1; shift
  fresh_out
  sync  # untimed: what the last run wrote is on disk, so no run waits behind another's writeback
  t0=$(now)
  "$@" >"$T/$name.log" 2>&1 || { say "$name failed:"; tail -20 "$T/$name.log" >&2; return 1; }
  t1=$(now)
  echo $((t1 - t0))
}
oxkit_build() {  # definition file
  "$BIN/oxctl" build --no-cache --progress plain --output "type=local,dest=$T/out" <"$1"
}
shallow() {
  git_ init -q "$T/floor" && git_ -C "$T/floor" fetch -q --depth 1 --no-tags "$URL" refs/heads/main \
    && git_ -C "$T/floor" -c advice.detachedHead=false checkout -q FETCH_HEAD
}
clone() { git_ clone -q "$URL" "$T/floor"; }
floor_warm() {  # the commit from the kept shallow repository into an empty directory
  mkdir "$T/out" && GIT_INDEX_FILE="$T/idx" git_ --git-dir="$T/shallow/.git" --work-tree="$T/out" \
    checkout -q "$COMMIT" -- .
}
buildkit_build() {  # ref
  docker_ build --no-cache --network=host --output "type=local,dest=$T/out" "$URL#$1"
}
want_buildkit() { [[ " ${AVAILABLE[*]} " == *" buildkit "* ]]; }

# Check once that every tool writes the whole tree (a build that silently did less would be fast).
check_tree() {  # name
  local n b
  read -r n b < <(cd "$T/out" && find . -path ./.git -prune -o \( -type f -o -type l \) -printf '%s\n' \
    | awk '{n++; s+=$1} END {print n+0, s+0}')
  # (A symlink's size is its target's length, in `find` as in `ls-tree -l`.)
  [ "$n" = "$NFILES" ] && [ "$b" = "$TREE_BYTES" ] \
    || say "$1 wrote $n files, $b bytes; the commit has $NFILES files, $TREE_BYTES bytes"
}
if want_buildkit; then
  if timed buildkit.check buildkit_build main >/dev/null; then
    check_tree BuildKit
  else
    say "BuildKit cannot build from a git URL here; leaving it out"
    AVAILABLE=(oxkit)
  fi
fi

declare -A COLD WARM
for r in $(seq "$ROUNDS"); do
  discard "$T/shallow"
  COLD[shallow]+="$(timed shallow shallow) "
  mv "$T/floor" "$T/shallow"
  COLD[clone]+="$(timed clone clone) "
  discard "$WORK/oxkit/git/"*                      # an empty git cache; the daemon keeps running
  COLD[oxkit]+="$(timed oxkit oxkit_build "$T/llb.main") "
  [ "$r" = 1 ] && check_tree oxkit
  grep -q "fetched $URL" "$T/oxkit.log" || say "oxkit's first build did not say it fetched: $(tail -3 "$T/oxkit.log")"
  if want_buildkit; then
    docker_ builder prune -af >/dev/null
    COLD[buildkit]+="$(timed buildkit buildkit_build main) "
  fi
  WARM[shallow]+="$(timed floor_warm floor_warm) "
  [ "$r" = 1 ] && check_tree "the floor's warm checkout"
  WARM[oxkit]+="$(timed oxkit.warm oxkit_build "$T/llb.pinned") "
  grep -q "in the git cache already" "$T/oxkit.warm.log" \
    || say "oxkit's warm build did not find the commit in its cache: $(tail -3 "$T/oxkit.warm.log")"
  want_buildkit && WARM[buildkit]+="$(timed buildkit.warm buildkit_build "$COMMIT") "
  say "round $r/$ROUNDS done"
done
fresh_out
# Where oxkit's time went in the last round (plain progress: each vertex's name and duration).
for log in oxkit oxkit.warm; do
  say "oxkit's progress ($log): $(grep -v ' fetching ' "$T/$log.log" | grep -E '^#[0-9]+ ' | tr '\n' ';')"
done

raw() { for v in $1; do printf '%s ' "$(ms "$v")"; done; }
for tool in oxkit shallow clone buildkit; do
  [ -n "${COLD[$tool]:-}" ] && say "rounds (ms) $tool: first: $(raw "${COLD[$tool]}")${WARM[$tool]:+| warm: $(raw "${WARM[$tool]}")}"
done
col() {  # assoc array name, tool
  local -n a=$1
  if [ -n "${a[$2]:-}" ]; then ms "$(med "${a[$2]}")"; else echo n/a; fi
}

echo
echo "git source benchmark: $COMMITS commits, $NFILES files, $TREE_BYTES bytes in the tree, git daemon on loopback; ROUNDS=$ROUNDS (medians)"
printf '%-12s %10s %17s %10s %12s %15s %15s\n' scenario oxkit_ms shallow_floor_ms clone_ms buildkit_ms oxkit/shallow oxkit/buildkit
for s in first warm; do
  if [ "$s" = first ]; then arr=COLD; else arr=WARM; fi
  o=$(col $arr oxkit) f=$(col $arr shallow) c=$(col $arr clone) b=$(col $arr buildkit)
  printf '%-12s %10s %17s %10s %12s %15s %15s\n' "$s build" "$o" "$f" "$c" "$b" "$(ratio "$o" "$f")" "$(ratio "$o" "$b")"
done
echo "(first: target oxkit/shallow <= 1.2; warm floor: git checkout of the commit from a local repository)"
