#!/usr/bin/env bash
# push-vs-nix.sh: time `push` against `nix copy` uploading the same store path
# to a local file:// cache with zstd, alternating runs, and report medians,
# the time ratio and peak RSS; then the peak RSS of pushing a 1 GiB path.
#
#   examples/bench/push-vs-nix.sh [RUNS]    (default 5; needs Nix, run as root)
#
# SRC (default /usr/local/go) is added to the store with nix-store --add.
# BIG_MIB (default 1024, 0 to skip) is the size of the generated big path.
set -euo pipefail
RUNS=${1:-5}
SRC=${SRC:-/usr/local/go}
BIG_MIB=${BIG_MIB:-1024}
cd "$(dirname "$0")/../.."
WORK=$(mktemp -d /tmp/nixcache-bench.XXXXXX)
BIG=""
cleanup() {
  rm -rf "$WORK"
  if [ -n "$BIG" ]; then nix-store --delete "$BIG" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }

go build -o "$WORK/push" ./examples/push
P=$(nix-store --add "$SRC")
NARSIZE=$(nix-store --query --size "$P")
echo "path: $P (NAR $NARSIZE bytes), $RUNS alternating runs each, $(nproc) cores"

# measure NAME CMD...: prints "seconds peak_kib"
measure() {
  local log="$WORK/time.log"
  "$TIME" -f '%e %M' -o "$log" "$@" >/dev/null 2>"$WORK/cmd.err" || { cat "$WORK/cmd.err" >&2; return 1; }
  tail -1 "$log"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$WORK/push.t"; : >"$WORK/nix.t"; : >"$WORK/push.m"; : >"$WORK/nix.m"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/c1" "$WORK/c2"
  read -r t m < <(measure "$WORK/push" -q --to "file://$WORK/c1?compression=zstd${PUSH_PARAMS:+&$PUSH_PARAMS}" "$P")
  echo "$t" >>"$WORK/push.t"; echo "$m" >>"$WORK/push.m"
  read -r t2 m2 < <(measure nix --extra-experimental-features nix-command copy --to "file://$WORK/c2?compression=zstd" "$P")
  echo "$t2" >>"$WORK/nix.t"; echo "$m2" >>"$WORK/nix.m"
  echo "run $i: push ${t}s ${m} KiB, nix copy ${t2}s ${m2} KiB"
done
PT=$(median <"$WORK/push.t"); NT=$(median <"$WORK/nix.t")
PM=$(median <"$WORK/push.m"); NM=$(median <"$WORK/nix.m")
echo "median: push ${PT}s (${PM} KiB peak RSS), nix copy ${NT}s (${NM} KiB peak RSS)"
echo "size: push $(du -sb "$WORK/c1/nar" | cut -f1) bytes, nix copy $(du -sb "$WORK/c2/nar" | cut -f1) bytes"
awk -v a="$PT" -v b="$NT" 'BEGIN {printf "time ratio push/nix: %.2f (target <= 0.60)\n", a/b}'

if [ "$BIG_MIB" -gt 0 ]; then
  mkdir "$WORK/big"
  # Half random (incompressible), half text (compressible).
  head -c $((BIG_MIB / 2))M /dev/urandom >"$WORK/big/random.bin"
  head -c $((BIG_MIB / 2))M < <(yes "nixcache big path line $$ $(date +%s%N)") >"$WORK/big/text.txt"
  BIG=$(nix-store --add "$WORK/big")
  rm -rf "$WORK/big" "$WORK/c3"
  read -r t m < <(measure "$WORK/push" -q --to "file://$WORK/c3?compression=zstd" "$BIG")
  echo "1 GiB path: push ${t}s, peak RSS ${m} KiB = $((m / 1024)) MiB (target <= 64 MiB)"
fi
