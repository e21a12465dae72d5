/**
 * The replay worker in the binary, at the place `new URL("./replay_worker.ts", import.meta.url)`
 * names there (see scripts/compile/walkv.ts).
 *
 * @example
 * scripts/build-binary.sh   # embeds this file as /$bunfs/root/replay_worker.js
 */
import "../../src/engine/replay_worker.ts";
