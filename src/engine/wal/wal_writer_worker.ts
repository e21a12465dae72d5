/**
 * Worker entry point of the WAL writer. Receives `{ shared, next_lsn, replayed_bytes }`, answers `{ ready: true }`,
 * then loops (blocking on the WAL buffer's doorbell) until the host raises the writer-stop flag;
 * then flushes and syncs everything complete and answers `{ exited: true }`.
 * Log lines go to the host as `{ log }`. The loop never returns to the event loop, so it collects its
 * own garbage (gc_pacer.ts explains why).
 */
import { Arena } from "../arena.ts";
import { EngineControl } from "../control.ts";
import type { EngineShared } from "../engine.ts";
import { GcPacer, WAL_WRITER_GC_INTERVAL_MS } from "../gc_pacer.ts";
import { RealIo } from "../io/real_io.ts";
import { Table } from "../table.ts";
import { WalBuffer } from "./wal_buffer.ts";
import { WalWriter, walWriterOptions } from "./wal_writer.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent) => {
  const { shared, next_lsn, replayed_bytes } = event.data as {
    shared: EngineShared;
    next_lsn: number;
    replayed_bytes: number;
  };
  const config = shared.config;
  const buffer = new WalBuffer(shared.wal);
  const control = new EngineControl(shared.control);
  const log = (line: string) => self.postMessage({ log: line });
  const writer = new WalWriter(
    new RealIo(),
    buffer,
    new Table(shared.table, new Arena(shared.arena)),
    walWriterOptions(config, log),
    { next_lsn, replayed_bytes },
  );
  const pacer = new GcPacer(WAL_WRITER_GC_INTERVAL_MS);
  self.postMessage({ ready: true });
  while (!control.writerStopRequested()) {
    writer.waitAndStep();
    pacer.collectIfDue();
  }
  writer.close(control.lastCheckpoint().redo_lsn);
  self.postMessage({ exited: true });
};
