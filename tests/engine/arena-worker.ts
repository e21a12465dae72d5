/**
 * Worker of the arena's multi-worker test: attaches to the posted arena, runs
 * {@link runChunkWorkload} and posts `{ ok, result }` or `{ ok: false, error }`.
 */
import { Arena, type ArenaShared } from "../../src/engine/arena.ts";
import { runChunkWorkload, type SizeMix } from "./arena-workload.ts";

declare const self: Worker;

/** The message the test posts to this worker. */
export interface ArenaWorkerRequest {
  shared: ArenaShared;
  worker_id: number;
  seed: number;
  ops: number;
  live_max: number;
  mix: SizeMix;
}

self.onmessage = (event: MessageEvent<ArenaWorkerRequest>) => {
  const { shared, worker_id, seed, ops, live_max, mix } = event.data;
  try {
    const result = runChunkWorkload(new Arena(shared), worker_id, seed, ops, live_max, mix);
    self.postMessage({ ok: true, result });
  } catch (error) {
    self.postMessage({ ok: false, error: String(error) });
  }
};
