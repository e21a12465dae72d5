# walkv — every entry point a developer, an operator or CI needs.
# Only Node/npm and make are required: Bun and Deno come from npm (pinned in package.json).

BUN  := node_modules/.bin/bun
DENO := node_modules/.bin/deno
TSC  := node_modules/.bin/tsc
BIOME := node_modules/.bin/biome
DATA ?= var/data

.PHONY: install run demo check lint fmt typecheck test bench clean

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: node_modules/.installed

# Until the daemon lands ([2/4]), `make run` runs the engine demo on ./var/data.
run: install
	$(BUN) src/cli/demo.ts --data $(DATA)

demo: run

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

clean:
	rm -rf dist var
