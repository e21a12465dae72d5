# walkv — every entry point a developer, an operator or CI needs.
# Only Node/npm and make are required: Bun and Deno come from npm (pinned in package.json).

BUN  := node_modules/.bin/bun
DENO := node_modules/.bin/deno
TSC  := node_modules/.bin/tsc
BIOME := node_modules/.bin/biome
DATA ?= ./var/data
SOCKET ?= ./var/walkv.sock
DEMO_DATA ?= ./var/demo

.PHONY: install run demo build check lint fmt typecheck test bench torture soak profile clean

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: node_modules/.installed

# The daemon from source (Bun, workers = cores) on ./var/data and ./var/walkv.sock; Ctrl-C stops it.
run: install
	$(BUN) src/cli/main.ts serve --data $(DATA) --socket $(SOCKET)

# The engine demo (src/cli/demo.ts), on its own directory: it takes no pid file, so it must never
# share a data directory with a running daemon.
demo: install
	$(BUN) src/cli/demo.ts --data $(DEMO_DATA)

# One executable, dist/walkv, that needs neither Bun nor node_modules (scripts/build-binary.sh).
build: dist/walkv

dist/walkv: node_modules/.installed scripts/build-binary.sh $(shell find src scripts/compile -name '*.ts')
	scripts/build-binary.sh $@

typecheck: install
	$(TSC) -p tsconfig.json

lint: install
	$(BIOME) check src tests scripts

fmt: install
	$(BIOME) check --write src tests scripts

check: typecheck lint

test: check
	$(BUN) test

bench: install
	$(BUN) scripts/bench-engine.ts

# Crash torture: kill -9 a real daemon under concurrent writes (also mid-checkpoint), restart, check
# every acknowledged write (scripts/torture.ts). E.g. make torture TORTURE_ARGS="--minutes 30 --seed 7".
torture: install
	$(BUN) scripts/torture.ts $(TORTURE_ARGS)

# Soak: a steady mixed load with checkpoints for 10 minutes (SOAK_ARGS="--minutes 60" for longer);
# prints RSS, open fds, WAL size and latency over time and fails if any of them trends (scripts/soak.ts).
soak: install
	$(BUN) scripts/soak.ts $(SOAK_ARGS)

# Profile: a daemon under load for ~30 s; perf stat, strace -c and perf record (JIT frames named) into
# ./var/profile/<time>/: report.txt and flame.svg (scripts/profile.sh, docs/PROFILING.md). Needs root,
# perf and strace. E.g. make profile PROFILE_ARGS="--pipeline 16 --read-ratio 1".
profile: install
	scripts/profile.sh $(PROFILE_ARGS)

clean:
	rm -rf dist var
