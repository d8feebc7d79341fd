#!/bin/sh
# Regenerates the golden narinfos in this directory with real Nix (made with
# Nix 2.8.0, Debian 12's nix-bin, as root with a local store). Run from this
# directory: sh make.sh. The secret key is thrown away; golden.pub verifies
# the signatures.
set -eu
out=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
nix() { command nix --extra-experimental-features nix-command "$@"; }

nix-store --generate-binary-cache-key golden-test-1 "$work/sec" "$out/golden.pub"

# A closure with references and derivers: top refers to dep.
cat > "$work/closure.nix" <<'NIX'
let
  mk = name: cmd: derivation {
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" cmd ];
  };
  dep = mk "golden-dep" "mkdir $out; echo dep > $out/data; ln -s data $out/link";
in mk "golden-top" "mkdir $out; echo ${dep} > $out/ref; cp ${dep}/data $out/copy"
NIX
top=$(nix-build --no-out-link --option substituters '' "$work/closure.nix")
dep=$(nix-store --query --references "$top" | grep golden-dep)

# A path without deriver or references, added from a directory.
mkdir "$work/plain"; echo plain > "$work/plain/f"
plain=$(nix-store --add "$work/plain")

copy() { # copy COMPRESSION PATH NAME
	c=$work/cache-$1
	nix copy --option substituters '' --to "file://$c?compression=$1&secret-key=$work/sec" "$2"
	cp "$c/$(basename "$2" | cut -c1-32).narinfo" "$out/$3.narinfo"
}
copy xz "$top" top-xz
copy xz "$dep" dep-xz
copy zstd "$top" top-zstd
copy none "$plain" plain-none
cp "$work/cache-xz/nix-cache-info" "$out/nix-cache-info"
