/**
 * A repro outside walkv of the soak's RSS growth (docs/RELIABILITY.md "Soak"): a worker that holds a
 * SharedArrayBuffer of `--sab-mib` and makes short-lived garbage in a loop that blocks in
 * `Atomics.wait` and never returns to its event loop (as walkv's WAL writer and checkpointer). Every
 * 2 s it prints the process RSS and its JavaScriptCore heap. JavaScriptCore counts the shared buffer
 * as the thread's extra memory (twice) and sizes its collection budget by it, so the garbage kept
 * grows with the buffer. `--mode yield` returns to the event loop each round; `--mode gc` forces a
 * full collection every 2 s (walkv's fix for its blocking workers).
 *
 * @example
 * node_modules/.bin/bun scripts/sab_gc_repro.ts --sab-mib 256 --mode sync --seconds 20
 */
import { heapStats } from "bun:jsc";
import { parseArgs } from "node:util";
import { procStatusBytes } from "./proc_status.ts";

const { values } = parseArgs({
  options: {
    "sab-mib": { type: "string", default: "256" },
    mode: { type: "string", default: "sync" },
    seconds: { type: "string", default: "20" },
  },
});
const REPORT_MS = 2000;

if (Bun.isMainThread) {
  const sab = new SharedArrayBuffer(Number(values["sab-mib"]) * 2 ** 20);
  new Uint8Array(sab).fill(1); // resident, like a filled arena
  const worker = new Worker(import.meta.url, { argv: process.argv.slice(2) } as WorkerOptions);
  worker.onmessage = (event: MessageEvent) => {
    if (event.data.done) process.exit(0);
    console.log(JSON.stringify(event.data));
  };
  worker.postMessage({ sab });
} else {
  self.onmessage = async (event: MessageEvent) => {
    const view = new Uint8Array(event.data.sab as SharedArrayBuffer);
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    const started_ms = Date.now();
    let reported_ms = started_ms;
    let sink = 0;
    while (Date.now() - started_ms < Number(values.seconds) * 1000) {
      for (let i = 0; i < 20_000; i++) sink += [i, view.subarray(i, i + 16), { at: i }].length;
      Atomics.wait(sleeper, 0, 0, 1); // a blocking wait, as the WAL writer's doorbell
      if (values.mode === "yield") await new Promise((resolve) => setTimeout(resolve, 0));
      if (Date.now() - reported_ms < REPORT_MS) continue;
      reported_ms = Date.now();
      if (values.mode === "gc") Bun.gc(true);
      const heap = heapStats();
      const rss_kib = procStatusBytes("self") / 1024;
      postMessage({
        t_s: Math.round((reported_ms - started_ms) / 1000),
        rss_mib: Math.round(rss_kib / 1024),
        heap_capacity_mib: Math.round(heap.heapCapacity / 2 ** 20),
        extra_memory_mib: Math.round(heap.extraMemorySize / 2 ** 20),
      });
    }
    postMessage({ done: true, sink });
  };
}
