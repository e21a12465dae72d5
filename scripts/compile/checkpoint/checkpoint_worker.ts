/**
 * The checkpointer worker in the binary, at the place `new URL("./checkpoint/checkpoint_worker.ts",
 * import.meta.url)` names there (see scripts/compile/walkv.ts).
 *
 * @example
 * scripts/build-binary.sh   # embeds this file as /$bunfs/root/checkpoint/checkpoint_worker.js
 */
import "../../../src/engine/checkpoint/checkpoint_worker.ts";
