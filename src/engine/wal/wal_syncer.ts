/**
 * The `everysec` fdatasync on its own thread (and, with `everysec` or `no`, the early fdatasyncs of a
 * segment's last eighth, so that the rotation's own fdatasync stays short). With one I/O worker the
 * WAL is written by that worker ({@link LocalWalWriter}); a once-a-second fdatasync there stopped
 * its event loop for the length of the fdatasync (17–33 ms under load here). Redis runs this fsync
 * on a background thread; so does walkv: the writer names the segment and the LSN it has written
 * to a syncer worker and goes on writing; the syncer's fdatasync covers every write made before it
 * started, and the LSN it finished is read back by the writer on its next step, which then
 * publishes it as durable.
 *
 * Rules (each keeps a failed fdatasync from being missed or over-claimed):
 * - The syncer syncs its own descriptor of the segment (descriptors are per worker in Deno; fdatasync
 *   flushes the file, whichever descriptor wrote it), opened by path as soon as the writer has
 *   created the segment ({@link WalSyncer.adopt}: before its first record) and kept while it is
 *   current. Linux (4.16 on) reports a writeback error to every description open on the file when
 *   it happens (and to one opened later only if no description has seen it yet); so each error
 *   reaches the syncer's fdatasync or one of the writer's, and either stops the log.
 * - One request (an fdatasync or an adopt) at a time; the writer waits for the one in flight
 *   ({@link WalSyncer.waitIdle}) before it syncs the segment itself (rotation, shutdown, an explicit
 *   sync), so a request's segment is the current one while it runs and no result arrives after the
 *   writer moved on.
 * - A failed fdatasync stops the log for good, as on the writer (WAL_STOPPED with the reason).
 * - Durable only advances to what a successful fdatasync covered.
 *
 * Shared words: `requested` and `done` sequence numbers, a stop flag; the request's segment (its
 * first LSN) and LSN, and the highest LSN synced so far.
 *
 * Two classes, one per side: {@link WalSyncer} is the writer's, {@link WalSyncerService} the syncer
 * thread's.
 *
 * @example
 * const syncer = new WalSyncer(createSyncerBuffer());       // writer side
 * if (!syncer.busy()) syncer.request(segment_first_lsn, written_lsn);
 * durable_lsn = Math.max(durable_lsn, syncer.syncedLsn()); // later
 * syncer.waitIdle();                                        // before syncing the segment itself
 * // syncer worker: see WalSyncerService
 */
import { assert, describeFailure } from "../errors.ts";
import { closeQuietly, type FileId, type Io } from "../io/io.ts";
import { segmentName } from "./format.ts";
import { WAL_STOPPED, type WalBuffer } from "./wal_buffer.ts";

const I_REQUESTED = 0;
const I_DONE = 1;
const I_STOP = 2;
const I_RUNNING = 3;
const I32_WORDS = 4;
const F_SEGMENT_FIRST_LSN = 0;
const F_TARGET_LSN = 1;
const F_SYNCED_LSN = 2;
const F_CELLS = 3;
/** F_TARGET_LSN of an {@link WalSyncer.adopt} request: open the segment, sync nothing. */
const ADOPT_ONLY = -1;

/** Allocates the syncer's shared words (the host, once). */
export function createSyncerBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(I32_WORDS * 4 + F_CELLS * 8);
}

/** The writer's view of a background fdatasync (what {@link WalWriter} needs of a syncer). */
export interface BackgroundSync {
  /** True while a request (an fdatasync or an adopt) has not finished. */
  busy(): boolean;
  /**
   * Asks for an fdatasync of the current segment (named by its first LSN), which holds every record
   * up to `lsn`. Only when not busy.
   */
  request(segment_first_lsn: number, lsn: number): void;
  /**
   * A new segment (named by its first LSN) is current: returns once the syncer holds its descriptor
   * of it (and let go of the previous one), so the writer writes no record there before. Waits for a
   * request in flight first. If the open fails, the syncer logs it and opens the segment on its next
   * fdatasync request instead.
   */
  adopt(segment_first_lsn: number): void;
  /** The highest LSN a finished fdatasync made durable (0 before any). */
  syncedLsn(): number;
  /** Returns once no request is in flight. */
  waitIdle(): void;
}

/** The two views of the shared words: four Int32 words, then three Float64 cells. */
function syncerWords(buffer: SharedArrayBuffer): { i32: Int32Array; f64: Float64Array } {
  return { i32: new Int32Array(buffer, 0, I32_WORDS), f64: new Float64Array(buffer, I32_WORDS * 4, F_CELLS) };
}

/** The writer's side (and the host's, to stop the syncer): asks for fdatasyncs, reads their results. */
export class WalSyncer implements BackgroundSync {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;

  /**
   * `inline` (single-threaded simulation tests): {@link waitIdle} serves the request itself, on this
   * thread, instead of waiting for a syncer thread.
   */
  constructor(
    buffer: SharedArrayBuffer,
    private readonly inline?: WalSyncerService,
  ) {
    ({ i32: this.i32, f64: this.f64 } = syncerWords(buffer));
  }

  busy(): boolean {
    return Atomics.load(this.i32, I_REQUESTED) !== Atomics.load(this.i32, I_DONE);
  }

  request(segment_first_lsn: number, lsn: number): void {
    assert(!this.busy(), "one background fdatasync at a time");
    assert(lsn > this.syncedLsn() && lsn >= segment_first_lsn, "a request covers new records");
    this.post(segment_first_lsn, lsn);
  }

  private post(segment_first_lsn: number, target_lsn: number): void {
    this.f64[F_SEGMENT_FIRST_LSN] = segment_first_lsn;
    this.f64[F_TARGET_LSN] = target_lsn;
    Atomics.add(this.i32, I_REQUESTED, 1);
    Atomics.notify(this.i32, I_REQUESTED);
  }

  adopt(segment_first_lsn: number): void {
    this.waitIdle();
    this.post(segment_first_lsn, ADOPT_ONLY);
    this.waitIdle();
  }

  syncedLsn(): number {
    Atomics.load(this.i32, I_DONE); // orders the read after the syncer's store of `done`
    return this.f64[F_SYNCED_LSN]!;
  }

  waitIdle(): void {
    if (this.inline !== undefined) {
      this.inline.serve(0);
      return;
    }
    for (;;) {
      const done = Atomics.load(this.i32, I_DONE);
      if (Atomics.load(this.i32, I_REQUESTED) === done) return;
      Atomics.wait(this.i32, I_DONE, done, 100);
    }
  }

  /** True if a thread serves requests (or this one does, inline): else waitIdle would never return. */
  running(): boolean {
    return this.inline !== undefined || Atomics.load(this.i32, I_RUNNING) === 1;
  }

  /** Host, at shutdown (before it syncs the log's end itself): the syncer thread ends. */
  requestStop(): void {
    Atomics.store(this.i32, I_STOP, 1);
    Atomics.notify(this.i32, I_REQUESTED);
  }
}

/**
 * The syncer thread's side: serves the writer's requests one at a time, through one descriptor of the
 * current segment, opened when the writer creates the segment ({@link WalSyncer.adopt}) and kept until
 * the next one is adopted (or the thread ends). Kept, not opened per request: a description open when
 * a writeback error happens reports it even if another description (a checkpoint's, a backup tool's)
 * saw it first; a description opened after that would not, and its fdatasync would claim lost pages
 * durable.
 *
 * @example
 * const service = new WalSyncerService(shared.wal_sync, { io, wal, wal_dir, log });
 * service.markRunning();
 * while (!service.stopRequested()) service.serve(1000);
 * service.close();
 */
export class WalSyncerService {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  /** Its descriptor of the segment it synced last, and which segment that is. */
  private file: FileId | undefined;
  private file_segment_first_lsn = 0;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly thread: SyncerThread,
  ) {
    ({ i32: this.i32, f64: this.f64 } = syncerWords(buffer));
  }

  /** Once, before it serves: writers may rely on it from now on. */
  markRunning(): void {
    Atomics.store(this.i32, I_RUNNING, 1);
  }

  stopRequested(): boolean {
    return Atomics.load(this.i32, I_STOP) !== 0;
  }

  /**
   * Waits up to `wait_ms` for a request, then runs it: an adopt opens the segment's descriptor (and
   * closes the previous one); a sync runs fdatasync on it, and on success the synced LSN moves to the
   * request's. A failure of either stops the log. Returns true if it ran one.
   */
  serve(wait_ms: number): boolean {
    const requested = Atomics.load(this.i32, I_REQUESTED);
    if (requested === Atomics.load(this.i32, I_DONE)) {
      if (wait_ms > 0) Atomics.wait(this.i32, I_REQUESTED, requested, wait_ms);
      return false;
    }
    const lsn = this.f64[F_TARGET_LSN]!;
    const ok = this.syncSegment(this.f64[F_SEGMENT_FIRST_LSN]!, lsn !== ADOPT_ONLY);
    if (ok && lsn !== ADOPT_ONLY) this.f64[F_SYNCED_LSN] = lsn;
    Atomics.store(this.i32, I_DONE, requested);
    Atomics.notify(this.i32, I_DONE);
    return true;
  }

  /** Closes its descriptor (when the thread ends). */
  close(): void {
    if (this.file !== undefined) closeQuietly(this.thread.io, this.file);
    this.file = undefined;
  }

  /**
   * Opens its descriptor of segment `segment_first_lsn` unless it holds it, then (if `sync`) runs
   * fdatasync on it. A failed fdatasync (or the open before it) stops the log; a failed open of an
   * adopt only leaves the segment to be opened by the next request (it claimed nothing, and a
   * transient EMFILE must not stop every write).
   */
  private syncSegment(segment_first_lsn: number, sync: boolean): boolean {
    const { io, wal, log } = this.thread;
    const path = `${this.thread.wal_dir}/${segmentName(segment_first_lsn)}`;
    try {
      if (this.file === undefined || this.file_segment_first_lsn !== segment_first_lsn) {
        this.close();
        this.file = io.open(path);
        this.file_segment_first_lsn = segment_first_lsn;
      }
      if (sync) io.sync(this.file);
      return true;
    } catch (error) {
      if (!sync) {
        log(
          `wal: background open of ${path} failed (${describeFailure(error)}); retried at its next fdatasync`,
        );
        return false;
      }
      const message = `background fdatasync of ${path} failed (${describeFailure(error)}); writes stopped until restart`;
      log(`wal: ${message}`);
      wal.setState(WAL_STOPPED, message);
      return false;
    }
  }
}

/** What the syncer's thread works with: its Io, the shared WAL buffer, the WAL directory, its log. */
export interface SyncerThread {
  readonly io: Io;
  readonly wal: WalBuffer;
  readonly wal_dir: string;
  readonly log: (line: string) => void;
}
