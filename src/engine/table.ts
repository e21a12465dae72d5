/**
 * The shared table: a hash index of key → version chain, living entirely in SharedArrayBuffers so
 * that every Web Worker reads and writes the same data without copying.
 *
 * Layout (see docs/ARCHITECTURE.md for the argument of correctness):
 * - 2^shard_bits shards. Shard s owns 16 Int32 words in `meta`: a futex mutex (writers), a seqlock
 *   sequence (readers), the ref of its slot array in the arena, log2 of its capacity, slots used,
 *   and the highest LSN of a delete whose key it removed (a reader older than that which finds no
 *   key cannot tell "absent" from "removed since": it gets STALE and retries).
 *   A shard doubles on its own (per-segment doubling): the rehash runs under the shard's mutex but
 *   outside its seqlock window, so readers keep reading the old array; only the pointer swap is
 *   inside the window.
 * - Slot array: `capacity` pairs of u32 [hash, record ref]; ref 0 = empty. Linear probing,
 *   backward-shift deletion, load ≤ 3/4.
 * - Record (arena chunk, 8-aligned): u32 key_length | u32 value_length | u32 prev ref | u32 flags |
 *   f64 lsn | f64 expiry_unix_ms | key | value. `lsn` is the key's version. `prev` links to the older
 *   version while the newer one is not yet visible (not yet written / durable). Flags: TOMBSTONE
 *   (a delete), CUT (older versions were discarded: this version is the oldest the table knows).
 *
 * Concurrency: writers hold the shard mutex; every change readers could observe (slot contents,
 * the slot-array pointer, a record's prev, and every free of a record or array of this shard) happens
 * inside an odd seqlock window of that shard. Readers never lock: they read between two loads of the
 * sequence and retry if it moved, so memory freed and reused under them is never trusted.
 *
 * @example
 * const table = new Table(createTableShared(arena), arena);
 * const h = hashKey(key); const s = table.shardOf(h);
 * const version = table.newVersion(key, 0, key.length, value, 0, value.length, 0);
 * table.lockShard(s);
 * try { table.reserveSlots(s, 1); table.link(version, h, lsn, visible_lsn); }
 * finally { table.unlockShard(s); }
 * table.get(key, h, visible_lsn); // → a copy of the value, undefined, or STALE
 */
import { type Arena, bufferIndex, offsetBytes } from "./arena.ts";
import { copyBytes } from "./bytes.ts";
import { assert, UnavailableError } from "./errors.ts";
import { lock, lockUnless, tryLock, unlock } from "./locks.ts";

const SHARD_WORDS = 16;
/** The default `give_up` of {@link Table.scanShard}: wait for the mutex as long as it takes. */
const NEVER = () => false;
const W_LOCK = 0;
const W_SEQ = 1;
const W_SLOTS = 2;
const W_CAP_LOG2 = 3;
const W_USED = 4;
/** Words 6–7 hold an f64: the highest LSN of a delete whose slot this shard removed. */
const F_REMOVED_LSN = 3;
const MIN_CAP_LOG2 = 4;
const MAX_CAP_LOG2 = 27;
const READ_RETRIES_BEFORE_LOCK = 64;
const CHAIN_STEPS_MAX = 1 << 16;

/** Bytes of a record's header before its key. */
export const RECORD_HEADER_BYTES = 32;
/** The 32-bit word of a record where its key starts. */
const KEY_WORD = RECORD_HEADER_BYTES / 4;
assert(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "keys are compared as little-endian words");
const FLAG_TOMBSTONE = 1;
const FLAG_CUT = 2;
/** Held by one entry of the write being applied ({@link Table.claim}); readers ignore it. */
const FLAG_CLAIMED = 4;

/** Returned by {@link Table.get} without `copy` for a key that holds a value. */
export const PRESENT: Uint8Array = new Uint8Array(0);

/** Returned by reads whose `visible_lsn` is older than versions the table already discarded. */
export const STALE: unique symbol = Symbol("stale");

export interface TableShared {
  readonly meta: SharedArrayBuffer;
  readonly shard_bits: number;
}

/**
 * Receives one visible entry during a scan. `bytes[key_offset, +key_length)` is the key and the value
 * follows it directly; the bytes are valid only during the call.
 */
export type EntryVisitor = (
  bytes: Uint8Array,
  key_offset: number,
  key_length: number,
  value_length: number,
  lsn: number,
  expiry_unix_ms: number,
) => void;

/**
 * Creates the shared part of a table (owner thread), with every shard's initial slot array.
 *
 * @example
 * const shared = createTableShared(arena, 12); // 4096 shards
 */
export function createTableShared(arena: Arena, shard_bits = 12): TableShared {
  assert(Number.isInteger(shard_bits) && shard_bits >= 0 && shard_bits <= 16, "shard_bits in [0, 16]");
  const shard_count = 1 << shard_bits;
  const meta = new SharedArrayBuffer(shard_count * SHARD_WORDS * 4);
  const words = new Int32Array(meta);
  for (let s = 0; s < shard_count; s++) {
    const slots = arena.alloc(8 << MIN_CAP_LOG2);
    arena.u8[bufferIndex(slots)]!.fill(0, offsetBytes(slots), offsetBytes(slots) + (8 << MIN_CAP_LOG2));
    words[s * SHARD_WORDS + W_SLOTS] = slots | 0;
    words[s * SHARD_WORDS + W_CAP_LOG2] = MIN_CAP_LOG2;
  }
  return { meta, shard_bits };
}

/** Receives a value in place during {@link Table.read}: `bytes[start, +length)`, valid only during the call. */
export interface ValueSink {
  value(bytes: Uint8Array, start: number, length: number): void;
}

const IGNORE_VALUE: ValueSink = { value: () => {} };
/** A read attempt a writer interfered with before the value was handed over: retry. */
const INTERFERED: unique symbol = Symbol("interfered");
/** The `seq` of a read under the shard mutex: no writer can interfere. */
const UNDER_LOCK = -1;

/** The sink behind {@link Table.get}: a fresh copy of the last value it saw. */
class ValueCopier implements ValueSink {
  private copy: Uint8Array = PRESENT;

  value(bytes: Uint8Array, start: number, length: number): void {
    this.copy = bytes.slice(start, start + length);
  }

  take(): Uint8Array {
    const copy = this.copy;
    this.copy = PRESENT;
    return copy;
  }
}

/** A thread's handle on the shared table. */
export class Table {
  readonly shard_count: number;
  private readonly meta: Int32Array;
  private readonly meta_f64: Float64Array;
  private readonly shard_shift: number;
  private readonly arena: Arena;
  private readonly u8: Uint8Array[];
  private readonly u32: Uint32Array[];
  private readonly f64: Float64Array[];
  private readonly copier = new ValueCopier();

  constructor(shared: TableShared, arena: Arena) {
    this.meta = new Int32Array(shared.meta);
    this.meta_f64 = new Float64Array(shared.meta);
    this.shard_count = 1 << shared.shard_bits;
    this.shard_shift = 32 - shared.shard_bits;
    this.arena = arena;
    this.u8 = arena.u8;
    this.u32 = arena.u32;
    this.f64 = arena.f64;
  }

  /** The shard that owns hash `h`. */
  shardOf(h: number): number {
    return this.shard_shift === 32 ? 0 : h >>> this.shard_shift;
  }

  lockShard(shard: number): void {
    lock(this.meta, shard * SHARD_WORDS + W_LOCK);
  }

  unlockShard(shard: number): void {
    unlock(this.meta, shard * SHARD_WORDS + W_LOCK);
  }

  // ---------------------------------------------------------------- readers (no locks)

  /**
   * Reads the version of a key visible at `visible_lsn`: a fresh copy of its value (or {@link PRESENT}
   * when `copy` is false), `undefined` if the
   * key is absent at that LSN, or {@link STALE} if `visible_lsn` is older than what the table still keeps
   * (reload it and retry). Never blocks other readers; falls back to the shard mutex only after
   * repeated interference from writers.
   */
  get(key: Uint8Array, h: number, visible_lsn: number, copy = true): Uint8Array | undefined | typeof STALE {
    const found = this.read(key, 0, key.length, h, visible_lsn, copy ? this.copier : IGNORE_VALUE);
    const value = copy ? this.copier.take() : PRESENT; // taken either way: no torn copy is kept
    if (found === STALE) return STALE;
    return found ? value : undefined;
  }

  /**
   * Reads like {@link get}, the key being `src[key_offset, +key_length)`, without a copy of its own:
   * `sink.value(bytes, start, length)` sees the visible value in place and copies what it keeps
   * (straight into a reply, say). A writer may change the bytes mid-copy: the read is then repeated
   * and `sink.value` called again, and only its last call counts. The sink is only called with a
   * start and length that were valid when read (the seqlock is checked before the call), so it never
   * sees a freed record's garbage length; the bytes themselves may be torn (the sink must not trust
   * them to be a well-formed value: see RespWriter.storedValue).
   * Returns true (the sink saw the value), false (absent) or {@link STALE}.
   *
   * @example
   * const found = table.read(key, 0, key.length, hashKey(key), visible_lsn, { value: (b, s, n) => out.set(b.subarray(s, s + n)) });
   */
  read(
    src: Uint8Array,
    key_offset: number,
    key_length: number,
    h: number,
    visible_lsn: number,
    sink: ValueSink,
  ): boolean | typeof STALE {
    const base = this.shardOf(h) * SHARD_WORDS;
    for (let attempt = 0; attempt < READ_RETRIES_BEFORE_LOCK; attempt++) {
      const seq = Atomics.load(this.meta, base + W_SEQ);
      if ((seq & 1) === 0) {
        const result = this.readVisible(src, key_offset, key_length, h, base, visible_lsn, sink, seq);
        if (result !== INTERFERED && Atomics.load(this.meta, base + W_SEQ) === seq) return result;
      }
    }
    lock(this.meta, base + W_LOCK);
    try {
      const result = this.readVisible(src, key_offset, key_length, h, base, visible_lsn, sink, UNDER_LOCK);
      assert(result !== INTERFERED, "no writer interferes under the shard mutex");
      return result;
    } finally {
      unlock(this.meta, base + W_LOCK);
    }
  }

  /**
   * One attempt of {@link read}. `seq` is the seqlock value the attempt started under: before the
   * sink is called it must be unchanged (else INTERFERED: a writer may have freed the record, and its
   * lengths may be garbage), and the value must lie inside its buffer. UNDER_LOCK skips the check.
   */
  private readVisible(
    src: Uint8Array,
    key_offset: number,
    key_length: number,
    h: number,
    base: number,
    visible_lsn: number,
    sink: ValueSink,
    seq: number,
  ): boolean | typeof STALE | typeof INTERFERED {
    const head = this.findHead(src, key_offset, key_length, h, base);
    const ref = head === 0 ? 0 : this.visibleVersion(head, visible_lsn);
    // No version at visible_lsn: absent then, unless a delete's removal since may have hidden one.
    if (ref === 0) return visible_lsn < this.meta_f64[base / 2 + F_REMOVED_LSN]! ? STALE : false;
    if (ref === -1) return STALE;
    const b = bufferIndex(ref);
    const w = (ref & 0x1fffffff) * 2;
    if ((this.u32[b]![w + 3]! & FLAG_TOMBSTONE) !== 0) return false;
    const bytes = this.u8[b]!;
    const start = offsetBytes(ref) + RECORD_HEADER_BYTES + this.u32[b]![w]!;
    const length = this.u32[b]![w + 1]!;
    if (
      seq !== UNDER_LOCK &&
      (Atomics.load(this.meta, base + W_SEQ) !== seq || start + length > bytes.length)
    )
      return INTERFERED;
    sink.value(bytes, start, length);
    return true;
  }

  /** Walks a chain to the newest version with lsn ≤ visible_lsn: its ref, 0 if none, -1 if discarded. */
  private visibleVersion(ref: number, visible_lsn: number): number {
    for (let steps = 0; ref !== 0 && steps < CHAIN_STEPS_MAX; steps++) {
      const b = bufferIndex(ref);
      if (b >= this.u8.length) return 0;
      if (this.f64[b]![(ref & 0x1fffffff) + 2]! <= visible_lsn) return ref;
      const w = (ref & 0x1fffffff) * 2;
      if ((this.u32[b]![w + 3]! & FLAG_CUT) !== 0) return -1;
      ref = this.u32[b]![w + 2]! >>> 0;
    }
    return 0;
  }

  /** Probes the shard for a key held in `src[key_offset, +key_length)`: the head record's ref or 0. */
  private findHead(src: Uint8Array, key_offset: number, key_length: number, h: number, base: number): number {
    const slot = this.findSlot(src, key_offset, key_length, h, base);
    if (slot < 0) return 0;
    return this.slotRef(base, slot);
  }

  /** The index of the key's slot in its shard, or -1. Safe on torn state: bounded, never throws. */
  private findSlot(src: Uint8Array, key_offset: number, key_length: number, h: number, base: number): number {
    const slots = this.meta[base + W_SLOTS]! >>> 0;
    const cap_log2 = this.meta[base + W_CAP_LOG2]!;
    const b = bufferIndex(slots);
    const words = this.u32[b];
    if (words === undefined) return -1;
    const w0 = (slots & 0x1fffffff) * 2;
    const mask = (1 << cap_log2) - 1;
    for (let i = 0, slot = h & mask; i <= mask; i++, slot = (slot + 1) & mask) {
      const ref = words[w0 + slot * 2 + 1]! >>> 0;
      if (ref === 0) return -1;
      if (words[w0 + slot * 2] === h && this.keyEquals(ref, src, key_offset, key_length)) return slot;
    }
    return -1;
  }

  /**
   * True if record `ref` holds the key `src[key_offset, +key_length)`. Four bytes at a time: the
   * record's key starts 8-aligned, so it is read as 32-bit words (one access to the shared buffer,
   * not four) against little-endian words of `src`. Safe on torn state: a read past the buffer's end
   * gives undefined, which equals no word.
   */
  private keyEquals(ref: number, src: Uint8Array, key_offset: number, key_length: number): boolean {
    const b = bufferIndex(ref);
    const words = this.u32[b];
    if (words === undefined) return false;
    const w = (ref & 0x1fffffff) * 2;
    if (words[w] !== key_length) return false;
    const whole_words = key_length >>> 2;
    for (let i = 0; i < whole_words; i++) {
      const o = key_offset + 4 * i;
      const word = (src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24)) >>> 0;
      if (words[w + KEY_WORD + i] !== word) return false;
    }
    const bytes = this.u8[b]!;
    const start = offsetBytes(ref) + RECORD_HEADER_BYTES;
    for (let i = 4 * whole_words; i < key_length; i++)
      if (bytes[start + i] !== src[key_offset + i]) return false;
    return true;
  }

  private slotRef(base: number, slot: number): number {
    const slots = this.meta[base + W_SLOTS]! >>> 0;
    return this.u32[bufferIndex(slots)]![(slots & 0x1fffffff) * 2 + slot * 2 + 1]! >>> 0;
  }

  // ---------------------------------------------------------------- writers (hold the shard mutex)

  /** The head version of a key (newest, visible or not), 0 if absent. Caller holds the shard mutex. */
  headRef(key: Uint8Array, key_offset: number, key_length: number, h: number): number {
    return this.findHead(key, key_offset, key_length, h, this.shardOf(h) * SHARD_WORDS);
  }

  /** The version (LSN) of a record. */
  versionLsn(ref: number): number {
    return this.f64[bufferIndex(ref)]![(ref & 0x1fffffff) + 2]!;
  }

  /** True if the record is a delete. */
  isTombstone(ref: number): boolean {
    return (this.u32[bufferIndex(ref)]![(ref & 0x1fffffff) * 2 + 3]! & FLAG_TOMBSTONE) !== 0;
  }

  /**
   * Allocates a version of the key `src[key_offset, +key_length)` holding
   * `value[value_offset, +value_length)`, or a delete if `value` is undefined. Not yet reachable:
   * {@link link} installs it, {@link discardVersion} frees it. Throws UnavailableError when memory
   * is exhausted — before anything was changed. `lsn` is stored now only by recovery, which knows
   * it ({@link linkRecovered}); {@link link} stores it otherwise.
   */
  newVersion(
    src: Uint8Array,
    key_offset: number,
    key_length: number,
    value: Uint8Array | undefined,
    value_offset: number,
    value_length: number,
    expiry_unix_ms: number,
    lsn = 0,
  ): number {
    const ref = this.versionRecord(key_length, value_length, value === undefined, expiry_unix_ms, lsn);
    const bytes = this.u8[bufferIndex(ref)]!;
    const start = offsetBytes(ref) + RECORD_HEADER_BYTES;
    if (value === src && value_offset === key_offset + key_length) {
      copyBytes(bytes, start, src, key_offset, key_length + value_length); // adjacent in src: one copy
    } else {
      copyBytes(bytes, start, src, key_offset, key_length);
      if (value !== undefined) copyBytes(bytes, start + key_length, value, value_offset, value_length);
    }
    return ref;
  }

  /** Allocates a version's record and writes its header; the key and value are the caller's to copy. */
  private versionRecord(
    key_length: number,
    value_length: number,
    tombstone: boolean,
    expiry_unix_ms: number,
    lsn: number,
  ): number {
    const ref = this.arena.alloc(RECORD_HEADER_BYTES + key_length + value_length);
    const b = bufferIndex(ref);
    const w = (ref & 0x1fffffff) * 2;
    const words = this.u32[b]!;
    words[w] = key_length;
    words[w + 1] = value_length;
    words[w + 2] = 0;
    words[w + 3] = tombstone ? FLAG_TOMBSTONE : 0;
    this.f64[b]![(ref & 0x1fffffff) + 2] = lsn;
    this.f64[b]![(ref & 0x1fffffff) + 3] = expiry_unix_ms;
    return ref;
  }

  /**
   * Marks head version `ref` as claimed by an entry of the write being applied; false if an earlier
   * entry of that write claimed it (the key is named twice). Caller holds the shard mutex and
   * releases the claim ({@link releaseClaim}) before the entry's version replaces `ref` or when the
   * write fails. Readers ignore the mark.
   */
  claim(ref: number): boolean {
    const w = (ref & 0x1fffffff) * 2 + 3;
    const words = this.u32[bufferIndex(ref)]!;
    if ((words[w]! & FLAG_CLAIMED) !== 0) return false;
    words[w] = words[w]! | FLAG_CLAIMED;
    return true;
  }

  /** Drops the mark of {@link claim}. Caller holds the shard mutex. */
  releaseClaim(ref: number): void {
    const w = (ref & 0x1fffffff) * 2 + 3;
    const words = this.u32[bufferIndex(ref)]!;
    words[w] = words[w]! & ~FLAG_CLAIMED;
  }

  /**
   * True if head version `ref` can take a new value of `value_length` bytes in place
   * ({@link overwrite}): a value (not a delete) of that very length, visible at `visible_lsn`, and
   * the only version of its key. Caller holds the shard mutex.
   */
  overwritable(ref: number, value_length: number, visible_lsn: number): boolean {
    const b = bufferIndex(ref);
    const w = (ref & 0x1fffffff) * 2;
    const words = this.u32[b]!;
    return (
      (words[w + 3]! & FLAG_TOMBSTONE) === 0 &&
      words[w + 1] === value_length &&
      words[w + 2] === 0 &&
      this.f64[b]![(ref & 0x1fffffff) + 2]! <= visible_lsn
    );
  }

  /**
   * Replaces, in place, the value of the {@link overwritable} head version `ref` of a key whose hash
   * is `h` with `value[value_offset, +length)` as version `lsn`, which must already be visible (its
   * WAL record written). Inside the shard's seqlock window, so a reader on another thread retries
   * rather than see the value torn; marked CUT, so a reader older than `lsn` gets STALE (the version
   * it wants is gone) rather than "absent". No memory is allocated or freed. Caller holds the mutex.
   */
  overwrite(
    ref: number,
    h: number,
    value: Uint8Array,
    value_offset: number,
    expiry_unix_ms: number,
    lsn: number,
  ): void {
    const base = this.shardOf(h) * SHARD_WORDS;
    const b = bufferIndex(ref);
    const w = (ref & 0x1fffffff) * 2;
    const words = this.u32[b]!;
    const start = offsetBytes(ref) + RECORD_HEADER_BYTES + words[w]!;
    this.beginWrite(base);
    copyBytes(this.u8[b]!, start, value, value_offset, words[w + 1]!);
    this.f64[b]![(ref & 0x1fffffff) + 2] = lsn;
    this.f64[b]![(ref & 0x1fffffff) + 3] = expiry_unix_ms;
    words[w + 3] = words[w + 3]! | FLAG_CUT;
    this.endWrite(base);
  }

  /**
   * Sizes every shard for `keys` keys spread evenly (plus slack), so that loading them never
   * rehashes. Single-threaded use (recovery) or under each shard's mutex.
   */
  presize(keys: number): void {
    const per_shard = Math.ceil((keys / this.shard_count) * 1.25);
    for (let s = 0; s < this.shard_count; s++) {
      this.lockShard(s);
      try {
        this.reserveSlots(s, per_shard);
      } finally {
        this.unlockShard(s);
      }
    }
  }

  /** Frees a version that was never linked. */
  discardVersion(ref: number): void {
    this.freeRecord(ref);
  }

  /**
   * Makes room in a shard for `inserts` more keys, so that {@link link} never allocates. Caller holds
   * the shard mutex. Throws UnavailableError when memory is exhausted (nothing changed).
   */
  reserveSlots(shard: number, inserts: number): void {
    const base = shard * SHARD_WORDS;
    while ((this.meta[base + W_USED]! + inserts) * 4 > 3 << this.meta[base + W_CAP_LOG2]!) this.grow(base);
  }

  /**
   * Links version `ref` (from {@link newVersion}) at `lsn` as the newest version of its key, whose hash
   * is `h`; frees versions older than the newest one visible at `visible_lsn`. A delete of a key the
   * table does not hold is freed at once. Returns the key's slot if {@link finalize} should run once
   * `lsn` is visible (older versions or a delete remain), to hand it back as a hint; else -1. Caller
   * holds the shard mutex and reserved a slot.
   */
  link(ref: number, h: number, lsn: number, visible_lsn: number): number {
    const base = this.shardOf(h) * SHARD_WORDS;
    const b = bufferIndex(ref);
    const key_offset = offsetBytes(ref) + RECORD_HEADER_BYTES;
    const key_length = this.u32[b]![(ref & 0x1fffffff) * 2]!;
    this.f64[b]![(ref & 0x1fffffff) + 2] = lsn;
    let slot = this.findSlot(this.u8[b]!, key_offset, key_length, h, base);
    const tombstone = this.isTombstone(ref);
    if (slot < 0) {
      if (tombstone) {
        this.freeRecord(ref);
        return -1;
      }
      assert((this.meta[base + W_USED]! + 1) * 4 <= 3 << this.meta[base + W_CAP_LOG2]!, "slot reserved");
      this.beginWrite(base);
      this.insertSlot(base, h, ref);
      this.endWrite(base);
      return -1;
    }
    this.setPrev(ref, this.slotRef(base, slot));
    this.beginWrite(base);
    this.setSlotRef(base, slot, ref);
    this.discardBelowVisible(ref, visible_lsn);
    slot = this.removeIfVisibleTombstone(base, slot, ref, visible_lsn);
    this.endWrite(base);
    return slot >= 0 && (this.recordPrev(ref) !== 0 || tombstone) ? slot : -1;
  }

  /**
   * Recovery's {@link link}, with every version visible: `ref` came from {@link newVersion} with its
   * lsn, and the caller passes what else link would read from the record (`key_length`, whether it
   * is a delete). A new key's record is then never touched again: replay links records in shard
   * order, not in the order they were written, so each such touch would be a cache miss. One thread
   * at a time may use the table and none may read it (no seqlock window: recovery, whose replay pipe
   * hands the table between two threads at barriers); a slot must be reserved.
   */
  linkRecovered(ref: number, h: number, key_length: number, tombstone: boolean): void {
    const base = this.shardOf(h) * SHARD_WORDS;
    const key_offset = offsetBytes(ref) + RECORD_HEADER_BYTES;
    if (tombstone || this.findSlot(this.u8[bufferIndex(ref)]!, key_offset, key_length, h, base) >= 0) {
      this.link(ref, h, this.versionLsn(ref), Number.MAX_SAFE_INTEGER);
      return;
    }
    this.insertSlot(base, h, ref);
  }

  /**
   * Drops versions the table no longer needs once `visible_lsn` covers a key's head. Caller holds the
   * mutex. `hint`, from {@link link}, saves the lookup while the slot still holds version `hint_ref`
   * (another writer may have moved it since: then the key is looked up).
   */
  finalize(
    key: Uint8Array,
    key_offset: number,
    key_length: number,
    h: number,
    visible_lsn: number,
    hint = -1,
    hint_ref = 0,
  ): void {
    const base = this.shardOf(h) * SHARD_WORDS;
    const hinted =
      hint >= 0 && hint < 1 << this.meta[base + W_CAP_LOG2]! && this.slotRef(base, hint) === hint_ref;
    const slot = hinted ? hint : this.findSlot(key, key_offset, key_length, h, base);
    if (slot < 0) return;
    const head = this.slotRef(base, slot);
    const keep = this.visibleVersion(head, visible_lsn);
    const tombstone_head = keep === head && this.isTombstone(head);
    if (keep <= 0 || (this.recordPrev(keep) === 0 && !tombstone_head)) return;
    this.beginWrite(base);
    this.discardBelowVisible(head, visible_lsn);
    this.removeIfVisibleTombstone(base, slot, head, visible_lsn);
    this.endWrite(base);
  }

  /** Removes the never-visible version `lsn` of a key (its WAL write failed). Caller holds the mutex. */
  rollback(key: Uint8Array, h: number, lsn: number): void {
    const base = this.shardOf(h) * SHARD_WORDS;
    const slot = this.findSlot(key, 0, key.length, h, base);
    if (slot < 0) return;
    let above = 0;
    let ref = this.slotRef(base, slot);
    while (ref !== 0 && this.versionLsn(ref) > lsn) {
      above = ref;
      ref = this.recordPrev(ref);
    }
    if (ref === 0 || this.versionLsn(ref) !== lsn) return;
    const older = this.recordPrev(ref);
    this.beginWrite(base);
    if (above !== 0) this.setPrev(above, older);
    else if (older !== 0) this.setSlotRef(base, slot, older);
    else this.removeSlot(base, slot);
    this.freeRecord(ref);
    this.endWrite(base);
  }

  /**
   * Visits every key's version visible at the LSN `visibleLsn()` returns once the shard's mutex is
   * held, holding that mutex
   * (only this shard's writers wait, for the duration of one shard's copy). Returns the largest LSN
   * visited (0 if none). While it waits for the mutex it asks `give_up()` now and then
   * (locks.ts `lockUnless`), and throws UnavailableError, visiting nothing, once that says yes.
   */
  scanShard(
    shard: number,
    visibleLsn: () => number,
    visit: EntryVisitor,
    give_up: () => boolean = NEVER,
  ): number {
    const base = shard * SHARD_WORDS;
    if (!lockUnless(this.meta, base + W_LOCK, give_up))
      throw new UnavailableError(`scan of shard ${shard} given up, as asked, while its mutex was held`);
    return this.scanLocked(base, visibleLsn, visit);
  }

  /**
   * {@link scanShard} if the shard's mutex is free now; undefined, visiting nothing, if a writer
   * holds it. Never waits: a scan that skips a busy shard and comes back to it later sleeps on no
   * writer's mutex, so that writer's unlock wakes no one.
   */
  scanShardIfFree(shard: number, visibleLsn: () => number, visit: EntryVisitor): number | undefined {
    const base = shard * SHARD_WORDS;
    if (!tryLock(this.meta, base + W_LOCK)) return undefined;
    return this.scanLocked(base, visibleLsn, visit);
  }

  /** The body of the scans: the shard's mutex is held, and released here. */
  private scanLocked(base: number, visibleLsn: () => number, visit: EntryVisitor): number {
    let max_lsn = 0;
    try {
      // Read under the mutex: every discard in this shard happened at or below it.
      const visible_lsn = visibleLsn();
      const cap = 1 << this.meta[base + W_CAP_LOG2]!;
      for (let slot = 0; slot < cap; slot++) {
        const head = this.slotRef(base, slot);
        if (head === 0) continue;
        const ref = this.visibleVersion(head, visible_lsn);
        assert(ref !== -1, "a scan's visible_lsn is never stale under the shard mutex");
        if (ref === 0 || this.isTombstone(ref)) continue;
        const b = bufferIndex(ref);
        const w = (ref & 0x1fffffff) * 2;
        const lsn = this.f64[b]![(ref & 0x1fffffff) + 2]!;
        const expiry = this.f64[b]![(ref & 0x1fffffff) + 3]!;
        visit(
          this.u8[b]!,
          offsetBytes(ref) + RECORD_HEADER_BYTES,
          this.u32[b]![w]!,
          this.u32[b]![w + 1]!,
          lsn,
          expiry,
        );
        if (lsn > max_lsn) max_lsn = lsn;
      }
    } finally {
      unlock(this.meta, base + W_LOCK);
    }
    return max_lsn;
  }

  /**
   * Reads, for each of `hashes[start, end)` (at most `home_refs.length`), the ref in its home slot, then the
   * first words of that record: loads that do not depend on one another, so that their cache misses
   * overlap, where the probes that follow ({@link link}) would meet them one after the other. A hint
   * only: it takes no lock and changes nothing, and state torn by a concurrent writer is harmless
   * (every read is bounds-checked, and what it reads is not used). `home_refs` is scratch space.
   * Returns a sum of the words read, for the caller to keep so that the loads are not optimised away.
   *
   * @example
   * sink ^= table.touchHomes(hashes, 0, hashes.length, scratch); // then lock, link…
   */
  touchHomes(hashes: readonly number[], start: number, end: number, home_refs: Uint32Array): number {
    const n = Math.max(0, Math.min(end, hashes.length, start + home_refs.length) - start);
    for (let i = 0; i < n; i++) {
      const h = hashes[start + i]!;
      const base = this.shardOf(h) * SHARD_WORDS;
      const slots = this.meta[base + W_SLOTS]! >>> 0;
      const words = this.u32[bufferIndex(slots)];
      const slot = h & ((1 << this.meta[base + W_CAP_LOG2]!) - 1);
      home_refs[i] = words?.[(slots & 0x1fffffff) * 2 + slot * 2 + 1] ?? 0;
    }
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const ref = home_refs[i]!;
      // The header (word 0, the probe's first read) and the key (word 8): one cache line or two.
      const words = ref === 0 ? undefined : this.u32[bufferIndex(ref)];
      const w = (ref & 0x1fffffff) * 2;
      if (words !== undefined) sum ^= (words[w] ?? 0) ^ (words[w + KEY_WORD] ?? 0);
    }
    return sum;
  }

  /** Slots in use over all shards (keys plus deletes not yet finalized). */
  slotsUsed(): number {
    let used = 0;
    for (let s = 0; s < this.shard_count; s++) used += Atomics.load(this.meta, s * SHARD_WORDS + W_USED);
    return used;
  }

  /** Bytes held by the slot arrays of all shards. */
  indexBytes(): number {
    let bytes = 0;
    for (let s = 0; s < this.shard_count; s++) bytes += 8 << this.meta[s * SHARD_WORDS + W_CAP_LOG2]!;
    return bytes;
  }

  // ---------------------------------------------------------------- internals

  private beginWrite(base: number): void {
    const seq = Atomics.add(this.meta, base + W_SEQ, 1);
    assert((seq & 1) === 0, "seqlock window opened twice");
  }

  private endWrite(base: number): void {
    Atomics.add(this.meta, base + W_SEQ, 1);
  }

  private recordPrev(ref: number): number {
    return this.u32[bufferIndex(ref)]![(ref & 0x1fffffff) * 2 + 2]! >>> 0;
  }

  private setPrev(ref: number, prev: number): void {
    this.u32[bufferIndex(ref)]![(ref & 0x1fffffff) * 2 + 2] = prev;
  }

  private recordBytes(ref: number): number {
    const b = bufferIndex(ref);
    const w = (ref & 0x1fffffff) * 2;
    return RECORD_HEADER_BYTES + this.u32[b]![w]! + this.u32[b]![w + 1]!;
  }

  private freeRecord(ref: number): void {
    this.arena.free(ref, this.recordBytes(ref));
  }

  /** Frees every version older than the newest one visible at `visible_lsn`, marking that one CUT. */
  private discardBelowVisible(head: number, visible_lsn: number): void {
    let keep = head;
    while (keep !== 0 && this.versionLsn(keep) > visible_lsn) keep = this.recordPrev(keep);
    if (keep === 0) return;
    let older = this.recordPrev(keep);
    if (older === 0) return;
    this.setPrev(keep, 0);
    const w = (keep & 0x1fffffff) * 2;
    this.u32[bufferIndex(keep)]![w + 3]! |= FLAG_CUT;
    while (older !== 0) {
      const next = this.recordPrev(older);
      this.freeRecord(older);
      older = next;
    }
  }

  /** If `head` is a delete visible at `visible_lsn` with nothing older kept, removes the key: returns -1. */
  private removeIfVisibleTombstone(base: number, slot: number, head: number, visible_lsn: number): number {
    if (!this.isTombstone(head) || this.versionLsn(head) > visible_lsn) return slot;
    assert(this.recordPrev(head) === 0, "versions below a visible head were discarded");
    const removed = base / 2 + F_REMOVED_LSN;
    this.meta_f64[removed] = Math.max(this.meta_f64[removed]!, this.versionLsn(head));
    this.removeSlot(base, slot);
    this.freeRecord(head);
    return -1;
  }

  private slotWords(base: number): { words: Uint32Array; w0: number; mask: number } {
    const slots = this.meta[base + W_SLOTS]! >>> 0;
    return {
      words: this.u32[bufferIndex(slots)]!,
      w0: (slots & 0x1fffffff) * 2,
      mask: (1 << this.meta[base + W_CAP_LOG2]!) - 1,
    };
  }

  private setSlotRef(base: number, slot: number, ref: number): void {
    const { words, w0 } = this.slotWords(base);
    words[w0 + slot * 2 + 1] = ref;
  }

  private insertSlot(base: number, h: number, ref: number): void {
    const { words, w0, mask } = this.slotWords(base);
    let slot = h & mask;
    while (words[w0 + slot * 2 + 1] !== 0) slot = (slot + 1) & mask;
    words[w0 + slot * 2] = h;
    words[w0 + slot * 2 + 1] = ref;
    this.meta[base + W_USED]!++;
  }

  /** Backward-shift deletion: keeps every probe sequence unbroken without tombstones. */
  private removeSlot(base: number, hole: number): void {
    const { words, w0, mask } = this.slotWords(base);
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      const ref = words[w0 + j * 2 + 1]!;
      if (ref === 0) break;
      const home = words[w0 + j * 2]! & mask;
      const between = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (between) continue;
      words[w0 + hole * 2] = words[w0 + j * 2]!;
      words[w0 + hole * 2 + 1] = ref;
      hole = j;
    }
    words[w0 + hole * 2] = 0;
    words[w0 + hole * 2 + 1] = 0;
    this.meta[base + W_USED]!--;
  }

  /** Doubles a shard: rehash into a new array outside the seqlock window, then swap inside it. */
  private grow(base: number): void {
    const old_log2 = this.meta[base + W_CAP_LOG2]!;
    assert(old_log2 < MAX_CAP_LOG2, "shard capacity limit reached");
    const old = this.slotWords(base);
    const new_log2 = old_log2 + 1;
    const new_mask = (1 << new_log2) - 1;
    const fresh = this.arena.alloc(8 << new_log2);
    const words = this.u32[bufferIndex(fresh)]!;
    const w0 = (fresh & 0x1fffffff) * 2;
    words.fill(0, w0, w0 + (2 << new_log2));
    for (let i = 0; i <= old.mask; i++) {
      const ref = old.words[old.w0 + i * 2 + 1]!;
      if (ref === 0) continue;
      const h = old.words[old.w0 + i * 2]!;
      let slot = h & new_mask;
      while (words[w0 + slot * 2 + 1] !== 0) slot = (slot + 1) & new_mask;
      words[w0 + slot * 2] = h;
      words[w0 + slot * 2 + 1] = ref;
    }
    const old_ref = this.meta[base + W_SLOTS]! >>> 0;
    this.beginWrite(base);
    this.meta[base + W_SLOTS] = fresh | 0;
    this.meta[base + W_CAP_LOG2] = new_log2;
    this.arena.free(old_ref, 8 << old_log2);
    this.endWrite(base);
  }
}
