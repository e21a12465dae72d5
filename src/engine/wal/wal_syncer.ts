/**
 * The `everysec` fdatasync on its own thread. With one I/O worker the WAL is written by that worker
 * ({@link LocalWalWriter}); a once-a-second fdatasync there stopped its event loop for the length of
 * the fdatasync (17–33 ms under load here). Redis runs this fsync on a background thread; so does
 * walkv: the writer hands the segment's descriptor and the LSN it has written to a syncer worker and
 * goes on writing; the syncer's fdatasync covers every write made before it started, and the LSN it
 * finished is read back by the writer on its next step, which then publishes it as durable.
 *
 * Rules (each keeps a failed fdatasync from ever being missed or over-claimed):
 * - One request at a time, on the writer's own descriptor: the writer never issues another fdatasync
 *   (rotation, shutdown, an explicit sync) or closes that descriptor while a request is in flight —
 *   it waits for it first ({@link WalSyncer.waitIdle}). So no two fdatasyncs race on one file
 *   description (the kernel reports a writeback error once per description), and the descriptor
 *   cannot be closed and its number reused under the syncer.
 * - A failed fdatasync stops the log for good, as on the writer (WAL_STOPPED with the reason).
 * - Durable only advances to what a successful fdatasync covered.
 *
 * Shared words: `requested` and `done` sequence numbers, a stop flag; the request's descriptor and
 * LSN, and the highest LSN synced so far.
 *
 * @example
 * const syncer = new WalSyncer(createSyncerBuffer());       // writer side
 * if (!syncer.busy()) syncer.request(fd, written_lsn);
 * durable_lsn = Math.max(durable_lsn, syncer.syncedLsn()); // later
 * syncer.waitIdle(); io.close(fd);                          // before closing the descriptor
 * // syncer worker: while (!syncer.stopRequested()) syncer.serve(io, wal, log, 1000);
 */
import { assert, describeFailure } from "../errors.ts";
import type { FileId, Io } from "../io/io.ts";
import { WAL_STOPPED, type WalBuffer } from "./wal_buffer.ts";

const I_REQUESTED = 0;
const I_DONE = 1;
const I_STOP = 2;
const I32_WORDS = 4;
const F_FILE = 0;
const F_TARGET_LSN = 1;
const F_SYNCED_LSN = 2;
const F_CELLS = 3;

/** Allocates the syncer's shared words (the host, once). */
export function createSyncerBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(I32_WORDS * 4 + F_CELLS * 8);
}

/** The writer's view of a background fdatasync (what {@link WalWriter} needs of a syncer). */
export interface BackgroundSync {
  /** True while a requested fdatasync has not finished. */
  busy(): boolean;
  /** Asks for an fdatasync of `file`, which holds every record up to `lsn`. Only when not busy. */
  request(file: FileId, lsn: number): void;
  /** The highest LSN a finished fdatasync made durable (0 before any). */
  syncedLsn(): number;
  /** Returns once no fdatasync is in flight. */
  waitIdle(): void;
}

export class WalSyncer implements BackgroundSync {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /**
   * Single-threaded use (simulation tests): {@link waitIdle} serves the request itself, with this
   * Io and WAL buffer, instead of waiting for a syncer thread.
   */
  private readonly inline: { io: Io; wal: WalBuffer; log: (line: string) => void } | undefined;

  constructor(buffer: SharedArrayBuffer, inline?: { io: Io; wal: WalBuffer; log: (line: string) => void }) {
    this.i32 = new Int32Array(buffer, 0, I32_WORDS);
    this.f64 = new Float64Array(buffer, I32_WORDS * 4, F_CELLS);
    this.inline = inline;
  }

  busy(): boolean {
    return Atomics.load(this.i32, I_REQUESTED) !== Atomics.load(this.i32, I_DONE);
  }

  request(file: FileId, lsn: number): void {
    assert(!this.busy(), "one background fdatasync at a time");
    assert(lsn > this.syncedLsn(), "a request covers new records");
    this.f64[F_FILE] = file;
    this.f64[F_TARGET_LSN] = lsn;
    Atomics.add(this.i32, I_REQUESTED, 1);
    Atomics.notify(this.i32, I_REQUESTED);
  }

  syncedLsn(): number {
    Atomics.load(this.i32, I_DONE); // orders the read after the syncer's store of `done`
    return this.f64[F_SYNCED_LSN]!;
  }

  waitIdle(): void {
    if (this.inline !== undefined) {
      const { io, wal, log } = this.inline;
      this.serve(io, wal, log, 0);
      return;
    }
    for (;;) {
      const done = Atomics.load(this.i32, I_DONE);
      if (Atomics.load(this.i32, I_REQUESTED) === done) return;
      Atomics.wait(this.i32, I_DONE, done, 100);
    }
  }

  /** Host, at shutdown (after the writer closed the log): the syncer thread ends. */
  requestStop(): void {
    Atomics.store(this.i32, I_STOP, 1);
    Atomics.notify(this.i32, I_REQUESTED);
  }

  stopRequested(): boolean {
    return Atomics.load(this.i32, I_STOP) !== 0;
  }

  /**
   * Syncer side: waits up to `wait_ms` for a request, then runs it: fdatasync of the descriptor;
   * on success the synced LSN moves to the request's, on failure the log stops. Returns true if it
   * ran one.
   */
  serve(io: Io, wal: WalBuffer, log: (line: string) => void, wait_ms: number): boolean {
    const requested = Atomics.load(this.i32, I_REQUESTED);
    if (requested === Atomics.load(this.i32, I_DONE)) {
      if (wait_ms > 0) Atomics.wait(this.i32, I_REQUESTED, requested, wait_ms);
      return false;
    }
    const file = this.f64[F_FILE]!;
    const lsn = this.f64[F_TARGET_LSN]!;
    try {
      io.sync(file);
      this.f64[F_SYNCED_LSN] = lsn;
    } catch (error) {
      const message = `background fdatasync of the WAL failed (${describeFailure(error)}); writes stopped until restart`;
      log(`wal: ${message}`);
      wal.setState(WAL_STOPPED, message);
    }
    Atomics.store(this.i32, I_DONE, requested);
    Atomics.notify(this.i32, I_DONE);
    return true;
  }
}
