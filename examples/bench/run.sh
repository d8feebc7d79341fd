#!/usr/bin/env bash
# run.sh: nixcache side by side with real Nix (and plain minio-go), in one run.
#
#   sudo bash examples/bench/run.sh [--quick]
#
# Every row alternates ours/Nix runs (the order flips each run) and compares
# medians of N runs (5; 3 with --quick; RUNS=N overrides). Wall time comes
# from date +%s%N around /usr/bin/time, peak RSS from /usr/bin/time -f %M.
# Rows: NAR dump and hash of SRC (/usr/local/go); push of SRC as a store path
# to a fresh file:// cache with compression none, zstd, xz (ours with
# parallel-compression=true; Nix plain and parallel) against nix copy; push
# of a 31-path closure; push of a 1 GiB path (BIG_MIB) with zstd; push to a
# local S3 server (versitygw) against one minio-go PutObject of the same NAR
# (and, for information, our backend's streamed Put of that NAR file: the
# upload without the dump and NarHash; each side's CPU user+sys, and the
# server's; every run on a clean page cache);
# a fleet of 4 S3 backends under a server-side rate limit, with and without
# the adaptive limiter (aimd); 4 upload-daemons draining into a distributed
# MinIO (4 nodes x 2 drives), with and without a server-side limit (fleet);
# the presence check of a 10,000-path closure on S3 (BenchmarkPresent10k);
# narinfo parse/write against the published figures of the other Go
# libraries; the post-build hook (hook-overhead.sh); resume: a RESUME_MIB
# (4096; 512 with --quick) path pushed to S3, killed at ~70% of its bytes and
# pushed again, against the same push with nothing to resume (bytes counted
# by examples/bench/partcount); last, fetch of SRC from a zstd file:// cache
# against nix copy --from. versitygw is built when missing, as .ci/run
# does. The table goes to stdout
# at the end; progress to stderr. Needs root, Nix, Go; leaves nothing behind.
set -euo pipefail
QUICK=0
case "${1:-}" in
--quick) QUICK=1 ;;
"") ;;
*) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
N=${RUNS:-$([ "$QUICK" = 1 ] && echo 3 || echo 5)}
SRC=${SRC:-/usr/local/go}
BIG_MIB=${BIG_MIB:-1024}
XZ_RUNS=${XZ_RUNS:-$([ "$QUICK" = 1 ] && echo 1 || echo "$N")}
SECTIONS=${SECTIONS:-"nar push closure big s3 aimd fleet presence resume narinfo hook fetch"}
RESUME_MIB=${RESUME_MIB:-$([ "$QUICK" = 1 ] && echo 512 || echo 4096)}
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
VERSITYGW=${VERSITYGW:-/root/.cache/nixcache-bin/versitygw}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NIX=(nix --extra-experimental-features nix-command)
SUBST=(--option substituters '')

WORK=$(mktemp -d /tmp/nixcache-bench.XXXXXX)
BIG="" S3PID=""
KILL_AT_EXIT=""
cleanup() {
  for p in $KILL_AT_EXIT; do kill "$p" 2>/dev/null || true; done
  if [ -n "$S3PID" ]; then kill "$S3PID" 2>/dev/null || true; wait "$S3PID" 2>/dev/null || true; fi
  if [ -n "$BIG" ]; then nix-store --delete "$BIG" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }
# Sections that time file-system work start with no dirty pages left by the
# ones before (GiBs of cache files), so that their writeback does not land
# inside the next measurement.
flush() { sync; }

if [ ! -x /usr/bin/time ]; then
  log "installing GNU time"
  apt-get install -y time >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
command -v nix-store >/dev/null || { echo "needs Nix (apt-get install nix-bin)" >&2; exit 1; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "building (load average $LOAD_START)"
BIN=$WORK/bin
mkdir -p "$BIN"
(cd "$REPO" && go build -o "$BIN" ./examples/nar ./examples/push ./examples/fetch ./examples/bench/s3helper ./examples/bench/partcount)
nix-store --generate-binary-cache-key bench-1 "$WORK/key.sec" "$WORK/key.pub"
KEY=$WORK/key.sec
PUB=$(cat "$WORK/key.pub")
P=$(nix-store --add "$SRC")
NARSIZE=$(nix-store --query --size "$P")

# server_ms: CPU time (user+sys) ms the S3 server started by start_s3 has
# used so far (0 when none runs).
server_ms() {
  if [ -n "${S3PID:-}" ] && [ -r "/proc/$S3PID/stat" ]; then
    awk -v hz="$(getconf CLK_TCK)" '{printf "%d\n", ($14 + $15) * 1000 / hz}' "/proc/$S3PID/stat"
  else echo 0; fi
}
# measure KEY CMD...: appends wall µs to KEY.t, peak RSS KiB to KEY.m,
# CPU time (user+sys) ms to KEY.c and the S3 server's CPU time ms during
# the run to KEY.sc.
measure() {
  local key=$1 t0 t1 m u s s0
  shift
  s0=$(server_ms)
  t0=$(date +%s%N)
  if ! /usr/bin/time -f "%M %U %S" -o "$WORK/rss" "$@" >/dev/null 2>"$WORK/err"; then
    echo "FAILED: $*" >&2
    cat "$WORK/err" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000)) >>"$WORK/$key.t"
  read -r m u s <<<"$(tail -1 "$WORK/rss")"
  echo "$m" >>"$WORK/$key.m"
  awk -v u="$u" -v s="$s" 'BEGIN {printf "%d\n", (u + s) * 1000}' >>"$WORK/$key.c"
  echo $(($(server_ms) - s0)) >>"$WORK/$key.sc"
}
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# pair KEY RUNS [SIDES]: runs cmd_KEY SIDE I for each side (default
# "ours base") RUNS times, rotating which goes first. cmd_KEY sets the CMD
# array (and prepares fresh directories).
pair() {
  local key=$1 runs=$2 i side order msg
  local -a sides
  read -r -a sides <<<"${3:-ours base}"
  for i in $(seq "$runs"); do
    order=("${sides[@]:$(((i - 1) % ${#sides[@]}))}" "${sides[@]:0:$(((i - 1) % ${#sides[@]}))}")
    msg=""
    for side in "${order[@]}"; do
      "cmd_$key" "$side" "$i"
      measure "$key.$side" "${CMD[@]}"
      msg+=" $side $(tail -1 "$WORK/$key.$side.t") µs $(tail -1 "$WORK/$key.$side.m") KiB,"
    done
    log "$key run $i/$runs:${msg%,}"
  done
}

TABLE=$WORK/table
printf '| %-50s | %-20s | %-20s | %-6s | %-16s | %-4s |\n' what ours "Nix / baseline" ratio target result >"$TABLE"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..52})" "$(printf -- '-%.0s' {1..22})" "$(printf -- '-%.0s' {1..22})" "--------" "$(printf -- '-%.0s' {1..18})" "------" >>"$TABLE"
FAILS=0
# verdict RATIO MAX: PASS if RATIO <= MAX
verdict() { awk -v r="$1" -v m="$2" 'BEGIN {print (r <= m ? "PASS" : "MISS")}'; }
addrow() { # what ours base ratio target result
  printf '| %-50s | %-20s | %-20s | %-6s | %-16s | %-4s |\n' "$@" >>"$TABLE"
  if [ "$6" = MISS ] || [ "$6" = FAIL ]; then FAILS=$((FAILS + 1)); fi
}
sec() { awk -v u="$1" 'BEGIN {printf "%.3f s", u / 1e6}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
# timerow WHAT KEY MAX [BASESIDE]: median time ours vs base, RSS in the cells.
timerow() {
  local what=$1 key=$2 max=$3 bs=${4:-base} ot bt om bm r
  ot=$(median "$WORK/$key.ours.t"); bt=$(median "$WORK/$key.$bs.t")
  om=$(median "$WORK/$key.ours.m"); bm=$(median "$WORK/$key.$bs.m")
  r=$(awk -v a="$ot" -v b="$bt" 'BEGIN {printf "%.2f", a / b}')
  addrow "$what" "$(sec "$ot"), $(mib "$om")" "$(sec "$bt"), $(mib "$bm")" "$r" "time <= ${max}x" "$(verdict "$r" "$max")"
}
# rssvs WHAT KEY: peak RSS at most the baseline's (Nix's).
rssvs() {
  local om bm r
  om=$(median "$WORK/$2.ours.m"); bm=$(median "$WORK/$2.base.m")
  r=$(awk -v a="$om" -v b="$bm" 'BEGIN {printf "%.2f", a / b}')
  addrow "$1" "$(mib "$om")" "$(mib "$bm")" "$r" "RSS <= Nix's" "$(verdict "$r" 1)"
}
# rssrow WHAT KEY MAXMIB [BASESIDE]: absolute peak RSS target.
rssrow() {
  local what=$1 key=$2 max=$3 bs=${4:-base} om bm r
  om=$(median "$WORK/$key.ours.m"); bm=$(median "$WORK/$key.$bs.m")
  r=$(awk -v a="$om" -v b="$bm" 'BEGIN {printf "%.2f", a / b}')
  addrow "$what" "$(mib "$om")" "$(mib "$bm")" "$r" "<= $max MiB" "$(awk -v a="$om" -v m="$max" 'BEGIN {print (a / 1024 <= m ? "PASS" : "MISS")}')"
}

# verify_row WHAT STORE ARGS...: Nix checks the signatures and NARs of the
# paths ARGS (--all: every path) in STORE.
verify_row() {
  if "${NIX[@]}" store verify --store "$2" --trusted-public-keys "$PUB" "${@:3}" 2>"$WORK/verify.err"; then
    addrow "$1" "ok (exit 0)" "" - "exit 0" PASS
  else
    addrow "$1" "exit $?" "" - "exit 0" FAIL
    cat "$WORK/verify.err" >&2
  fi
}

log "path $P (NAR $NARSIZE bytes), $N runs per row, $(nproc) cores"

# --- NAR dump and hash ---------------------------------------------------------
cmd_dump() { if [ "$1" = ours ]; then CMD=("$BIN/nar" dump "$SRC"); else CMD=(nix-store --dump "$SRC"); fi; }
cmd_hash() { if [ "$1" = ours ]; then CMD=("$BIN/nar" hash "$SRC"); else CMD=(nix-hash --type sha256 --base32 "$SRC"); fi; }
nix-store --dump "$SRC" >/dev/null # warm the page cache for both
if want nar; then
pair dump "$N"
pair hash "$N"
timerow "NAR dump $SRC > /dev/null" dump 1.00
H1=$("$BIN/nar" hash "$SRC"); H2=$(nix-hash --type sha256 --base32 "$SRC")
if [ "$H1" = "$H2" ]; then timerow "NAR hash (sha256 nix32; identical)" hash 1.00; else
  addrow "NAR hash: DIFFERENT from nix-hash" "$H1" "$H2" - equal FAIL
fi
fi

# --- push of SRC to file:// -----------------------------------------------------
# cmd_push_METHOD SIDE I: fresh cache dir per run (the previous one is removed).
push_cmd() { # side name method ours-params nix-params [path, default $P]
  local d=$WORK/cache-$2-$1 path=${6:-$P}
  rm -rf "$d"
  if [ "$1" = ours ]; then
    CMD=("$BIN/push" -q --secret-key "$KEY" --to "file://$d?compression=$3${4:+&$4}" "$path")
  else
    CMD=("${NIX[@]}" copy --to "file://$d?compression=$3&secret-key=$KEY${5:+&$5}" "$path")
  fi
}
cmd_none() { push_cmd "$1" none none "" ""; }
cmd_zstd() { push_cmd "$1" zstd zstd "" ""; }
cmd_xz() { # base: Nix's xz; basep: Nix's xz with parallel-compression=true
  if [ "$1" = basep ]; then push_cmd base xzp xz "" parallel-compression=true
  else push_cmd "$1" xz xz parallel-compression=true ""; fi
}
XZN=$XZ_RUNS
if want push; then
flush
pair none "$N"
pair zstd "$N"
pair xz "$XZN" "ours base basep"
timerow "push $SRC, compression=none" none 1.00
timerow "push $SRC, zstd (vs nix copy)" zstd 0.40
timerow "push $SRC, xz parallel vs Nix xz" xz 0.25
timerow "push $SRC, xz parallel vs Nix xz parallel" xz 1.00 basep
rssrow "  peak RSS, xz parallel (vs Nix xz parallel)" xz 64 basep
# Our caches must be readable by Nix: signatures and NAR contents.
verify_row "  our xz cache: nix store verify --all" "file://$WORK/cache-xz-ours" --all
verify_row "  our zstd cache: nix store verify --all" "file://$WORK/cache-zstd-ours" --all
ZS1=$(du -sb "$WORK/cache-zstd-ours/nar" | cut -f1); ZS2=$(du -sb "$WORK/cache-zstd-base/nar" | cut -f1)
XS1=$(du -sb "$WORK/cache-xz-ours/nar" | cut -f1); XS2=$(du -sb "$WORK/cache-xz-base/nar" | cut -f1)
sizerow() { # WHAT OURS BASE MAX: compressed bytes, ratio target
  local r
  r=$(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.2f", a / b}')
  addrow "$1" "$(mib $(($2 / 1024)))" "$(mib $(($3 / 1024)))" "$r" "size <= ${4}x" "$(verdict "$(awk -v a="$2" -v b="$3" 'BEGIN {print a / b}')" "$4")"
}
sizerow "  compressed size zstd (vs nix copy)" "$ZS1" "$ZS2" 1.05
sizerow "  compressed size xz (vs Nix's liblzma -6)" "$XS1" "$XS2" 1.25
rm -rf "$WORK"/cache-*
fi

# --- 31-path closure --------------------------------------------------------------
if want closure; then
flush
{
  echo "let seed = \"bench-$$-$(date +%s%N)\"; mk = name: deps: derivation { inherit name; system = builtins.currentSystem;"
  echo "  builder = \"/bin/sh\"; PATH = \"/usr/bin:/bin\";"
  echo "  args = [ \"-c\" (\"mkdir \$out; echo \${seed} \${name} > \$out/seed; \" + builtins.concatStringsSep \"\" (map (d: \"echo \${d} >> \$out/deps; \") deps)) ]; };"
  echo "  d0 = mk \"bench-d0\" [ ];"
  for i in $(seq 1 30); do echo "  d$i = mk \"bench-d$i\" [ d$((i - 1)) ];"; done
  echo "in d30"
} >"$WORK/closure.nix"
TOP=$(nix-build "$WORK/closure.nix" --no-out-link "${SUBST[@]}" 2>"$WORK/build.log")
CLOSURE_N=$(nix-store --query --requisites "$TOP" | wc -l)
cmd_closure() { push_cmd "$1" closure zstd "" "" "$TOP"; }
pair closure "$N"
timerow "push closure of $CLOSURE_N paths, zstd (durable)" closure 1.00
verify_row "  our closure cache: nix store verify --all" "file://$WORK/cache-closure-ours" --all
rm -rf "$WORK"/cache-*
fi

# --- 1 GiB path -------------------------------------------------------------------
if want big && [ "$BIG_MIB" -gt 0 ]; then
flush
  log "generating a $BIG_MIB MiB path"
  mkdir "$WORK/big"
  # Half random (incompressible), half text (compressible).
  head -c $((BIG_MIB / 2))M /dev/urandom >"$WORK/big/random.bin"
  head -c $((BIG_MIB / 2))M < <(yes "nixcache big path line $$ $(date +%s%N)") >"$WORK/big/text.txt" || true
  BIG=$(nix-store --add "$WORK/big")
  rm -rf "$WORK/big"
  cmd_big() { push_cmd "$1" big zstd "" "" "$BIG"; }
  pair big "$N"
  timerow "push $BIG_MIB MiB path, zstd" big 0.60
  rssvs "  peak RSS, $BIG_MIB MiB path zstd" big
  verify_row "  our $BIG_MIB MiB zstd cache: nix store verify --all" "file://$WORK/cache-big-ours" --all
  rm -rf "$WORK"/cache-*
  nix-store --delete "$BIG" >/dev/null 2>&1 && BIG=""
fi

# ensure_versitygw: builds versitygw as $VERSITYGW when missing (as .ci/run does).
# The S3 rows always run.
ensure_versitygw() {
  [ -x "$VERSITYGW" ] && return 0
  log "building versitygw into $(dirname "$VERSITYGW")"
  mkdir -p "$(dirname "$VERSITYGW")" "$WORK/gobin" || return 1
  (cd "$REPO" && GOBIN="$WORK/gobin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0) >&2 || return 1
  mv "$WORK/gobin/versitygw" "$VERSITYGW"
}
# start_s3 DIR: starts versitygw on a free loopback port with data in DIR;
# sets S3PID and EP.
start_s3() {
  local port
  export AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret123
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 39517)
  mkdir -p "$1"
  ROOT_ACCESS_KEY=$AWS_ACCESS_KEY_ID ROOT_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    "$VERSITYGW" --port "127.0.0.1:$port" --quiet posix "$1" >"$WORK/s3.log" 2>&1 &
  S3PID=$!
  EP=http://127.0.0.1:$port
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}

# --- S3 -----------------------------------------------------------------------------
if ! want s3; then :
elif ensure_versitygw; then
  start_s3 "$WORK/s3"
  nix-store --dump "$P" >"$WORK/go.nar"
  S3="$BIN/s3helper -endpoint $EP"
  cmd_s3() {
    local b="b$1$2"
    # Each run uploads into a new bucket on a clean page cache: the earlier
    # runs' objects (but the one verified below) are removed and written
    # back first, so that no run pays for another's writeback.
    find "$WORK/s3" -mindepth 1 -maxdepth 1 ! -name bours1 ! -name '.*' -exec rm -rf {} +
    sync
    $S3 -public mkbucket "$b"
    case $1 in
    ours) CMD=("$BIN/push" -q --secret-key "$KEY" --to "s3://$b?endpoint=$EP&region=us-east-1&addressing-style=path&compression=none" "$P") ;;
    stream) CMD=($S3 put-stream "$b" nar/go.nar "$WORK/go.nar") ;;
    *) CMD=($S3 put "$b" nar/go.nar "$WORK/go.nar") ;;
    esac
  }
  pair s3 "$N" "ours base stream"
  timerow "push $SRC to S3 (none) vs minio PutObject" s3 1.15
  # Where the difference goes: the upload alone (our backend's streamed Put
  # of the ready NAR file, no dump and no NarHash) and the client's CPU.
  ST=$(median "$WORK/s3.stream.t") BT=$(median "$WORK/s3.base.t")
  addrow "  our upload alone: the NAR file, streamed (info)" "$(sec "$ST"), $(mib "$(median "$WORK/s3.stream.m")")" \
    "$(sec "$BT"), $(mib "$(median "$WORK/s3.base.m")")" "$(awk -v a="$ST" -v b="$BT" 'BEGIN {printf "%.2f", a / b}')" info -
  OC=$(median "$WORK/s3.ours.c") SC=$(median "$WORK/s3.stream.c") BC=$(median "$WORK/s3.base.c")
  addrow "  client CPU user+sys: push (upload alone) (info)" "$(sec "$OC"e3) ($(sec "$SC"e3))" "$(sec "$BC"e3)" \
    "$(awk -v a="$OC" -v b="$BC" 'BEGIN {printf "%.2f", a / b}')" info -
  # Both sides share the cores: the server's CPU (its MD5 and CRC64 of every
  # byte) plus the client's, spread over all cores, is the least wall time
  # either side can take; the gap to the target shows how much is CPU.
  OS=$(median "$WORK/s3.ours.sc") BS=$(median "$WORK/s3.base.sc")
  addrow "  server CPU (versitygw): push vs PutObject (info)" "$(sec "$OS"e3)" "$(sec "$BS"e3)" \
    "$(awk -v a="$OS" -v b="$BS" 'BEGIN {printf "%.2f", a / b}')" info -
  addrow "  both sides' CPU / $(nproc) cores (info)" "$(awk -v c="$OC" -v s="$OS" -v n="$(nproc)" 'BEGIN {printf "%.3f s", (c + s) / n / 1000}')" \
    "$(awk -v c="$BC" -v s="$BS" -v n="$(nproc)" 'BEGIN {printf "%.3f s", (c + s) / n / 1000}')" - info -
  # Nix must substitute-check what we uploaded, over plain HTTP.
  verify_row "  our S3 upload: nix store verify over HTTP" "$EP/bours1" "$P"
  kill "$S3PID"; wait "$S3PID" 2>/dev/null || true; S3PID=""
  rm -rf "$WORK/s3" "$WORK/go.nar"
else
  addrow "push to S3" "versitygw could not be built" "" - - FAIL
fi

# --- fleet under a server-side rate limit (adaptive concurrency) ------------------
# BenchmarkFleet: 4 backends x 8 uploads of 4 KiB at once, 6 s, versitygw behind
# the fault proxy; no server limit, then a limit of 40 requests/s with and
# without the adaptive limiter (minio-go's retries alone).
if want aimd; then
log "fleet under a server-side rate limit (BenchmarkFleet)"
if (cd "$REPO" && NIXCACHE_VERSITYGW=$VERSITYGW go test -count=1 -run '^$' -bench '^BenchmarkFleet$' -benchtime 1x ./cache/s3/) >"$WORK/fleet.txt" 2>&1; then
  fleet() { awk -v n="BenchmarkFleet/$1" -v u="$2" '$1 ~ "^"n"(-[0-9]+)?$" {for (i = 3; i < NF; i++) if ($(i+1) == u) printf "%g\n", $i}' "$WORK/fleet.txt"; }
  FREE=$(fleet unlimited uploads/s)
  LU=$(fleet rate40-limiter uploads/s) LR=$(fleet rate40-limiter refused-%) LF=$(fleet rate40-limiter failed)
  NU=$(fleet rate40-nolimiter uploads/s) NR=$(fleet rate40-nolimiter refused-%) NF=$(fleet rate40-nolimiter failed)
  FR=$(awk -v a="$LU" 'BEGIN {printf "%.2f", a / 40}')
  addrow "fleet of 4, no server limit (info)" "$FREE uploads/s" "" - info -
  addrow "fleet of 4 under 40 req/s: limiter vs none" "$LU/s, ${LR}% ref, $LF fail" "$NU/s, ${NR}% ref, $NF fail" "$FR" ">= 0.70 of limit" \
    "$(awk -v r="$FR" -v f="$LF" 'BEGIN {print (r >= 0.7 && f == 0 ? "PASS" : "MISS")}')"
else
  cat "$WORK/fleet.txt" >&2
  addrow "fleet under a server limit" failed "" - - FAIL
fi
fi

# --- fleet of upload-daemons on a distributed MinIO ---------------------------------------
# internal/faults BenchmarkFleet: 4 upload-daemons (real processes, own queues)
# drain 400 small paths (a tenth queued by all four) into one bucket of a MinIO
# cluster (4 processes x 2 drives in network namespaces; testenv) through the
# fault proxy: no server limit, then 40 requests/s. Every path is then checked
# with nix store verify over HTTP through another node. Needs the minio binary
# (~/.cache/nixcache-bin/minio, built by .ci/run) and ip.
if want fleet; then
log "fleet of upload-daemons on distributed MinIO (internal/faults BenchmarkFleet)"
FLEETN=$([ "$QUICK" = 1 ] && echo 200 || echo 400)
if (cd "$REPO" && NIXCACHE_FLEET_PATHS=$FLEETN go test -count=1 -run '^$' -bench '^BenchmarkFleet$' -benchtime 1x ./internal/faults/) >"$WORK/dfleet.txt" 2>&1; then
  dfleet() { awk -v n="BenchmarkFleet/$1" -v u="$2" '$1 ~ "^"n"(-[0-9]+)?$" {for (i = 3; i < NF; i++) if ($(i+1) == u) printf "%g\n", $i}' "$WORK/dfleet.txt"; }
  FP=$(dfleet unlimited paths/s) FQ=$(dfleet unlimited fwd-req/s) FD=$(dfleet unlimited dup-nars) FN=$(dfleet unlimited nars)
  LP=$(dfleet rate40 paths/s) LQ=$(dfleet rate40 fwd-req/s) LR=$(dfleet rate40 refused) LRP=$(dfleet rate40 refused-%) LO=$(dfleet rate40 of-limit) LD=$(dfleet rate40 dup-nars)
  addrow "4 daemons -> MinIO 4x2, $FLEETN paths, no limit (info)" "$FP paths/s, $FQ req/s" "" - info -
  addrow "  duplicate NAR uploads (a tenth in all 4 queues)" "$FD + $LD of $FN + $FN" "" - "<= 10% of NARs" \
    "$(awk -v d="$((FD + LD))" -v n="$((FN + FN))" 'BEGIN {print (d * 10 <= n ? "PASS" : "MISS")}')"
  addrow "4 daemons under 40 req/s: forwarded vs limit" "$LQ req/s, $LP paths/s" "40 req/s, $LR refused ($LRP%)" "$(awk -v a="$LO" 'BEGIN {printf "%.2f", a}')" ">= 0.70 of limit" \
    "$(awk -v r="$LO" 'BEGIN {print (r >= 0.7 ? "PASS" : "MISS")}')"
else
  tail -30 "$WORK/dfleet.txt" >&2
  addrow "fleet of daemons on MinIO" failed "" - - FAIL
fi
fi

# --- presence check of a 10,000-path closure on S3 ---------------------------------------
# BenchmarkPresent10k fills a versitygw bucket with 10,000 narinfos and their NAR files, then
# checks a 10,000-path closure that is all present: Cache.Present (what Push does) against
# one HEAD per path (what Push did before). Target: <= 2 s. versitygw is built when missing.
if want presence; then
  if [ ! -x "$VERSITYGW" ]; then
    log "building versitygw into $(dirname "$VERSITYGW")"
    GOBIN=$(dirname "$VERSITYGW") go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
  fi
  log "presence check: filling a bucket with 10,000 narinfos (about a minute)"
  if (cd "$REPO" && CI=true NIXCACHE_VERSITYGW=$VERSITYGW go test -run '^$' -bench '^BenchmarkPresent10k$/^(auto|head)$' \
    -benchtime "${N}x" -timeout 30m ./cache/) >"$WORK/presence.txt" 2>&1; then
    pres() { awk -v k="$1" -v f="$2" '$1 ~ "^BenchmarkPresent10k/" k "(-[0-9]+)?$" {for (i = 2; i < NF; i++) if ($(i + 1) == f) print $i}' "$WORK/presence.txt"; }
    PT=$(pres auto ns/op) PR=$(pres auto requests/op) HT=$(pres head ns/op) HR=$(pres head requests/op)
    addrow "presence check, 10,000 present paths, S3 (vs HEADs)" "$(sec $((PT / 1000))), ${PR%.*} req" "$(sec $((HT / 1000))), ${HR%.*} req" \
      "$(awk -v a="$PT" -v b="$HT" 'BEGIN {printf "%.2f", a / b}')" "<= 2 s" "$(awk -v a="$PT" 'BEGIN {print (a <= 2e9 ? "PASS" : "MISS")}')"
  else
    cat "$WORK/presence.txt" >&2
    addrow "presence check, 10,000 present paths, S3" failed "" - "<= 2 s" FAIL
  fi
fi

# --- resume: a large NAR upload killed at ~70%, then pushed again -----------------------
if ! want resume; then :
elif ensure_versitygw; then
  log "resume: generating a $RESUME_MIB MiB path"
  mkdir "$WORK/rbig"
  head -c "${RESUME_MIB}M" /dev/urandom >"$WORK/rbig/random.bin"
  BIG=$(nix-store --add "$WORK/rbig")
  rm -rf "$WORK/rbig"
  RSIZE=$(nix-store --query --size "$BIG")
  start_s3 "$WORK/s3r"
  "$BIN/partcount" -target "$EP" -addr-file "$WORK/pc.addr" 2>"$WORK/pc.log" &
  PCPID=$!
  KILL_AT_EXIT="$KILL_AT_EXIT $PCPID"
  for _ in $(seq 100); do [ -s "$WORK/pc.addr" ] && break; sleep 0.1; done
  PC=$(cat "$WORK/pc.addr")
  "$BIN/s3helper" -endpoint "$EP" -public mkbucket resumed
  "$BIN/s3helper" -endpoint "$EP" -public mkbucket full
  rpush_args() { echo "-q --secret-key $KEY --to s3://$1?endpoint=$PC&region=us-east-1&addressing-style=path&compression=none $BIG"; }
  # sent [FIELD]: bytes sent in parts since the last reset (4: all; 6: the
  # first upload only, without the refresh re-upload of a server that cannot
  # renew modification times).
  sent() { curl -fsS "$PC/-/stats" | awk -v f="${1:-4}" '{print $f}'; }
  # 1. push, SIGKILLed once ~70% of the NAR went up in parts.
  KILLAT=$((RSIZE * 70 / 100))
  # shellcheck disable=SC2046
  "$BIN/push" $(rpush_args resumed) &
  PUSHPID=$!
  while kill -0 "$PUSHPID" 2>/dev/null && [ "$(sent)" -lt "$KILLAT" ]; do sleep 0.05; done
  if kill -9 "$PUSHPID" 2>/dev/null; then
    wait "$PUSHPID" 2>/dev/null || true
    BEFORE=$(sent)
    log "resume: push killed after $BEFORE of $RSIZE bytes sent in parts"
    # 2. the same push again: it resumes the killed upload.
    curl -fsS -X POST "$PC/-/reset"
    # shellcheck disable=SC2046
    measure resume.ours "$BIN/push" $(rpush_args resumed)
    AGAIN=$(sent 6) AGAIN_ALL=$(sent)
    # 3. the same push with no upload to resume: what a restart sent before.
    curl -fsS -X POST "$PC/-/reset"
    # shellcheck disable=SC2046
    measure resume.base "$BIN/push" $(rpush_args full)
    FULL=$(sent 6) FULL_ALL=$(sent)
    log "resume: re-sent $AGAIN bytes after the kill ($AGAIN_ALL with the refresh), $FULL for a whole push ($FULL_ALL)"
    R=$(awk -v a="$AGAIN" -v b="$FULL" 'BEGIN {printf "%.2f", a / b}')
    addrow "resume $RESUME_MIB MiB S3 push killed at $((BEFORE * 100 / RSIZE))%: bytes sent" "$(mib $((AGAIN / 1024)))" "$(mib $((FULL / 1024)))" "$R" "<= 0.35x" "$(verdict "$R" 0.35)"
    addrow "  same, with the refresh re-upload (info)" "$(mib $((AGAIN_ALL / 1024)))" "$(mib $((FULL_ALL / 1024)))" \
      "$(awk -v a="$AGAIN_ALL" -v b="$FULL_ALL" 'BEGIN {printf "%.2f", a / b}')" info -
    # Time is shown, not judged: both pushes dump and hash the whole NAR
    # first, and one run of each under this load is noise.
    RT=$(median "$WORK/resume.ours.t"); FT=$(median "$WORK/resume.base.t")
    addrow "  resumed push vs whole push (time, info)" "$(sec "$RT"), $(mib "$(median "$WORK/resume.ours.m")")" \
      "$(sec "$FT"), $(mib "$(median "$WORK/resume.base.m")")" "$(awk -v a="$RT" -v b="$FT" 'BEGIN {printf "%.2f", a / b}')" info -
    verify_row "  resumed upload: nix store verify over HTTP" "$EP/resumed" "$BIG"
  else
    wait "$PUSHPID" 2>/dev/null || true
    addrow "resume: push ended before 70% was sent" "$(sent) bytes" "" - - FAIL
  fi
  kill "$PCPID" 2>/dev/null || true
  kill "$S3PID"; wait "$S3PID" 2>/dev/null || true; S3PID=""
  rm -rf "$WORK/s3r"
  nix-store --delete "$BIG" >/dev/null 2>&1 && BIG=""
else
  addrow "resume (S3)" "versitygw missing" "" - - FAIL
fi

# --- narinfo micro-benchmarks -----------------------------------------------------------
if want narinfo; then
log "narinfo benchmarks"
(cd "$REPO" && go test -run '^$' -bench '^Benchmark(Parse|Marshal)$' -benchtime 1s -count "$N" ./narinfo/) >"$WORK/bench.txt"
PARSE=$(awk '$1 ~ /^BenchmarkParse(-[0-9]+)?$/ {print $3}' "$WORK/bench.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
WRITE=$(awk '$1 ~ /^BenchmarkMarshal(-[0-9]+)?$/ {print $3}' "$WORK/bench.txt" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
addrow "narinfo parse (vs zombiezen, published)" "$PARSE ns/op" "4000 ns/op" "$(awk -v a="$PARSE" 'BEGIN {printf "%.2f", a / 4000}')" "<= 1.00x" "$(verdict "$(awk -v a="$PARSE" 'BEGIN {print a / 4000}')" 1)"
addrow "narinfo parse (vs nix-community, published)" "$PARSE ns/op" "177000 ns/op" "$(awk -v a="$PARSE" 'BEGIN {printf "%.3f", a / 177000}')" "<= 1.00x" "$(verdict "$(awk -v a="$PARSE" 'BEGIN {print a / 177000}')" 1)"
addrow "narinfo write (MarshalText)" "$WRITE ns/op" "no published figure" - info -
fi

# --- post-build hook ---------------------------------------------------------------------
if want hook; then
flush
log "hook overhead (hook-overhead.sh)"
HN=200 HR=5
if [ "$QUICK" = 1 ]; then HN=50 HR=3; fi
ROUNDS=$HR bash "$REPO/examples/bench/hook-overhead.sh" "$HN" >"$WORK/hook.txt" 2>&1 || { cat "$WORK/hook.txt" >&2; addrow "hook-overhead.sh" failed "" - - FAIL; }
cat "$WORK/hook.txt" >&2
HWORK=$(sed -n 's/^work dir \(\/tmp\/nixcache-bench\.[A-Za-z0-9]*\)$/\1/p' "$WORK/hook.txt")
if [ -n "$HWORK" ] && [ -d "$HWORK" ]; then rm -rf "$HWORK"; fi
PERCALL=$(sed -n 's/^queue-mode hook: \([0-9.]*\) ms per call.*/\1/p' "$WORK/hook.txt")
SPAWN=$(sed -n 's/.*process spawn alone: \([0-9.]*\) ms.*/\1/p' "$WORK/hook.txt")
HRATIO=$(sed -n 's/^ratio queue\/none: \([0-9.]*\).*/\1/p' "$WORK/hook.txt")
HMS=$(sed -n 's/.*queue hook \([0-9]*\) \[.*/\1/p' "$WORK/hook.txt")
NONE=$(sed -n 's/.*no hook \([0-9]*\) \[.*/\1/p' "$WORK/hook.txt")
TRUEMS=$(sed -n 's/.*\/bin\/true hook \([0-9]*\) \[.*/\1/p' "$WORK/hook.txt")
if [ -n "$PERCALL" ]; then
  # Per call as Nix 2.8 runs the hook (DRV_PATH, OUT_PATHS empty; a new entry and GC root each call),
  # on a queue with the upload daemon's recovery checkpoint, as deployed (no fsync).
  addrow "hook, queue mode: per call (vs /bin/true)" "$PERCALL ms" "$SPAWN ms" "$(awk -v a="$PERCALL" -v b="$SPAWN" 'BEGIN {printf "%.1f", a / b}')" "<= 3 ms" "$(awk -v a="$PERCALL" 'BEGIN {print (a <= 3 ? "PASS" : "MISS")}')"
  FSYNCED=$(sed -n "s/^queue-mode hook without a daemon checkpoint (entry fsync'ed): \([0-9.]*\) ms.*/\1/p" "$WORK/hook.txt")
  [ -n "$FSYNCED" ] && addrow "  per call, no daemon checkpoint: entry fsync'ed (info)" "$FSYNCED ms" "$SPAWN ms" - info -
  addrow "31-drv build: queue hook vs no hook" "$HMS ms" "$NONE ms" "$HRATIO" "<= 1.30x" "$(verdict "$HRATIO" 1.3)"
  addrow "  31-drv build: /bin/true hook vs no hook (info)" "$TRUEMS ms" "$NONE ms" "$(awk -v a="$TRUEMS" -v b="$NONE" 'BEGIN {printf "%.2f", a / b}')" info -
  # Sync mode: each build's hook runs `upload-daemon push` to a file:// cache (zstd); each push
  # reuses the previous paths already in the cache (no collector runs: no ReuseSettle wait).
  SYNCMS=$(sed -n 's/.*sync hook \([0-9]*\) \[.*/\1/p' "$WORK/hook.txt")
  [ -n "$SYNCMS" ] && [ "$SYNCMS" != 0 ] && addrow "  31-drv build: sync-mode hook vs no hook (info)" "$SYNCMS ms" "$NONE ms" "$(awk -v a="$SYNCMS" -v b="$NONE" 'BEGIN {printf "%.2f", a / b}')" info -
  PBQ=$(sed -n 's/^per build: any hook costs \(-*[0-9]*\) ms in Nix; ours in queue mode \(-*[0-9]*\) ms.*/\2/p' "$WORK/hook.txt")
  PBT=$(sed -n 's/^per build: any hook costs \(-*[0-9]*\) ms in Nix.*/\1/p' "$WORK/hook.txt")
  addrow "  per build in Nix: queue hook vs /bin/true (info)" "$PBQ ms" "$PBT ms" - info -
  # A Go process that does nothing (hooktrace "empty"): the least any Go hook costs.
  EMPTY=$(sed -n 's/.* empty: total \([0-9]*\) us per call.*/\1/p' "$WORK/hook.txt")
  [ -n "$EMPTY" ] && addrow "  per call: a Go process doing nothing (info)" "$(awk -v a="$EMPTY" 'BEGIN {printf "%.2f ms", a / 1000}')" "$SPAWN ms" - info -
  # The floor: a Go process that only symlinks the entry and fsyncs its directory (hooktrace "floor").
  FLOOR=$(sed -n 's/.* floor: total \([0-9]*\) us per call.*/\1/p' "$WORK/hook.txt")
  [ -n "$FLOOR" ] && addrow "  per call: floor, Go start + fsync'd entry (info)" "$(awk -v a="$FLOOR" 'BEGIN {printf "%.2f ms", a / 1000}')" "$SPAWN ms" - info -
  NIXFSYNC=$(sed -n 's/^in Nix: .* enqueue \([0-9]*\) (p90 \([0-9]*\)).*/\1 \2/p' "$WORK/hook.txt")
  [ -n "$NIXFSYNC" ] && addrow "  in Nix: enqueue (entry, as deployed), p50 p90 (info)" "$(awk -v a="${NIXFSYNC% *}" -v b="${NIXFSYNC#* }" 'BEGIN {printf "%.2f %.2f ms", a / 1000, b / 1000}')" - - info -
fi

# --- fetch of SRC from file:// ---------------------------------------------------
# Reading a cache: our fetch (signature checked, NAR decompressed and both
# hashes checked while it streams, the tree restored) against Nix
# substituting the same path from the same cache (written by our push, zstd)
# into a fresh chroot store (nix copy --from ... --to local?root=DIR; Nix
# also registers the path in that store's database). Every run writes into
# a new directory, and this section runs last, its trees removed only at
# exit: on a journal-less ext4 the inode allocator skips each inode freed
# in the last minute (six while its inode table block is still dirty), one
# by one, so deleting the last run's 10,000 files would slow this row and
# every file creation in the rows after it (the hook's entries too).
if want fetch; then
flush
"$BIN/push" -q --secret-key "$KEY" --to "file://$WORK/cache-fetch?compression=zstd" "$P" 2>/dev/null
cmd_fetch() {
  if [ "$1" = ours ]; then CMD=("$BIN/fetch" --from "file://$WORK/cache-fetch" --trusted-key "$PUB" "$P" "$WORK/fetch/ours-$2")
  else CMD=("${NIX[@]}" copy --from "file://$WORK/cache-fetch" --to "local?root=$WORK/fetch/base-$2" --option trusted-public-keys "$PUB" "$P"); fi
}
mkdir -p "$WORK/fetch"
pair fetch "$N"
timerow "fetch $SRC, zstd (vs nix copy --from)" fetch 1.00
# Same contents, symlinks and executable files as Nix's copy (modes
# otherwise differ by design: Nix canonicalises its store to 0444/0555).
execs() { (cd "$1" && find . -type f -perm -u+x | sort); }
if diff -r --no-dereference "$WORK/fetch/ours-1" "$WORK/fetch/base-1$P" >/dev/null 2>&1 &&
  [ "$(execs "$WORK/fetch/ours-1")" = "$(execs "$WORK/fetch/base-1$P")" ]; then
  addrow "  fetched tree: same as Nix's (diff -r, exec bits)" "same" "" - same PASS
else
  addrow "  fetched tree: same as Nix's (diff -r, exec bits)" "DIFFERENT" "" - same FAIL
fi
fi

fi

# --- table --------------------------------------------------------------------------------
echo
echo "nixcache vs Nix $(nix-store --version | awk '{print $NF}'), $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg); medians of $N alternating runs (xz rows: $XZ_RUNS)"
echo "SRC $SRC = $P, NAR $NARSIZE bytes"
echo
cat "$TABLE"
echo
echo "$FAILS row(s) MISS/FAIL"
