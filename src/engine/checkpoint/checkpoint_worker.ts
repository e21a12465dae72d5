/**
 * Worker entry point of the checkpointer. Receives `{ shared }`, answers `{ ready: true }`, then runs
 * a checkpoint whenever one is requested (the `checkpoint` op, the WAL writer past
 * `checkpoint_wal_bytes`) or `checkpoint_interval_ms` has passed. When the host raises the stop flag
 * it writes a final checkpoint and answers `{ exited: true }`. A stop without a final checkpoint also
 * makes a checkpoint that waits for a shard's mutex give up (see Checkpointer's `abandoned`). The
 * loop never returns to the event loop, so each checkpoint ends with a full garbage collection
 * (gc_pacer.ts explains why).
 */
import { Arena } from "../arena.ts";
import { EngineControl } from "../control.ts";
import type { EngineShared } from "../engine.ts";
import { collectGarbage } from "../gc_pacer.ts";
import { makeDurable } from "../host.ts";
import { RealIo } from "../io/real_io.ts";
import { Table } from "../table.ts";
import { WAL_STOPPED, WalBuffer } from "../wal/wal_buffer.ts";
import { Checkpointer } from "./checkpointer.ts";

declare const self: Worker;

/** Longest block on the request word, so the stop flag is seen promptly. */
const POLL_MS = 1000;

self.onmessage = (event: MessageEvent) => {
  const { shared } = event.data as { shared: EngineShared };
  const config = shared.config;
  const wal = new WalBuffer(shared.wal);
  const control = new EngineControl(shared.control);
  const log = (line: string) => self.postMessage({ log: line });
  const table = new Table(shared.table, new Arena(shared.arena));
  const io = new RealIo();
  const checkpointer = new Checkpointer(io, config, table, wal, {
    make_durable: (lsn) => makeDurable(io, wal, `${config.data_dir}/wal`, lsn),
    log,
    abandoned: () => control.finalCheckpointSkipped(),
  });
  const runOnce = () => {
    try {
      const result = checkpointer.run();
      control.publishCheckpoint({ ...result, finished_unix_ms: Date.now() });
    } catch (error) {
      log(`checkpoint failed: ${error instanceof Error ? error.message : String(error)}`);
      control.publishCheckpoint(undefined);
    }
  };
  self.postMessage({ ready: true });
  let last_ms = Date.now();
  // The request sequence already served: a request made while a checkpoint runs is not lost, it
  // starts the next one at once.
  let served_seq = wal.checkpointSeq();
  while (!control.stopRequested()) {
    const interval_ms = config.checkpoint_interval_ms;
    const due_in_ms = interval_ms === 0 ? POLL_MS : Math.max(0, last_ms + interval_ms - Date.now());
    wal.waitCheckpointRequest(served_seq, Math.min(POLL_MS, due_in_ms));
    const seq = wal.checkpointSeq();
    const timer_due = interval_ms > 0 && Date.now() - last_ms >= interval_ms;
    if (seq === served_seq && !timer_due) continue;
    // Read after the sequence: the host raises the stop before it rings (a request) to wake this
    // loop, so that wake-up never runs a checkpoint after a stop without one.
    if (control.stopRequested()) break;
    served_seq = seq;
    runOnce();
    collectGarbage(); // this loop never returns to the event loop: see gc_pacer.ts
    last_ms = Date.now();
  }
  if (wal.state() !== WAL_STOPPED && control.finalCheckpointWanted()) runOnce();
  self.postMessage({ exited: true });
};
