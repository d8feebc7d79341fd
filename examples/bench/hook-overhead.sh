#!/usr/bin/env bash
# hook-overhead.sh: what the nixcache post-build hook costs a build.
#
#   sudo bash examples/bench/hook-overhead.sh [N_CALLS]
#
# 1. Per call, queue mode, run as Nix 2.8 runs it: DRV_PATH names a fresh
#    derivation every call and OUT_PATHS is empty (NixOS/nix#6446), so the
#    hook reads the outputs from the .drv and creates a new entry and a new
#    GC root every call. As deployed, the queue holds the upload daemon's
#    recovery checkpoint, so the hook does not fsync them (the daemon finds
#    the paths in Nix's database after a crash); a third queue without one
#    measures the fsync'ed entry. Rounds of N_CALLS (default 200) calls
#    alternate with the same number of /bin/true calls (what any process
#    costs); medians of ROUNDS (default 5). Target: <= 3 ms per call.
#    The queue lives under QUEUE_PARENT (default /nix/var/nix/gcroots, where
#    examples/README.md puts it: its entries are GC roots themselves;
#    QUEUE_PARENT=/var/lib measures a queue that needs indirect roots).
# 2. A build of 31 small derivations (fresh each time, with references)
#    without a hook, with /bin/true as the hook (what Nix itself pays to run
#    any hook), with the hook in queue mode, and with the hook in sync mode
#    uploading to a file:// cache (zstd); the order rotates every round.
#    Medians of ROUNDS. Target: queue-mode build <= 1.30x of no hook.
# 3. Where a call's time goes: the hook built with -tags hooktrace, run by
#    examples/bench/hooktrace (spawn = fork, exec, Go runtime start and
#    package initialisers up to main; exit = until wait(2) returns), next
#    to /bin/true, hooktrace's "empty" (a Go process that does nothing:
#    the least any Go hook costs) and its "floor" (a Go process that only
#    reads the .drv, symlinks the entry and fsyncs the entries directory:
#    the least a durable Go hook costs); then one 31-derivation build with
#    the traced hook, and its phases as Nix ran it.
# Needs root (local Nix store), Nix and Go. Leaves nothing but $WORK.
# BENCH_BIN=DIR uses the post-build-hook and upload-daemon binaries in DIR
# instead of building them (to compare two versions, run the script once
# per version, alternating, on an otherwise idle machine); the trace then
# runs only if DIR also holds hooktrace and post-build-hook-trace.
set -euo pipefail
N=${1:-200}
ROUNDS=${ROUNDS:-5}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/nixcache-bench.XXXXXX)
QWORK=$(mktemp -d "${QUEUE_PARENT:-/nix/var/nix/gcroots}/nixcache-bench.XXXXXX")
trap 'rm -rf "$QWORK"' EXIT # under gcroots, a queue left behind would keep its paths alive
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$(cd "$BENCH_BIN" && pwd)
else
  BIN=$WORK/bin
  mkdir -p "$BIN"
  (cd "$REPO" && go build -o "$BIN" ./examples/post-build-hook ./examples/upload-daemon ./examples/bench/hooktrace &&
    go build -tags hooktrace -o "$BIN/post-build-hook-trace" ./examples/post-build-hook)
fi
nix-store --generate-binary-cache-key bench-1 "$WORK/key.sec" "$WORK/key.pub"

ms() { echo "scale=2; $1 / 1000000" | bc; }
now() { date +%s%N; }
median() { tr ' ' '\n' <<<"$1" | { grep . || true; } | sort -n | sed -n "$(( (ROUNDS + 1) / 2 ))p"; }

# --- 1. per call ----------------------------------------------------------------
drvs() { # $1 = seed; prints N fresh .drv paths (instantiated, not built)
  echo "builtins.genList (i: derivation { name = \"hookcall-\${toString i}\"; system = builtins.currentSystem;
    builder = \"/bin/sh\"; args = [ \"-c\" \"echo $1 \${toString i} > \$out\" ]; }) $N" >"$WORK/calls.nix"
  nix-instantiate "$WORK/calls.nix" 2>/dev/null
}
# As deployed, an upload daemon runs on the queue and keeps its recovery
# checkpoint there (DIR/recovery.json, see cache/queue's Checkpoint): the
# hook then does not fsync its entry, since the daemon finds the path in
# Nix's database after a crash. One daemon run on the empty queue leaves the
# checkpoint. q0 has none: there each entry is fsync'ed (the durable mode,
# also what a daemon that cannot read Nix's database gets).
checkpoint() { "$BIN/upload-daemon" --queue "$1" --to "file://$WORK/cp-cache" --secret-key "$WORK/key.sec" --exit-when-empty 2>>"$WORK/daemon.log"; }
checkpoint "$QWORK/q1"
declare -A C
for round in $(seq "$ROUNDS"); do
  d1=$(drvs "true-$round-$(now)"); d2=$(drvs "hook-$round-$(now)"); d3=$(drvs "fsync-$round-$(now)")
  t0=$(now); for d in $d1; do OUT_PATHS= DRV_PATH=$d /bin/true; done; t1=$(now)
  for d in $d2; do OUT_PATHS= DRV_PATH=$d NIXCACHE_QUEUE=$QWORK/q1 "$BIN/post-build-hook" 2>/dev/null; done; t2=$(now)
  for d in $d3; do OUT_PATHS= DRV_PATH=$d NIXCACHE_QUEUE=$QWORK/q0 "$BIN/post-build-hook" 2>/dev/null; done; t3=$(now)
  C[true]+=" $(( (t1 - t0) / N ))"; C[hook]+=" $(( (t2 - t1) / N ))"; C[fsync]+=" $(( (t3 - t2) / N ))"
done
base=$(median "${C[true]}"); hook=$(median "${C[hook]}"); fsynced=$(median "${C[fsync]}")
echo "queue-mode hook: $(ms "$hook") ms per call (process spawn alone: $(ms "$base") ms; hook adds $(ms $((hook - base))) ms)"
echo "  per call, ns [${C[hook]} ], /bin/true [${C[true]} ]; a new entry (and GC root) each call, queue in $QWORK"
echo "queue-mode hook without a daemon checkpoint (entry fsync'ed): $(ms "$fsynced") ms per call [${C[fsync]} ]"
echo "per call: target <= 3 ms: $(awk -v a="$hook" 'BEGIN {print (a <= 3000000 ? "PASS" : "MISS")}')"

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
checkpoint "$QWORK/q2"
declare -A T=([none]="" [true]="" [queue]="" [sync]="")
read -r -a KINDS <<<"${KINDS:-none true queue sync}" # KINDS="none true queue" skips the (slow) sync builds
for round in $(seq "$ROUNDS"); do
  for k in $(seq 0 $((${#KINDS[@]} - 1))); do
    kind=${KINDS[$(( (k + round) % ${#KINDS[@]} ))]}
    case $kind in
    none) T[none]+=" $(HOOK= build none X=1)" ;;
    true) T[true]+=" $(HOOK=/bin/true build true X=1)" ;;
    queue) T[queue]+=" $(HOOK=$BIN/post-build-hook build queue NIXCACHE_QUEUE="$QWORK/q2")" ;;
    sync) T[sync]+=" $(HOOK=$BIN/post-build-hook build sync NIXCACHE_TO="file://$WORK/cache?compression=zstd" NIXCACHE_SECRET_KEY_FILE="$WORK/key.sec")" ;;
    esac
  done
done
none=$(median "${T[none]}"); tru=$(median "${T[true]}"); queue=$(median "${T[queue]}"); sync=$(median "${T[sync]}")
sync=${sync:-0}
ratio=$(echo "scale=2; $queue / $none" | bc)
echo "31 derivations, median of $ROUNDS (ms): no hook $none [${T[none]} ], /bin/true hook $tru [${T[true]} ],"
echo "  queue hook $queue [${T[queue]} ], sync hook $sync [${T[sync]} ]"
echo "ratio queue/none: $ratio   true/none: $(echo "scale=2; $tru / $none" | bc)   sync/none: $(echo "scale=2; $sync / $none" | bc)"
echo "per build: any hook costs $(( (tru - none) / 31 )) ms in Nix; ours in queue mode $(( (queue - none) / 31 )) ms ($(( (queue - tru) / 31 )) ms more than /bin/true), sync $(( (sync - none) / 31 )) ms"
echo "31-drv build: target queue/none <= 1.30: $(awk -v a="$ratio" 'BEGIN {print (a <= 1.30 ? "PASS" : "MISS")}')"
queued=$(ls "$QWORK/q2/entries" | wc -l)
echo "queued by the hook: $queued paths (draining them...)"
"$BIN/upload-daemon" --queue "$QWORK/q2" --to "file://$WORK/cache2?compression=zstd" --secret-key "$WORK/key.sec" --exit-when-empty 2>"$WORK/daemon.log"
echo "drained: $(ls "$WORK/cache2" | grep -c narinfo) narinfos"

# --- 3. where the time goes -----------------------------------------------------
if [ -x "$BIN/hooktrace" ] && [ -x "$BIN/post-build-hook-trace" ]; then
  checkpoint "$QWORK/trace/q" # hooktrace queues in DIR/q
  checkpoint "$QWORK/q3"
  echo "trace: $("$BIN/hooktrace" -n "$N" -queue "$QWORK/trace" /bin/true empty floor "$BIN/post-build-hook-trace" | tr '\n' ' ')"
  HOOK=$BIN/post-build-hook-trace build traced NIXCACHE_QUEUE="$QWORK/q3" >/dev/null
  echo "in Nix: $("$BIN/hooktrace" -nixlog "$WORK/traced.log")"
fi
# The per-call queue q1 is never drained: drop its GC roots (and those
# of q2's entries, if any is left) so the paths can be collected.
for l in /nix/var/nix/gcroots/auto/nixcache-queue-*; do
  case "$(readlink "$l")" in "$QWORK"/*) rm -f "$l" ;; esac
done
rm -rf "$QWORK"
echo "work dir $WORK"
