#!/usr/bin/env bash
# scripts/fuzz.sh: run every Fuzz* target of hostwall for a bounded time.
#
#   ./scripts/fuzz.sh                 each target for 30s
#   FUZZTIME=5m ./scripts/fuzz.sh     longer
#   ./scripts/fuzz.sh ./nft           only the targets of these packages
#
# Minimizing a new input is capped at 2s (inputs are whole policies, and
# the default 60s would eat the run). Each target starts from its seed corpus (testdata/fuzz/<Target>/, which
# plain `go test` replays in CI) and prints its exec count. A crasher is
# written to testdata/fuzz/<Target>/ by go test: commit it with the fix.
# Exit status is non-zero when any target fails.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
export PATH="$PATH:/usr/local/go/bin:/usr/lib/go/bin"

fuzztime=${FUZZTIME:-30s}
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && mapfile -t pkgs < <(go list ./... | grep -v '/integration\(/\|$\)')

failed=()
found=0
for pkg in "${pkgs[@]}"; do
	for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		found=$((found + 1))
		printf '\n==> %s %s (%s)\n' "$pkg" "$target" "$fuzztime"
		log=$(mktemp)
		# -parallel 1: the machine is shared; a bounded memory per worker.
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s -parallel 1 "$pkg" 2>&1 | tee "$log" | grep -v '^fuzz: elapsed: [0-9]*s, execs' ; then :; fi
		if grep -q '^ok\|^PASS' "$log" && ! grep -q '^--- FAIL\|^FAIL' "$log"; then
			last=$(grep '^fuzz: elapsed' "$log" | tail -1)
			printf '    ok: %s\n' "${last:-no progress line}"
		else
			failed+=("$pkg $target")
		fi
		rm -f "$log"
	done
done
[ "$found" -eq 0 ] && echo "no Fuzz targets"
if [ ${#failed[@]} -gt 0 ]; then
	printf '\nFAILED: %s\n' "${failed[@]}"
	exit 1
fi
printf '\nall %d fuzz targets ran %s without a failure\n' "$found" "$fuzztime"
