#!/usr/bin/env bash
# scripts/test.sh: THE test command of hostwall.
#
#   sudo ./scripts/test.sh          everything: vet, unit, golden and integration tests
#   ./scripts/test.sh --unit        vet and unit tests only (no root, no installs)
#   ./scripts/test.sh --update      regenerate golden files (go test -run Golden -update)
#
# As root it installs what the integration tests need when it is missing
# (nftables, iptables, iproute2, ipset; Debian/Ubuntu apt-get), then runs every test.
# Integration tests only touch network namespaces they create, addresses in
# 198.18.0.0/15 and fd00::/8, and never the machine's own ruleset. Without
# root they skip with a reason, and this script says so. Exit status is
# non-zero when any step fails.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2

usage() {
	sed -n '2,13s/^# \{0,1\}//p' "$0"
}

mode=all
for arg in "$@"; do
	case "$arg" in
	--unit) mode=unit ;;
	--update) mode=update ;;
	-h | --help) usage; exit 0 ;;
	*) echo "test.sh: unknown argument $arg" >&2; usage >&2; exit 2 ;;
	esac
done

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# sudo resets PATH (secure_path), which usually loses Go and sbin tools.
export PATH="$PATH:/usr/local/go/bin:/usr/lib/go/bin:/usr/local/sbin:/usr/sbin:/sbin"
if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: go not found in PATH (nor in /usr/local/go/bin); install Go first: https://go.dev/dl/" >&2
	exit 2
fi

is_root=false
[ "$(id -u)" -eq 0 ] && is_root=true

step "environment"
note "$(go version)"
note "repo: $(pwd)"
note "root: $is_root   mode: $mode   CI: ${CI:-false}"

failed=()
run() { # run NAME CMD...: print and run a step, remember failures
	local name=$1
	shift
	step "$name"
	note "\$ $*"
	if "$@"; then
		note "ok: $name"
	else
		note "FAILED: $name (exit $?)"
		failed+=("$name")
	fi
}

# integration_test runs the root suite verbosely, so every SKIP shows its
# reason and every test its verdict, minus the === RUN noise.
integration_test() {
	go test -count=1 -v -timeout 15m "$@" 2>&1 | grep -v '^=== \(RUN\|PAUSE\|CONT\|NAME\)'
}

summary() {
	step "summary"
	if [ ${#failed[@]} -eq 0 ]; then
		note "all steps passed"
		exit 0
	fi
	note "failed steps: ${failed[*]}"
	exit 1
}

# Packages: integration/... is the root-only suite; everything else is unit
# and golden tests (a few may hold root tests that skip without root).
mapfile -t integration_pkgs < <(go list -e ./integration/... 2>/dev/null)
mapfile -t unit_pkgs < <(go list -e ./... | grep -v '/integration\(/\|$\)')

if [ "$mode" = update ]; then
	# Only packages whose tests define the -update flag accept it.
	update_pkgs=()
	for pkg in "${unit_pkgs[@]}"; do
		dir=$(go list -f '{{.Dir}}' "$pkg")
		if grep -qs 'flag\.Bool("update"' "$dir"/*_test.go; then
			update_pkgs+=("$pkg")
		fi
	done
	if [ ${#update_pkgs[@]} -eq 0 ]; then
		note "no package defines an -update flag yet: nothing to regenerate"
		exit 0
	fi
	run "regenerate golden files" go test -count=1 -run Golden "${update_pkgs[@]}" -args -update
	note "review the changes with: git diff -- '*/testdata/*'"
	summary
fi

# Tools the integration tests use.
need_tools=(nft iptables iptables-legacy ip ipset)
missing_tools() {
	local t out=()
	for t in "${need_tools[@]}"; do
		command -v "$t" >/dev/null 2>&1 || out+=("$t")
	done
	echo "${out[*]}"
}

if [ "$mode" = all ]; then
	step "integration tools: ${need_tools[*]}"
	missing=$(missing_tools)
	if [ -z "$missing" ]; then
		note "all present"
	elif ! $is_root; then
		note "missing: $missing; not root, so not installing them."
		note "integration tests will SKIP; run 'sudo ./scripts/test.sh' to run them."
	elif ! command -v apt-get >/dev/null 2>&1; then
		note "missing: $missing; no apt-get on this system: install nftables, iptables, iproute2 and ipset yourself."
		note "integration tests that need them will SKIP."
	else
		note "missing: $missing; installing nftables iptables iproute2 ipset with apt-get"
		export DEBIAN_FRONTEND=noninteractive
		if apt-get update -q && apt-get install -y -q --no-install-recommends nftables iptables iproute2 ipset; then
			missing=$(missing_tools)
			[ -n "$missing" ] && note "still missing after install: $missing (their tests will SKIP)"
		else
			note "apt-get failed"
			failed+=("install tools")
		fi
	fi
	if ! $is_root; then
		note "NOTE: not root: integration tests will SKIP (each says why)."
	fi
fi

run "go vet" go vet ./...

# Each example is linted on its own (several POLICY arguments merge into one
# policy); a directory is a policy only when it holds *.toml files.
run "hostwall lint --strict on every example" bash -c 'rc=0; bin=$(mktemp -d)/hostwall; go build -o "$bin" ./cmd/hostwall || exit 1; for e in examples/*.toml examples/*/; do case "$e" in */) compgen -G "$e*.toml" >/dev/null || continue ;; esac; "$bin" lint --strict "$e" || rc=1; done; exit $rc'

if [ "$mode" = all ] && $is_root; then
	# As root, tests that touch the kernel run for real: never trust a cached pass.
	run "unit and golden tests (no cache, root)" go test -count=1 -timeout 15m "${unit_pkgs[@]}"
else
	run "unit and golden tests" go test -timeout 15m "${unit_pkgs[@]}"
fi

if [ "$mode" = all ]; then
	if [ ${#integration_pkgs[@]} -eq 0 ]; then
		step "integration tests"
		note "no integration packages yet"
	else
		run "integration tests" integration_test "${integration_pkgs[@]}"
		if ! $is_root; then
			note "(integration tests above SKIPPED: not root)"
		fi
	fi
fi

summary
