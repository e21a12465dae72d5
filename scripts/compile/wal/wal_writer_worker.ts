/**
 * The WAL writer worker in the binary, at the place `new URL("./wal/wal_writer_worker.ts",
 * import.meta.url)` names there (see scripts/compile/walkv.ts).
 *
 * @example
 * scripts/build-binary.sh   # embeds this file as /$bunfs/root/wal/wal_writer_worker.js
 */
import "../../../src/engine/wal/wal_writer_worker.ts";
