#!/bin/sh
# Regenerates the golden NARs and .ls listings in this directory with real
# Nix (made with Nix 2.8.0, Debian 12's nix-bin, as root with a local
# store). Run from this directory: sh make.sh
set -eu
out=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 022

# tree: every node type and the corners of the format.
t=$work/tree
mkdir -p "$t/sub/nested" "$t/emptydir"
printf '#!/bin/sh\necho hi\n' > "$t/exec"; chmod 755 "$t/exec"
: > "$t/empty"
printf '123456789' > "$t/sub/nested/nine"      # 9 bytes: 7 of padding
printf '12345678' > "$t/sub/eight"             # 8 bytes: no padding
ln -s exec "$t/link"
ln -s /nonexistent/target "$t/dangling"
for n in B a a-b a.b 'ä' 'a b'; do printf '%s' "$n" > "$t/$n"; done
chmod 644 "$t/a"; chmod 700 "$t/B"             # only S_IXUSR counts
# file: a regular file as the root.
printf 'hello, nix\n' > "$work/file"
# link: a symlink as the root.
ln -s ../relative/target "$work/link"

# casehack: names that collide up to case, at two levels, and a name
# whose restored form is taken (the case hack of Nix's use-case-hack).
c=$work/casehack
mkdir -p "$c/Dir/Sub" "$c/dir"
for n in a A aB Ab AB b; do printf '%s' "$n" > "$c/$n"; done
printf 'x' > "$c/Dir/Sub/x"; printf 'X' > "$c/Dir/Sub/X"; chmod 755 "$c/Dir/Sub/X"
ln -s a "$c/dir/L"; ln -s A "$c/dir/l"

for n in tree file link casehack; do
	nix-store --dump "$work/$n" > "$out/$n.nar"
done
# casehack-restored: what nix-store --restore with use-case-hack puts on
# disk for casehack.nar, dumped without the hack (the suffixed names).
nix-store --option use-case-hack true --restore "$work/restored" < "$out/casehack.nar"
nix-store --dump "$work/restored" > "$out/casehack-restored.nar"

# .ls listings as a binary cache writes them (write-nar-listing=true).
cache=$work/cache
for n in tree file; do
	p=$(nix-store --add "$work/$n")
	nix --extra-experimental-features nix-command copy --option substituters '' \
		--to "file://$cache?compression=none&write-nar-listing=true" "$p"
	cp "$cache/$(basename "$p" | cut -c1-32).ls" "$out/$n.ls"
done
