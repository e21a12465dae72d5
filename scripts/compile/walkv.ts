/**
 * Entry points of the single `walkv` binary (`make build` → scripts/build-binary.sh). Each file here
 * only imports one real entry point from src/; they exist for their *place*, not their code.
 *
 * Why: `bun build --compile` embeds every entry point at `/$bunfs/root/<path relative to --root>`,
 * names the main one after the executable (`/$bunfs/root/walkv`), and leaves
 * `new URL("./x.ts", import.meta.url)` as is — so in the binary every worker URL is resolved against
 * `/$bunfs/root/`, whichever source file it is written in. These files mirror those URLs:
 *
 *   src/server/daemon.ts  new URL("./io_worker.ts", …)                    → io_worker.ts
 *   src/engine/host.ts    new URL("./wal/wal_writer_worker.ts", …)        → wal/wal_writer_worker.ts
 *   src/engine/host.ts    new URL("./wal/wal_syncer_worker.ts", …)        → wal/wal_syncer_worker.ts
 *   src/engine/host.ts    new URL("./checkpoint/checkpoint_worker.ts", …) → checkpoint/checkpoint_worker.ts
 *   src/engine/host.ts    new URL("./replay_worker.ts", …)                → replay_worker.ts
 *   src/server/shutdown_watchdog.ts  new URL("./shutdown_watchdog_worker.ts", …) → shutdown_watchdog_worker.ts
 *
 * From source (Bun or Deno) the same URLs resolve next to daemon.ts / host.ts. A new worker, or a
 * changed URL, needs its file here (scripts/build-binary.sh embeds every .ts of this directory);
 * tests/dist/binary.test.ts checks that the files here and the worker URLs in src/ agree.
 *
 * @example
 * scripts/build-binary.sh dist/walkv   # embeds this file as /$bunfs/root/walkv
 */
import "../../src/cli/main.ts";
