# hostwall's recipes. `just` is optional (it is not in Debian 12's archive):
# every recipe is one plain command you can paste into a shell.

# List the recipes.
default:
    @just --list

# Build the hostwall binary into ./hostwall (static: it needs no libc, and
# starts about 1 ms sooner, which counts in a 20 ms apply).
build:
    CGO_ENABLED=0 go build -o hostwall ./cmd/hostwall

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

# Run each Fuzz* target for 30s from its seed corpus (FUZZTIME=2m just fuzz for longer).
fuzz:
    ./scripts/fuzz.sh

# Benchmarks (root, ~10 minutes): compile, apply (vs nft -f, iptables-legacy-restore)
# and packet path for N = 100 to 100,000; writes bench/results.md.
bench:
    go test -count=1 -timeout 30m -run '^TestBench$' -v ./bench -args -full -out results.md
