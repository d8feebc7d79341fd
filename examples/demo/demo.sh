#!/usr/bin/env bash
# demo.sh: nixcache end to end on one Debian/Ubuntu machine.
#
#   sudo bash examples/demo/demo.sh
#
# 1. installs Nix from the OS packages when missing (apt-get install nix-bin),
# 2. builds post-build-hook and upload-daemon (needs Go >= 1.26 on PATH),
# 3. makes a signing key (once),
# 4. builds a few fresh derivations (no nixpkgs) with the hook in queue mode,
# 5. runs upload-daemon --exit-when-empty into a local directory cache,
# 6. checks the cache with `nix store verify`, deletes the paths and lets Nix
#    substitute them back from the cache with signature checking.
#
# Everything lives under $NIXCACHE_DEMO_DIR (default /tmp/nixcache-demo).
# Safe to re-run: the key, cache and queue are reused, derivations are new.
# Exits non-zero as soon as a step fails.
set -euo pipefail

DEMO=${NIXCACHE_DEMO_DIR:-/tmp/nixcache-demo}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=$DEMO/bin

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }
trap 'fail "command failed at line $LINENO: $BASH_COMMAND"' ERR

# Build the commands as the calling user (root's PATH under sudo may lack Go).
if [ -z "${NIXCACHE_DEMO_BUILT:-}" ]; then
  step "Building the commands into $BIN"
  command -v go >/dev/null || fail "Go is not on PATH (install Go >= 1.26 from go.dev/dl)"
  mkdir -p "$BIN"
  (cd "$REPO" && go build -o "$BIN" ./examples/post-build-hook ./examples/upload-daemon)
  ls -l "$BIN"
fi

# Everything else runs as root: with no nix-daemon, only root writes /nix/store.
if [ "$(id -u)" != 0 ]; then
  exec sudo env NIXCACHE_DEMO_DIR="$DEMO" NIXCACHE_DEMO_BUILT=1 PATH="$PATH" bash "${BASH_SOURCE[0]}"
fi

step "Nix"
if ! command -v nix-build >/dev/null; then
  echo "Nix is missing: installing Debian's nix-bin"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nix-bin
fi
nix-store --version

mkdir -p "$DEMO"
KEY=$DEMO/key.sec
PUB=$DEMO/key.pub
CACHE=$DEMO/cache
QUEUE=$DEMO/queue
step "Signing key"
if [ ! -s "$KEY" ]; then
  nix-store --generate-binary-cache-key nixcache-demo-1 "$KEY" "$PUB"
  chmod 600 "$KEY"
  echo "made $KEY"
fi
echo "public key: $(cat "$PUB")"

step "Building 5 fresh derivations with the post-build hook in queue mode"
SEED="demo-$(date +%s%N)-$$"
EXPR=$DEMO/demo.nix
cat >"$EXPR" <<EOF
let
  seed = "$SEED";
  mk = name: deps: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ("mkdir \$out; echo \${seed} \${name} > \$out/seed; "
      + builtins.concatStringsSep "" (map (d: "echo \${d} >> \$out/deps; ") deps)) ];
  };
  a = mk "nixcache-demo-a" [ ];
  b = mk "nixcache-demo-b" [ a ];
  c = mk "nixcache-demo-c" [ a b ];
  d = mk "nixcache-demo-d" [ c ];
  e = mk "nixcache-demo-e" [ d a ];
in { inherit a b c d e; }
EOF
echo "nix-build $EXPR --option post-build-hook $BIN/post-build-hook  (NIXCACHE_QUEUE=$QUEUE)"
start=$(date +%s%N)
OUTS=$(NIXCACHE_QUEUE=$QUEUE nix-build "$EXPR" --no-out-link \
  --option substituters '' --option post-build-hook "$BIN/post-build-hook")
echo "built in $(( ($(date +%s%N) - start) / 1000000 )) ms:"
echo "$OUTS" | sed 's/^/  /'

step "What is queued (upload-daemon status)"
"$BIN/upload-daemon" status --queue "$QUEUE"
echo
echo "Queued paths are GC roots; Nix refuses to delete one:"
if nix-store --delete $(echo "$OUTS" | tail -n1) 2>&1 | sed 's/^/  /'; then :; fi
[ -e "$(echo "$OUTS" | tail -n1)" ] || fail "a queued path was deleted"

step "Draining the queue into file://$CACHE (upload-daemon --exit-when-empty)"
"$BIN/upload-daemon" --queue "$QUEUE" --to "file://$CACHE?compression=zstd" \
  --secret-key "$KEY" --exit-when-empty
"$BIN/upload-daemon" status --queue "$QUEUE"
echo "cache now holds $(ls "$CACHE" | grep -c '\.narinfo$') narinfos"
for p in $OUTS; do
  h=$(basename "$p"); h=${h%%-*}
  [ -s "$CACHE/$h.narinfo" ] || fail "$p is not in the cache"
done
echo "narinfo of the last path:"
h=$(basename "$(echo "$OUTS" | tail -n1)"); sed 's/^/  /' "$CACHE/${h%%-*}.narinfo"

step "nix store verify against the cache, trusting only the demo key"
nix --extra-experimental-features nix-command store verify --store "file://$CACHE" \
  --trusted-public-keys "$(cat "$PUB")" $OUTS
echo "all signatures valid, all NARs match"

step "Deleting the paths from the local store"
nix-store --delete $OUTS
for p in $OUTS; do [ ! -e "$p" ] || fail "$p still present"; done
echo "deleted"

step "Substituting them back from the cache (signatures checked, no rebuilding)"
nix-store --realise $OUTS --option substituters "file://$CACHE" \
  --option trusted-public-keys "$(cat "$PUB")" --max-jobs 0 >/dev/null
for p in $OUTS; do [ -e "$p" ] || fail "$p was not substituted"; done
echo "$(echo "$OUTS" | wc -l) paths substituted back from file://$CACHE"

trap - ERR
step "DEMO OK"
