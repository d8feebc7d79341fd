#!/usr/bin/env bash
# hook-overhead.sh: what the nixcache post-build hook costs a build.
#
#   sudo bash examples/bench/hook-overhead.sh [N_CALLS]
#
# 1. Per-call overhead in queue mode: runs the hook N_CALLS times (default
#    200) as Nix would (OUT_PATHS set, NIXCACHE_QUEUE set) and compares with
#    running /bin/true the same way (the cost of any process).
# 2. A build of 31 small derivations (fresh each time, with references)
#    without a hook, with /bin/true as the hook (what Nix itself pays to run
#    any hook), with the hook in queue mode, and with the hook in sync mode
#    uploading to a file:// cache (zstd). Median of ROUNDS (default 5). Targets: queue-mode hook
#    < 10 ms per call; queue-mode build within 1.3x of no hook.
# Needs root (local Nix store), Nix and Go. Leaves nothing but $WORK.
# BENCH_BIN=DIR uses the post-build-hook and upload-daemon binaries in DIR
# instead of building them (to compare two versions, run the script once
# per version, alternating, on an otherwise idle machine).
set -euo pipefail
N=${1:-200}
ROUNDS=${ROUNDS:-5}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/nixcache-bench.XXXXXX)
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$(cd "$BENCH_BIN" && pwd)
else
  BIN=$WORK/bin
  mkdir -p "$BIN"
  (cd "$REPO" && go build -o "$BIN" ./examples/post-build-hook ./examples/upload-daemon)
fi
nix-store --generate-binary-cache-key bench-1 "$WORK/key.sec" "$WORK/key.pub"

ms() { echo "scale=2; $1 / 1000000" | bc; }
now() { date +%s%N; }

# --- 1. per-call overhead ---------------------------------------------------
echo "bench $RANDOM $(now)" >"$WORK/f"
P=$(nix-store --add "$WORK/f")
t0=$(now); for _ in $(seq "$N"); do OUT_PATHS=$P /bin/true; done; t1=$(now)
for _ in $(seq "$N"); do OUT_PATHS=$P NIXCACHE_QUEUE=$WORK/q1 "$BIN/post-build-hook" 2>/dev/null; done; t2=$(now)
base=$(( (t1 - t0) / N )); hook=$(( (t2 - t1) / N ))
echo "queue-mode hook: $(ms $hook) ms per call (process spawn alone: $(ms $base) ms; hook adds $(ms $((hook - base))) ms)"

# --- 2. 31 derivations --------------------------------------------------------
expr() { # $1 = seed; writes 31 derivations, each referring to its predecessor
  {
    echo "let seed = \"$1\"; mk = name: deps: derivation { inherit name; system = builtins.currentSystem;"
    echo "  builder = \"/bin/sh\"; PATH = \"/usr/bin:/bin\";"
    echo "  args = [ \"-c\" (\"mkdir \$out; echo \${seed} \${name} > \$out/seed; \" + builtins.concatStringsSep \"\" (map (d: \"echo \${d} >> \$out/deps; \") deps)) ]; };"
    echo "  d0 = mk \"bench-d0\" [ ];"
    for i in $(seq 1 30); do echo "  d$i = mk \"bench-d$i\" [ d$((i - 1)) ];"; done
    echo "in { $(for i in $(seq 0 30); do printf 'inherit d%d; ' "$i"; done)}"
  } >"$WORK/$1.nix"
  echo "$WORK/$1.nix"
}
build() { # $1 = label, rest = env; prints ms
  local e; e=$(expr "$1-$(now)")
  local t0; t0=$(now)
  env "${@:2}" nix-build "$e" --no-out-link --option substituters '' ${HOOK:+--option post-build-hook "$HOOK"} >/dev/null 2>"$WORK/$1.log"
  echo $(( ($(now) - t0) / 1000000 ))
}
declare -A T
for round in $(seq "$ROUNDS"); do
  T[none]+=" $(HOOK= build none X=1)"
  T[true]+=" $(HOOK=/bin/true build true X=1)"
  T[queue]+=" $(HOOK=$BIN/post-build-hook build queue NIXCACHE_QUEUE="$WORK/q2")"
  T[sync]+=" $(HOOK=$BIN/post-build-hook build sync NIXCACHE_TO="file://$WORK/cache?compression=zstd" NIXCACHE_SECRET_KEY_FILE="$WORK/key.sec")"
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }
none=$(median "${T[none]}"); tru=$(median "${T[true]}"); queue=$(median "${T[queue]}"); sync=$(median "${T[sync]}")
echo "31 derivations, median of $ROUNDS (ms): no hook $none [${T[none]} ], /bin/true hook $tru [${T[true]} ],"
echo "  queue hook $queue [${T[queue]} ], sync hook $sync [${T[sync]} ]"
echo "ratio queue/none: $(echo "scale=2; $queue / $none" | bc)   true/none: $(echo "scale=2; $tru / $none" | bc)   sync/none: $(echo "scale=2; $sync / $none" | bc)"
echo "per build: any hook costs $(( (tru - none) / 31 )) ms in Nix; ours in queue mode $(( (queue - none) / 31 )) ms, sync $(( (sync - none) / 31 )) ms"
queued=$(ls "$WORK/q2/entries" | wc -l)
echo "queued by the hook: $queued paths (draining them...)"
"$BIN/upload-daemon" --queue "$WORK/q2" --to "file://$WORK/cache2?compression=zstd" --secret-key "$WORK/key.sec" --exit-when-empty 2>"$WORK/daemon.log"
echo "drained: $(ls "$WORK/cache2" | grep -c narinfo) narinfos; work dir $WORK"
# The per-call queue q1 is never drained: drop its GC roots so the bench
# path can be collected.
for l in /nix/var/nix/gcroots/auto/nixcache-queue-*; do
  case "$(readlink "$l")" in "$WORK"/*) rm -f "$l" ;; esac
done
