#!/bin/sh
# Records the path-info samples used by json_test.go from real Nix 2.8.
# Run as root after building testdata/closure.nix (see live_test.go):
#   nix-build --option substituters '' testdata/closure.nix -o /tmp/r
#   sh testdata/record.sh /tmp/r > /dev/null
# Writes nix-2.8-path-info.json (real `nix path-info --json` output, the
# outputs' closure plus the top .drv plus one invalid path) and
# nix-2.8-expect.tsv (the same facts from nix-store --query and sqlite3:
# path, nix32 hash, size, references, deriver, registrationTime, ultimate,
# sigs, ca).
set -eu
out=$(readlink "$1")
drv=$(nix-store -q --deriver "$out")
N="nix --extra-experimental-features nix-command"
dir=$(dirname "$0")
a=$($N path-info --json --option substituters '' -r "$out")
b=$($N path-info --json --option substituters '' --derivation "$drv")
c=$($N path-info --json --option substituters '' /nix/store/00000000000000000000000000000000-lsx-missing 2>/dev/null)
printf '%s\n' "$a" "$b" "$c" | python3 -c 'import json,sys; print(json.dumps([e for l in sys.stdin if l.strip() for e in json.loads(l)]))' > "$dir/nix-2.8-path-info.json"
: > "$dir/nix-2.8-expect.tsv"
for p in $(nix-store -qR "$out") "$drv"; do
  refs=$(nix-store -q --references "$p" | sort | paste -sd, -)
  row=$(sqlite3 -readonly -separator '	' /nix/var/nix/db/db.sqlite "select registrationTime, coalesce(ultimate,0), coalesce(sigs,''), coalesce(ca,'') from ValidPaths where path='$p'")
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$(nix-store -q --hash "$p")" "$(nix-store -q --size "$p")" "$refs" "$(nix-store -q --deriver "$p")" "$row" >> "$dir/nix-2.8-expect.tsv"
done
