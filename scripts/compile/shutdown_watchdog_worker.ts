/**
 * The shutdown watchdog in the binary, at the place `new URL("./shutdown_watchdog_worker.ts",
 * import.meta.url)` names there (see scripts/compile/walkv.ts).
 *
 * @example
 * scripts/build-binary.sh   # embeds this file as /$bunfs/root/shutdown_watchdog_worker.js
 */
import "../../src/server/shutdown_watchdog_worker.ts";
