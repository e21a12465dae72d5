/**
 * The WAL writer on the thread that appends, for a daemon with one I/O worker: no hand-off to the
 * WAL writer worker and back for each batch (a futex wake, a pwrite on another thread, a wake of
 * this thread's event loop). The same {@link WalWriter} with the same rules runs here; only the
 * thread differs.
 *
 * With fsync `everysec` or `no`:
 * - Each append steps the writer at once, before its versions are linked (Engine's `write_now`,
 *   with the write's shard locks held): the record is written (write(2), the same one write per
 *   batch: the SET coalescer puts a whole event-loop turn of SETs in one record) and published, so
 *   the versions are linked visible, replacing the old ones, and the write resolves without
 *   waiting. So the ring never holds this thread's records between appends, and an append never
 *   waits for ring space while it holds shard locks. A failed write(2) rolls back what it could not
 *   write without the mutexes this thread holds (WalWriter's `shard_held`).
 * - A timer steps every {@link LOCAL_TICK_MS}: it starts the `everysec` fdatasync on the syncer's
 *   thread (wal_syncer.ts; this thread goes on) and publishes the LSN the last one made durable,
 *   and writes records other threads append. In a segment's last eighth the syncer also flushes
 *   what was written (`everysec` and `no`), so that the rotation's fdatasync here stays short.
 *   Rotation and shutdown wait for a syncer's fdatasync in flight before they sync and close the
 *   segment themselves.
 *
 * With fsync `always`, as Redis does it (its `appendfsync always` writes and fsyncs the AOF once per
 * event-loop turn, before it answers):
 * - Writes append their records and link their versions invisible, as on a threaded host (Engine's
 *   `write_soon`); the first append of a turn schedules one step, the last task of the turn's end
 *   ({@link turn_end}), which writes every complete record with one write(2), makes them durable with
 *   one fdatasync, publishes them and settles their writes. The event loop waits for that
 *   fdatasync, and requests that arrive meanwhile form the next turn's group: the group commit
 *   needs no linger and no wake-up of another thread.
 * - A failed write(2) or fdatasync fails the turn's writes as the WAL writer worker would.
 *
 * @example
 * const local = new LocalWalWriter(shared, { next_lsn, replayed_bytes }, log);
 * await local.engine.set(key, value); // written before it resolves
 * local.close(); // at shutdown: flushed, synced, file closed
 */
import { Engine, type EngineShared } from "../engine.ts";
import { assert, UnavailableError } from "../errors.ts";
import type { Io } from "../io/io.ts";
import { RealIo } from "../io/real_io.ts";
import { turn_end } from "../turn_end.ts";
import { WalSyncer } from "./wal_syncer.ts";
import { type WalStart, WalWriter, walWriterOptions } from "./wal_writer.ts";

/** How often the timer steps the writer (the `everysec` fdatasync is at most this late). */
export const LOCAL_TICK_MS = 50;

export class LocalWalWriter {
  /** This thread's engine: its writes are written by this writer. */
  readonly engine: Engine;
  private readonly writer: WalWriter;
  private readonly timer: ReturnType<typeof setInterval>;
  private stepping = false;
  private closed = false;
  /** fsync `always`: a step is scheduled for the end of this turn. */
  private step_scheduled = false;
  private readonly scheduled_step = () => {
    this.step_scheduled = false;
    this.step();
  };

  /** `io` is the file system's (RealIo) but in tests, which inject faults. */
  constructor(shared: EngineShared, start: WalStart, log: (line: string) => void, io: Io = new RealIo()) {
    const config = shared.config;
    assert(shared.local_wal_writer, "the host runs no WAL writer of its own (opened with local_wal_writer)");
    const always = config.fsync === "always";
    this.engine = new Engine(shared, {
      inline: {
        wait_for_space: () => this.makeSpace(),
        ...(always ? { write_soon: () => this.stepSoon() } : { write_now: () => this.step() }),
        writer_open: () => !this.closed,
      },
    });
    const options = walWriterOptions(config, log);
    const syncer = always ? undefined : new WalSyncer(shared.wal_sync);
    assert(
      syncer === undefined || syncer.running(),
      "the host runs the syncer (opened with local_wal_writer)",
    );
    this.writer = new WalWriter(
      io,
      this.engine.wal,
      this.engine.table,
      { ...options, background_sync: syncer, shard_held: (shard) => this.engine.holdsShard(shard) },
      start,
    );
    this.timer = setInterval(() => this.step(), LOCAL_TICK_MS);
    this.timer.unref?.();
  }

  /**
   * Writes and publishes everything complete, then settles this thread's waiting writes. An
   * exception from the writer (a bug: I/O errors are handled inside it) is also thrown
   * asynchronously, so that it ends the worker and the daemon fails fast, as it would on the WAL
   * writer worker.
   */
  step(): void {
    if (this.stepping || this.closed) return;
    this.stepping = true;
    try {
      while (this.writer.step()) {}
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
      throw error;
    } finally {
      this.stepping = false;
    }
    this.engine.poll();
  }

  /** fsync `always`: steps once at the end of this event-loop turn (see the class comment). */
  private stepSoon(): void {
    if (this.step_scheduled) return;
    this.step_scheduled = true;
    turn_end.last(this.scheduled_step);
  }

  /**
   * The ring is full while appending (this thread holds shard locks): the writer steps now, with
   * them held (a rollback then skips their mutexes: WalWriter's `shard_held`). With `everysec` or
   * `no`, only records of another thread can fill it (this thread steps after each append); with
   * `always`, also a turn whose records outgrow the ring: they are written and synced here, before
   * the end of the turn.
   */
  private makeSpace(): void {
    if (this.closed) throw new UnavailableError("the write-ahead log is closed");
    this.step();
  }

  /** Flushes and syncs what is complete, closes the segment (shutdown; nothing appends after it). */
  close(): void {
    if (this.closed) return;
    this.step();
    this.closed = true;
    clearInterval(this.timer);
    this.writer.close();
    this.engine.poll();
  }
}
