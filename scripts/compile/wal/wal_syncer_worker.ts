/**
 * The WAL syncer worker in the binary, at the place `new URL("./wal/wal_syncer_worker.ts",
 * import.meta.url)` names there (see scripts/compile/walkv.ts).
 *
 * @example
 * scripts/build-binary.sh   # embeds this file as /$bunfs/root/wal/wal_syncer_worker.js
 */
import "../../../src/engine/wal/wal_syncer_worker.ts";
