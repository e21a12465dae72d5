#!/bin/sh
# Builds the single walkv executable (default dist/walkv): the Bun runtime, walkv and its npm
# packages, and every worker entry point, embedded by `bun build --compile`. The result needs
# neither Bun nor node_modules. The entry points are the files of scripts/compile: walkv.ts (the
# command, first = main) and one per worker, placed where the workers' URLs point in the binary
# (see scripts/compile/walkv.ts).
#
# .env and bunfig.toml autoloading are off: a daemon must not change behaviour with the files in
# its working directory.
#
# usage: scripts/build-binary.sh [OUTFILE]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist/walkv}
entries="$root/scripts/compile"
mkdir -p "$(dirname "$out")"
IFS='
'
# shellcheck disable=SC2046 # one path per line, split on newlines only
exec "$root/node_modules/.bin/bun" build --compile \
  --no-compile-autoload-dotenv --no-compile-autoload-bunfig \
  --root "$entries" \
  "$entries/walkv.ts" \
  $(find "$entries" -name '*.ts' ! -path "$entries/walkv.ts" | sort) \
  --outfile "$out"
