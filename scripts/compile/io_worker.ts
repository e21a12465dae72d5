/**
 * The I/O worker in the binary, at the place `new URL("./io_worker.ts", import.meta.url)` names
 * there (see scripts/compile/walkv.ts).
 *
 * @example
 * scripts/build-binary.sh   # embeds this file as /$bunfs/root/io_worker.js
 */
import "../../src/server/io_worker.ts";
