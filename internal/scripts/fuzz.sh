#!/usr/bin/env bash
# Runs every fuzz target of the module for FUZZTIME (default 60s) each, then
# copies the corpus the fuzzer grew (kept in Go's cache) into the package's
# testdata/fuzz/<FuzzName>/, so that `go test` replays it from then on.
# Usage: [FUZZPARALLEL=N] internal/scripts/fuzz.sh [FUZZTIME] [package-pattern]
set -euo pipefail
cd "$(dirname "$0")/../.."
fuzztime="${1:-60s}"
pattern="${2:-./...}"
cache="$(go env GOCACHE)/fuzz"
module="$(go list -m)"
printf '%-45s %-28s %8s %8s\n' package target time corpus
for pkg in $(go list "$pattern"); do
	dir="$(go list -f '{{.Dir}}' "$pkg")"
	targets="$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' || true)"
	for target in $targets; do
		start=$(date +%s)
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel "${FUZZPARALLEL:-$(nproc)}" "$pkg" >"/tmp/fuzz-${target}.log" 2>&1; then
			echo "FAIL $pkg $target (see /tmp/fuzz-${target}.log)" >&2
			tail -20 "/tmp/fuzz-${target}.log" >&2
			exit 1
		fi
		src="$cache/$pkg/$target"
		dst="$dir/testdata/fuzz/$target"
		mkdir -p "$dst"
		if [ -d "$src" ]; then
			# keep at most 200 inputs per target, the smallest first
			ls -S -r "$src" | head -200 | while read -r f; do cp -n "$src/$f" "$dst/$f"; done
		fi
		printf '%-45s %-28s %7ss %8s\n' "${pkg#"$module"/}" "$target" "$(( $(date +%s) - start ))" "$(ls "$dst" | wc -l)"
	done
done
