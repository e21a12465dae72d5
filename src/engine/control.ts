/**
 * The engine's small shared control block: the stop flag the host raises for its workers, and the
 * status of the last checkpoint (published by the checkpointer under a seqlock, read by anyone).
 *
 * @example
 * const control = new EngineControl(createControlBuffer());
 * control.requestStop(true);        // host: the checkpointer writes a final checkpoint and exits
 * control.lastCheckpoint().redo_lsn // any thread
 */
const I_STOP = 0;
const I_CHECKPOINT_DONE = 1;
const I_STATUS_SEQ = 2;
const I_STOP_WRITER = 3;
const I32_WORDS = 16;
/** Values of the stop word (0: running). */
const STOP_WITH_CHECKPOINT = 1;
const STOP_WITHOUT_CHECKPOINT = 2;
const F_REDO_LSN = 0;
const F_BYTES = 1;
const F_DURATION_MS = 2;
const F_FINISHED_UNIX_MS = 3;
const F_COUNT = 4;
const F_ENTRIES = 5;
const F_FAILURES = 6;
const F_CELLS = 8;

/** Allocates the control block (owner thread). */
export function createControlBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(I32_WORDS * 4 + F_CELLS * 8);
}

/** What the last completed checkpoint wrote. All zero before the first. */
export interface CheckpointStatus {
  readonly redo_lsn: number;
  readonly bytes: number;
  readonly duration_ms: number;
  readonly finished_unix_ms: number;
  readonly count: number;
  readonly entries: number;
  readonly failures: number;
}

export class EngineControl {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;

  constructor(buffer: SharedArrayBuffer) {
    this.i32 = new Int32Array(buffer, 0, I32_WORDS);
    this.f64 = new Float64Array(buffer, I32_WORDS * 4, F_CELLS);
  }

  /**
   * Host: the checkpointer stops, after a final checkpoint if `final_checkpoint`. Without one when a
   * writer may have been cut off while it held shard mutexes (a drain that timed out): a scan would
   * wait for them forever, and the WAL carries every write anyway. A stop without a checkpoint
   * stands: a later request cannot turn it back into one with.
   */
  requestStop(final_checkpoint: boolean): void {
    const value = final_checkpoint ? STOP_WITH_CHECKPOINT : STOP_WITHOUT_CHECKPOINT;
    if (Atomics.load(this.i32, I_STOP) !== STOP_WITHOUT_CHECKPOINT) Atomics.store(this.i32, I_STOP, value);
    Atomics.notify(this.i32, I_STOP);
  }

  stopRequested(): boolean {
    return Atomics.load(this.i32, I_STOP) !== 0;
  }

  /**
   * Checkpointer: the host asked to stop without a final checkpoint, so a checkpoint running now is
   * abandoned too (see Checkpointer's `abandoned`).
   */
  finalCheckpointSkipped(): boolean {
    return Atomics.load(this.i32, I_STOP) === STOP_WITHOUT_CHECKPOINT;
  }

  /** Checkpointer, once stopped: whether the host asked for a final checkpoint. */
  finalCheckpointWanted(): boolean {
    return Atomics.load(this.i32, I_STOP) === STOP_WITH_CHECKPOINT;
  }

  /** Host, last step of a shutdown: the WAL writer flushes, syncs and exits. */
  requestWriterStop(): void {
    Atomics.store(this.i32, I_STOP_WRITER, 1);
  }

  writerStopRequested(): boolean {
    return Atomics.load(this.i32, I_STOP_WRITER) !== 0;
  }

  /** Completed checkpoints (successful or failed): changes and is notified after each. */
  checkpointDoneSeq(): number {
    return Atomics.load(this.i32, I_CHECKPOINT_DONE);
  }

  /** Waits (async) for the checkpoint counter to move past `seq`. */
  async waitCheckpointDone(seq: number, timeout_ms: number): Promise<void> {
    const result = Atomics.waitAsync(this.i32, I_CHECKPOINT_DONE, seq, timeout_ms);
    if (result.async) await result.value;
  }

  /** Checkpointer: publishes a finished checkpoint (or a failure) and wakes waiters. */
  publishCheckpoint(done: Omit<CheckpointStatus, "count" | "failures"> | undefined): void {
    Atomics.add(this.i32, I_STATUS_SEQ, 1);
    if (done === undefined) this.f64[F_FAILURES] = this.f64[F_FAILURES]! + 1;
    else {
      this.f64[F_REDO_LSN] = done.redo_lsn;
      this.f64[F_BYTES] = done.bytes;
      this.f64[F_DURATION_MS] = done.duration_ms;
      this.f64[F_FINISHED_UNIX_MS] = done.finished_unix_ms;
      this.f64[F_ENTRIES] = done.entries;
      this.f64[F_COUNT] = this.f64[F_COUNT]! + 1;
    }
    Atomics.add(this.i32, I_STATUS_SEQ, 1);
    Atomics.add(this.i32, I_CHECKPOINT_DONE, 1);
    Atomics.notify(this.i32, I_CHECKPOINT_DONE);
  }

  lastCheckpoint(): CheckpointStatus {
    for (;;) {
      const seq = Atomics.load(this.i32, I_STATUS_SEQ);
      if ((seq & 1) !== 0) continue;
      const status = {
        redo_lsn: this.f64[F_REDO_LSN]!,
        bytes: this.f64[F_BYTES]!,
        duration_ms: this.f64[F_DURATION_MS]!,
        finished_unix_ms: this.f64[F_FINISHED_UNIX_MS]!,
        count: this.f64[F_COUNT]!,
        entries: this.f64[F_ENTRIES]!,
        failures: this.f64[F_FAILURES]!,
      };
      if (Atomics.load(this.i32, I_STATUS_SEQ) === seq) return status;
    }
  }
}
