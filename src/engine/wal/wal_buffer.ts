/**
 * The shared WAL buffer: a ring in a SharedArrayBuffer into which any thread appends encoded WAL
 * records, and from which the WAL writer (one thread) copies completed records, in LSN order, to the
 * segment files. It also publishes the LSNs every thread reads: `visible` (what readers may see),
 * `written` (handed to the OS: survives kill -9) and `durable` (fdatasync'ed: survives power loss).
 *
 * Protocol of an append (the caller holds the table shard mutexes of every key it writes, so the
 * LSN order of two writes of one key is the order in which they reach the table):
 *   const lsn = buffer.reserve(size_bytes);          // LSN + contiguous space, under the ring mutex
 *   encodeRecord(lsn, entries, buffer.ring, buffer.reservedOffset(lsn));
 *   … install the versions in the table …
 *   buffer.complete(lsn);                             // the writer may now flush it
 * A record reserved is always completed (the WAL writer flushes LSNs strictly in order).
 *
 * Published numbers are 53-bit integers in Float64 cells guarded by one seqlock (`PUBLISH_SEQ`),
 * written only by the WAL writer; waiting threads wait on that same word.
 *
 * @example
 * const shared = createWalBufferShared({ ring_bytes: 32 << 20 });
 * const buffer = new WalBuffer(shared);   // in any thread
 * buffer.visibleLsn();                     // the LSN readers may see
 */
import { assert, UnavailableError } from "../errors.ts";
import { lock, unlock } from "../locks.ts";

// Int32 words of the control block.
const I_LOCK = 0;
const I_DOORBELL = 1;
const I_PUBLISH_SEQ = 2;
const I_STATE = 3;
const I_EPOCH = 4;
const I_WRITER_SLEEPING = 5;
const I_SPACE_WAITERS = 6;
const I_CHECKPOINT_SEQ = 7;
const I_ERROR_LENGTH = 8;
const CONTROL_I32_WORDS = 16;
// Float64 cells (after the Int32 words).
const F_NEXT_LSN = 0;
const F_RESERVE_POS = 1;
const F_VISIBLE = 2;
const F_DURABLE = 3;
const F_WRITTEN = 4;
const F_FLUSHED_LSN = 5;
const F_FLUSHED_POS = 6;
const F_WAL_BYTES = 7;
const F_FSYNCS = 8;
const F_GROUP_RECORDS = 9;
const F_SEGMENT_FIRST_LSN = 10;
const F_FAILURE_VISIBLE = 16; // 64 cells: visible LSN at each write failure, by epoch % 64
const FAILURE_SLOTS = 64;
const CONTROL_F64_CELLS = F_FAILURE_VISIBLE + FAILURE_SLOTS;
const ERROR_TEXT_BYTES = 512;

/** Running: appends accepted. */
export const WAL_RUNNING = 0;
/** A write to the log failed: appends are refused while the writer rolls back the unwritten records. */
export const WAL_HALTED = 1;
/** An fsync failed or the log is closing: appends are refused until restart. Reads go on. */
export const WAL_STOPPED = 2;

export interface WalBufferShared {
  readonly control: SharedArrayBuffer;
  readonly ring: SharedArrayBuffer;
  readonly commits: SharedArrayBuffer;
  readonly commit_slots: number;
}

/**
 * Allocates a WAL buffer (owner thread). `ring_bytes` bounds both the bytes waiting to be written and
 * the largest record; `commit_slots` bounds the records waiting.
 *
 * @example
 * const shared = createWalBufferShared({ ring_bytes: 32 << 20, next_lsn: 1 });
 */
export function createWalBufferShared(options: {
  ring_bytes: number;
  commit_slots?: number;
  next_lsn?: number;
}): WalBufferShared {
  const commit_slots = options.commit_slots ?? 65536;
  assert(options.ring_bytes >= 4096 && options.ring_bytes % 8 === 0, "ring_bytes ≥ 4096, multiple of 8");
  assert(commit_slots >= 2 && (commit_slots & (commit_slots - 1)) === 0, "commit_slots a power of two");
  const control = new SharedArrayBuffer(CONTROL_I32_WORDS * 4 + CONTROL_F64_CELLS * 8 + ERROR_TEXT_BYTES);
  const f64 = new Float64Array(control, CONTROL_I32_WORDS * 4, CONTROL_F64_CELLS);
  const next_lsn = options.next_lsn ?? 1;
  f64[F_NEXT_LSN] = next_lsn;
  for (const cell of [F_VISIBLE, F_DURABLE, F_WRITTEN, F_FLUSHED_LSN]) f64[cell] = next_lsn - 1;
  const commits = new SharedArrayBuffer(commit_slots * 16);
  new Int32Array(commits, 0, commit_slots).fill(-1);
  return { control, ring: new SharedArrayBuffer(options.ring_bytes), commits, commit_slots };
}

/** Published LSNs, read together under the seqlock. */
export interface PublishedLsns {
  visible: number;
  durable: number;
  written: number;
}

/** A thread's handle on the shared WAL buffer. */
export class WalBuffer {
  readonly ring: Uint8Array;
  readonly ring_bytes: number;
  readonly commit_slots: number;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly error_text: Uint8Array;
  private readonly commit_state: Int32Array;
  private readonly commit_pos: Float64Array;
  private readonly commit_len: Int32Array;
  private readonly wait_for_space: (buffer: WalBuffer) => void;
  /** The failure epoch in which this thread's last {@link reserve} took its LSN. */
  reserved_epoch = 0;

  /**
   * `wait_for_space` is called (ring mutex not held) when the ring is full; the default blocks on
   * the publish word until the writer frees space. Simulation passes a function that runs the writer.
   */
  constructor(shared: WalBufferShared, wait_for_space?: (buffer: WalBuffer) => void) {
    this.i32 = new Int32Array(shared.control, 0, CONTROL_I32_WORDS);
    this.f64 = new Float64Array(shared.control, CONTROL_I32_WORDS * 4, CONTROL_F64_CELLS);
    this.error_text = new Uint8Array(shared.control, CONTROL_I32_WORDS * 4 + CONTROL_F64_CELLS * 8);
    this.ring = new Uint8Array(shared.ring);
    this.ring_bytes = shared.ring.byteLength;
    this.commit_slots = shared.commit_slots;
    const n = shared.commit_slots;
    this.commit_state = new Int32Array(shared.commits, 0, n);
    this.commit_len = new Int32Array(shared.commits, n * 4, n);
    this.commit_pos = new Float64Array(shared.commits, n * 8, n);
    this.wait_for_space = wait_for_space ?? blockForSpace;
  }

  // ---------------------------------------------------------------- appenders (any thread)

  /**
   * Reserves the next LSN and `size_bytes` of contiguous ring space for its record. Throws
   * UnavailableError if appends are refused. Blocks (via `wait_for_space`) while the ring is full.
   */
  reserve(size_bytes: number): number {
    assert(size_bytes > 0 && size_bytes <= this.ring_bytes, "record fits the ring");
    lock(this.i32, I_LOCK);
    for (;;) {
      const state = this.i32[I_STATE]!;
      if (state !== WAL_RUNNING) {
        unlock(this.i32, I_LOCK);
        throw new UnavailableError(`writes refused: ${this.lastError() || "write-ahead log not running"}`);
      }
      const lsn = this.f64[F_NEXT_LSN]!;
      let start = this.f64[F_RESERVE_POS]!;
      const phys = start % this.ring_bytes;
      if (phys + size_bytes > this.ring_bytes) start += this.ring_bytes - phys;
      const flushed = this.published(F_FLUSHED_POS, F_FLUSHED_LSN);
      // Every reserved record flushed: no ring byte is live, so the tail skipped to wrap costs nothing.
      const empty = lsn - 1 === flushed[1];
      const fits = empty || start + size_bytes - flushed[0] <= this.ring_bytes;
      if (fits && lsn - flushed[1] < this.commit_slots) {
        const slot = lsn % this.commit_slots;
        this.commit_pos[slot] = start;
        this.commit_len[slot] = size_bytes;
        this.f64[F_NEXT_LSN] = lsn + 1;
        this.f64[F_RESERVE_POS] = start + size_bytes;
        this.reserved_epoch = this.i32[I_EPOCH]!;
        unlock(this.i32, I_LOCK);
        return lsn;
      }
      unlock(this.i32, I_LOCK);
      this.wait_for_space(this);
      lock(this.i32, I_LOCK);
    }
  }

  /** Byte offset in `ring` where the record of a reserved `lsn` goes. */
  reservedOffset(lsn: number): number {
    return this.commit_pos[lsn % this.commit_slots]! % this.ring_bytes;
  }

  /** Marks the record of `lsn` complete: the writer may flush it. */
  complete(lsn: number): void {
    Atomics.store(this.commit_state, lsn % this.commit_slots, lsn | 0);
    Atomics.add(this.i32, I_DOORBELL, 1);
    // Only the first completer after the writer fell asleep pays for the wake-up.
    if (
      Atomics.load(this.i32, I_WRITER_SLEEPING) !== 0 &&
      Atomics.compareExchange(this.i32, I_WRITER_SLEEPING, 1, 0) === 1
    ) {
      Atomics.notify(this.i32, I_DOORBELL);
    }
  }

  // ---------------------------------------------------------------- readers (any thread)

  /** The LSN readers may see: written (fsync no/everysec) or durable (always). */
  visibleLsn(): number {
    return this.published(F_VISIBLE, F_VISIBLE)[0];
  }

  /** visible, durable and written LSNs, read consistently. */
  lsns(): PublishedLsns {
    for (;;) {
      const seq = Atomics.load(this.i32, I_PUBLISH_SEQ);
      if ((seq & 1) !== 0) continue;
      const lsns = {
        visible: this.f64[F_VISIBLE]!,
        durable: this.f64[F_DURABLE]!,
        written: this.f64[F_WRITTEN]!,
      };
      if (Atomics.load(this.i32, I_PUBLISH_SEQ) === seq) return lsns;
    }
  }

  /**
   * The written LSN and the segment that holds it, read together. Every record ≤ `written` is in
   * that segment or an older one, and older ones were fsynced when they were sealed: an fdatasync of
   * this segment makes every record ≤ `written` durable.
   */
  writtenSegment(): { written: number; segment_first_lsn: number } {
    for (;;) {
      const seq = Atomics.load(this.i32, I_PUBLISH_SEQ);
      if ((seq & 1) !== 0) continue;
      const written = this.f64[F_WRITTEN]!;
      const segment_first_lsn = this.f64[F_SEGMENT_FIRST_LSN]!;
      if (Atomics.load(this.i32, I_PUBLISH_SEQ) === seq) return { written, segment_first_lsn };
    }
  }

  /** The next LSN to be reserved (a snapshot: it may move at once). */
  nextLsn(): number {
    lock(this.i32, I_LOCK);
    const next = this.f64[F_NEXT_LSN]!;
    unlock(this.i32, I_LOCK);
    return next;
  }

  state(): number {
    return Atomics.load(this.i32, I_STATE);
  }

  /** Failure epoch: increases each time unwritten records are rolled back after a write error. */
  epoch(): number {
    return Atomics.load(this.i32, I_EPOCH);
  }

  /** Visible LSN when epoch `epoch` ended (its records above it were rolled back). */
  failureVisibleLsn(epoch: number): number {
    return this.f64[F_FAILURE_VISIBLE + (epoch % FAILURE_SLOTS)]!;
  }

  /** The publish word: changes (and is notified) on every publish. Waiters wait on it. */
  publishSeq(): number {
    return Atomics.load(this.i32, I_PUBLISH_SEQ);
  }

  /** Waits asynchronously for the next publish after `seq`. */
  waitPublishAsync(seq: number, timeout_ms: number): Promise<unknown> | undefined {
    const result = Atomics.waitAsync(this.i32, I_PUBLISH_SEQ, seq, timeout_ms);
    return result.async ? result.value : undefined;
  }

  /** Blocks this thread until the publish word moves past `seq` or `timeout_ms` passes. */
  waitPublish(seq: number, timeout_ms: number): void {
    Atomics.wait(this.i32, I_PUBLISH_SEQ, seq, timeout_ms);
  }

  /** Counters: WAL bytes written since start, fsyncs, records per group commit (last batch). */
  counters(): { wal_bytes: number; fsyncs: number; last_group_records: number } {
    return {
      wal_bytes: this.f64[F_WAL_BYTES]!,
      fsyncs: this.f64[F_FSYNCS]!,
      last_group_records: this.f64[F_GROUP_RECORDS]!,
    };
  }

  /** The last WAL error, "" if none. */
  lastError(): string {
    const length = Atomics.load(this.i32, I_ERROR_LENGTH);
    return new TextDecoder().decode(this.error_text.slice(0, length));
  }

  /** Checkpoint request counter: the checkpointer waits on it; the writer bumps it past a WAL size. */
  checkpointSeq(): number {
    return Atomics.load(this.i32, I_CHECKPOINT_SEQ);
  }

  requestCheckpoint(): void {
    Atomics.add(this.i32, I_CHECKPOINT_SEQ, 1);
    Atomics.notify(this.i32, I_CHECKPOINT_SEQ);
  }

  waitCheckpointRequest(seq: number, timeout_ms: number): void {
    Atomics.wait(this.i32, I_CHECKPOINT_SEQ, seq, timeout_ms);
  }

  // ---------------------------------------------------------------- the WAL writer's side

  /** The doorbell word (completions); the writer sleeps on it. */
  doorbell(): number {
    return Atomics.load(this.i32, I_DOORBELL);
  }

  /** Writer: sleep until a completion or `timeout_ms`. */
  sleepOnDoorbell(seen: number, timeout_ms: number): void {
    Atomics.store(this.i32, I_WRITER_SLEEPING, 1);
    if (Atomics.load(this.i32, I_DOORBELL) === seen) Atomics.wait(this.i32, I_DOORBELL, seen, timeout_ms);
    Atomics.store(this.i32, I_WRITER_SLEEPING, 0);
  }

  ring_doorbell(): void {
    Atomics.add(this.i32, I_DOORBELL, 1);
    Atomics.notify(this.i32, I_DOORBELL);
  }

  /** Writer: is the record of `lsn` complete? */
  isComplete(lsn: number): boolean {
    return Atomics.load(this.commit_state, lsn % this.commit_slots) === (lsn | 0);
  }

  /** Writer: ring offset and length of the record of a reserved `lsn`. */
  recordLength(lsn: number): number {
    return this.commit_len[lsn % this.commit_slots]!;
  }

  recordLogicalPos(lsn: number): number {
    return this.commit_pos[lsn % this.commit_slots]!;
  }

  /** Writer: LSN and logical ring position up to which records were taken out of the ring. */
  flushed(): [pos: number, lsn: number] {
    return this.published(F_FLUSHED_POS, F_FLUSHED_LSN);
  }

  /**
   * Writer: publishes new LSNs and frees ring space, then wakes every waiting thread.
   * Only the WAL writer calls this (single writer of the seqlock).
   */
  publish(p: {
    written: number;
    durable: number;
    visible: number;
    flushed_pos: number;
    flushed_lsn: number;
    wal_bytes_added: number;
    fsyncs_added: number;
    group_records: number;
    /** First LSN of the segment holding the last written record. */
    segment_first_lsn: number;
  }): void {
    assert(p.visible <= p.written && p.durable <= p.written, "visible and durable never pass written");
    Atomics.add(this.i32, I_PUBLISH_SEQ, 1);
    this.f64[F_WRITTEN] = p.written;
    this.f64[F_DURABLE] = p.durable;
    this.f64[F_VISIBLE] = p.visible;
    this.f64[F_FLUSHED_POS] = p.flushed_pos;
    this.f64[F_FLUSHED_LSN] = p.flushed_lsn;
    this.f64[F_WAL_BYTES] = this.f64[F_WAL_BYTES]! + p.wal_bytes_added;
    this.f64[F_FSYNCS] = this.f64[F_FSYNCS]! + p.fsyncs_added;
    if (p.group_records > 0) this.f64[F_GROUP_RECORDS] = p.group_records;
    this.f64[F_SEGMENT_FIRST_LSN] = p.segment_first_lsn;
    Atomics.add(this.i32, I_PUBLISH_SEQ, 1);
    Atomics.notify(this.i32, I_PUBLISH_SEQ);
  }

  /**
   * Writer (or the syncer and the checkpointer, to stop): refuse or accept appends. Takes the ring
   * mutex, so no reservation is half done. STOPPED is for good: once set, no call changes the state
   * or its error (a write failure handled on the writer while another thread's fdatasync failed must
   * not resume appends).
   */
  setState(state: number, error?: string): void {
    lock(this.i32, I_LOCK);
    if (this.i32[I_STATE] !== WAL_STOPPED) {
      if (error !== undefined) this.setError(error);
      Atomics.store(this.i32, I_STATE, state);
    }
    unlock(this.i32, I_LOCK);
    this.publishNothing();
  }

  /** Writer (state HALTED): the last LSN reserved so far; no new one can be reserved. */
  reservedLsn(): number {
    lock(this.i32, I_LOCK);
    const last = this.f64[F_NEXT_LSN]! - 1;
    unlock(this.i32, I_LOCK);
    return last;
  }

  /**
   * Writer, after rolling back every record above the flushed LSN: forget them, start a new failure
   * epoch, and accept appends again from LSN flushed + 1.
   */
  rewind(): void {
    lock(this.i32, I_LOCK);
    const [pos, lsn] = this.flushed();
    const epoch = this.i32[I_EPOCH]!;
    this.f64[F_FAILURE_VISIBLE + (epoch % FAILURE_SLOTS)] = this.f64[F_VISIBLE]!;
    // Forget the rolled-back records' completion marks: their LSNs are about to be reserved again.
    for (let l = lsn + 1; l < this.f64[F_NEXT_LSN]!; l++)
      Atomics.store(this.commit_state, l % this.commit_slots, -1);
    this.f64[F_NEXT_LSN] = lsn + 1;
    this.f64[F_RESERVE_POS] = pos;
    Atomics.store(this.i32, I_EPOCH, epoch + 1);
    if (this.i32[I_STATE] !== WAL_STOPPED) Atomics.store(this.i32, I_STATE, WAL_RUNNING);
    unlock(this.i32, I_LOCK);
    this.publishNothing();
  }

  /** Wakes waiters without changing any LSN (state changes). */
  private publishNothing(): void {
    Atomics.add(this.i32, I_PUBLISH_SEQ, 2);
    Atomics.notify(this.i32, I_PUBLISH_SEQ);
    Atomics.notify(this.i32, I_DOORBELL);
  }

  private setError(text: string): void {
    const bytes = new TextEncoder().encode(text).subarray(0, ERROR_TEXT_BYTES);
    this.error_text.set(bytes);
    Atomics.store(this.i32, I_ERROR_LENGTH, bytes.length);
  }

  private published(a: number, b: number): [number, number] {
    for (;;) {
      const seq = Atomics.load(this.i32, I_PUBLISH_SEQ);
      if ((seq & 1) !== 0) continue;
      const x = this.f64[a]!;
      const y = this.f64[b]!;
      if (Atomics.load(this.i32, I_PUBLISH_SEQ) === seq) return [x, y];
    }
  }

  /** For waiters of space: count them so the writer knows. */
  noteSpaceWaiter(delta: number): void {
    Atomics.add(this.i32, I_SPACE_WAITERS, delta);
  }
}

function blockForSpace(buffer: WalBuffer): void {
  buffer.noteSpaceWaiter(1);
  buffer.waitPublish(buffer.publishSeq(), 50);
  buffer.noteSpaceWaiter(-1);
}
