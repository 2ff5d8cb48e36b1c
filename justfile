# hostwall's recipes. `just` is optional (it is not in Debian 12's archive):
# every recipe is one plain command you can paste into a shell.

# List the recipes.
default:
    @just --list

# Build the hostwall binary into ./hostwall.
build:
    go build -o hostwall ./cmd/hostwall

# THE test command: vet, unit, golden and (as root) integration tests.
test:
    ./scripts/test.sh

# Unit and golden tests, no root needed.
unit:
    go test ./...

# Integration tests (root; network namespaces only).
integration:
    go test -count=1 ./integration/...

# Regenerate golden files, then review them with git diff.
golden:
    ./scripts/test.sh --update

# Run each Fuzz* target for 30s (FUZZTIME=2m just fuzz for longer).
fuzz:
    #!/usr/bin/env bash
    set -euo pipefail
    found=0
    for pkg in $(go list ./...); do
        for target in $(go test -list 'Fuzz.*' "$pkg" | grep '^Fuzz' || true); do
            found=1
            echo "==> $pkg $target"
            go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-30s}" "$pkg"
        done
    done
    [ "$found" = 1 ] || echo "no Fuzz targets yet"

# Benchmarks.
bench:
    go test -bench . -run '^$' ./...
