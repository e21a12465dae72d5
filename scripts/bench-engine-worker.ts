/**
 * Worker of scripts/bench-engine.ts: attaches an {@link Engine} to the posted `shared`, builds the key
 * space, answers `{ ready: true }`, then on `{ go: true }` runs the posted job for `duration_ms` and
 * answers `{ ops, elapsed_ms }` (or `{ error }`).
 *
 * - `get`: a tight loop of `engine.get` on random keys (every key is preloaded).
 * - `set`: `inflight` lanes, each awaiting one `engine.set` of a random key at a time, so `inflight`
 *   writes are outstanding at once and the WAL writer can group-commit them; every set's latency
 *   is returned.
 *
 * @example
 * const worker = new Worker(new URL("./bench-engine-worker.ts", import.meta.url).href, { type: "module" });
 * worker.postMessage({ shared: host.shared, kind: "get", key_count: 100_000, ... });
 */
import { Engine, type EngineShared } from "../src/engine/engine.ts";
import { prng, randomInt } from "../src/engine/io/prng.ts";
import { benchKey, benchValue } from "./bench-engine.ts";

declare const self: Worker;

/** The job the benchmark posts to each worker. */
export interface BenchWorkerJob {
  readonly shared: EngineShared;
  readonly kind: "get" | "set";
  readonly key_count: number;
  readonly value_bytes: number;
  readonly duration_ms: number;
  /** Outstanding writes per worker (`set` only). */
  readonly inflight: number;
  readonly seed: number;
}

/** What a worker answers when its run is over. */
export interface BenchWorkerResult {
  readonly ops: number;
  readonly elapsed_ms: number;
  readonly misses: number;
  /** Latency of every set (ms), in completion order; empty for gets. */
  readonly latencies_ms: Float64Array;
}

/** Reads between two looks at the clock in the get loop. */
const GET_CLOCK_STRIDE = 1024;
/** Distinct values a set worker cycles through. */
const VALUE_VARIANTS = 16;

let job: BenchWorkerJob | undefined;
let keys: Uint8Array[] = [];

self.onmessage = (event: MessageEvent) => {
  const message = event.data as { job?: BenchWorkerJob; go?: boolean };
  if (message.job !== undefined) {
    job = message.job;
    keys = Array.from({ length: job.key_count }, (_, i) => benchKey(i));
    self.postMessage({ ready: true });
    return;
  }
  if (message.go && job !== undefined) {
    const running = job.kind === "get" ? Promise.resolve(runGets(job)) : runSets(job);
    running.then(
      (result) => self.postMessage(result),
      (error: unknown) => self.postMessage({ error: String(error) }),
    );
  }
};

function runGets(job: BenchWorkerJob): BenchWorkerResult {
  const engine = new Engine(job.shared);
  const rng = prng(job.seed);
  const started_ms = performance.now();
  const deadline_ms = started_ms + job.duration_ms;
  let ops = 0;
  let misses = 0;
  while (performance.now() < deadline_ms) {
    for (let i = 0; i < GET_CLOCK_STRIDE; i++) {
      if (engine.get(keys[randomInt(rng, keys.length)]!) === undefined) misses++;
    }
    ops += GET_CLOCK_STRIDE;
  }
  return { ops, elapsed_ms: performance.now() - started_ms, misses, latencies_ms: new Float64Array(0) };
}

async function runSets(job: BenchWorkerJob): Promise<BenchWorkerResult> {
  const engine = new Engine(job.shared);
  const rng = prng(job.seed);
  const values = Array.from({ length: VALUE_VARIANTS }, (_, i) => benchValue(job.seed + i, job.value_bytes));
  const started_ms = performance.now();
  const deadline_ms = started_ms + job.duration_ms;
  const latencies_ms: number[] = [];
  const lane = async () => {
    for (let now_ms = performance.now(); now_ms < deadline_ms; ) {
      await engine.set(keys[randomInt(rng, keys.length)]!, values[latencies_ms.length % VALUE_VARIANTS]!);
      const done_ms = performance.now();
      latencies_ms.push(done_ms - now_ms);
      now_ms = done_ms;
    }
  };
  await Promise.all(Array.from({ length: job.inflight }, lane));
  return {
    ops: latencies_ms.length,
    elapsed_ms: performance.now() - started_ms,
    misses: 0,
    latencies_ms: Float64Array.from(latencies_ms),
  };
}
