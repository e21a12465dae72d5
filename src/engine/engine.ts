/**
 * A thread's handle on the storage engine: reads and writes on the shared table, any number of
 * threads at once. Built from {@link EngineShared} (made once by the owner, see host.ts, and posted
 * to every worker).
 *
 * Reads see only versions at or below the visible LSN: with fsync `always` a reader never sees a
 * write that a crash or power cut could take back; with `everysec`/`no` never one that kill -9 could.
 * A write resolves once its LSN is visible; a multi-key write is one WAL record whose keys become
 * visible together (one LSN), and `mget` reads every key at one visible LSN.
 *
 * @example
 * const engine = new Engine(shared);
 * await engine.set(key, value);
 * engine.get(key); // → a copy of value
 * await engine.mset([[k1, v1], [k2, v2]]); // all or nothing, atomically visible
 */
import { Arena, type ArenaShared } from "./arena.ts";
import { BatchShards } from "./batch_shards.ts";
import type { EngineConfig } from "./config.ts";
import { type CheckpointStatus, EngineControl } from "./control.ts";
import { assert, InvalidError, TooLargeError, UnavailableError } from "./errors.ts";
import { hashKey } from "./hash.ts";
import { STALE, Table, type TableShared, type ValueSink } from "./table.ts";
import { OP_DEL, OP_SET } from "./wal/format.ts";
import {
  delEntry,
  encodedRecordSize,
  encodeRecord,
  entryInBounds,
  setEntry,
  type WalEntry,
} from "./wal/record.ts";
import { Visibility } from "./wal/visibility.ts";
import { WalBuffer, type WalBufferShared } from "./wal/wal_buffer.ts";

/**
 * Keys whose table lines one touch reads ahead (Table.touchHomes): a write touches its keys this
 * many at a time, each window just before it links them (touched earlier, a large batch's lines
 * would be pushed out of cache by its own allocations and encoding before their link), and a
 * protocol's prefetch touches at most this many reads.
 */
export const TOUCH_KEYS_MAX = 64;
const LINK_TOUCH_WINDOW = 32;

/**
 * Finds the keys of the reads in `bytes[start, end)` and writes their ranges to
 * `bytes[key_starts[i], key_ends[i])`, i < the count returned (at most `key_starts.length`): a
 * protocol's scanner for {@link Engine.touchKeys} (RESP `findLeadingGets`, msgpack `findGetKeys`).
 */
export type KeyFinder = (
  bytes: Uint8Array,
  start: number,
  end: number,
  key_starts: Int32Array,
  key_ends: Int32Array,
) => number;

/** See Engine's `plan`: per entry, the head version claimed (or 0) and the new version (or 0: in place). */
interface WritePlan {
  readonly claimed: number[];
  readonly versions: number[];
}

/** Everything a thread needs to attach to the engine; structured-cloneable (SharedArrayBuffers). */
export interface EngineShared {
  readonly config: EngineConfig;
  readonly arena: ArenaShared;
  readonly table: TableShared;
  readonly wal: WalBufferShared;
  /** Int32 words shared by the host and its workers: stop flag, checkpoint status. */
  readonly control: SharedArrayBuffer;
  /** The WAL syncer's request and result words (wal/wal_syncer.ts). */
  readonly wal_sync: SharedArrayBuffer;
  /** The host runs no WAL writer: a lone I/O worker's LocalWalWriter writes the WAL (host.ts). */
  readonly local_wal_writer: boolean;
}

/** See {@link Engine.stats}. `keys` counts deletes not yet finalized too (briefly). */
export interface EngineStats {
  readonly keys: number;
  readonly memory: {
    readonly arena_reserved_bytes: number;
    readonly arena_live_bytes: number;
    readonly index_bytes: number;
    readonly wal_buffer_bytes: number;
  };
  readonly lsn: {
    readonly visible: number;
    readonly durable: number;
    readonly written: number;
    readonly next: number;
  };
  readonly wal: {
    readonly bytes_written: number;
    readonly fsyncs: number;
    readonly last_group_records: number;
    readonly state: string;
    readonly error: string;
  };
  readonly checkpoint: CheckpointStatus;
}

/** Outcome of {@link Engine.write}. */
export interface WriteResult {
  /** The write's LSN: the new version of every key it wrote. */
  readonly lsn: number;
  /** For a single DEL: whether the key held a value. True otherwise. */
  readonly existed: boolean;
  /** DEL entries whose key held a value just before this write (a key listed twice counts twice). */
  readonly removed: number;
}

export interface EngineOptions {
  /**
   * The WAL writer runs on this thread (simulation, and a lone I/O worker's `LocalWalWriter`):
   * `wait_for_space` must make it step. `write_now` (the lone writer of the table, a
   * `LocalWalWriter`) steps it with the write's shard locks held, once the write's record is
   * complete: a write it made visible is linked as visible at once, with no older version kept and
   * nothing to finalize (see {@link Engine.write}). It must then not take a shard lock the engine
   * holds ({@link Engine.holdsShard}). Otherwise the caller settles writes with `poll()`; given
   * `write_soon` (a `LocalWalWriter` with fsync `always`), the engine calls it after each record it
   * completes, its shard mutexes still held: it must not step then, only make the writer step once
   * later in the event-loop turn (so that one write(2) and one fdatasync cover every record of the
   * turn) and poll.
   */
  readonly inline?: {
    readonly wait_for_space: () => void;
    readonly write_now?: () => void;
    readonly write_soon?: () => void;
    /** False once the writer is closed: a write is then refused before its LSN. */
    readonly writer_open?: () => boolean;
  };
}

export class Engine {
  readonly config: EngineConfig;
  readonly arena: Arena;
  readonly table: Table;
  readonly wal: WalBuffer;
  readonly visibility: Visibility;
  readonly control: EngineControl;
  private readonly write_now: (() => void) | undefined;
  private readonly write_soon: (() => void) | undefined;
  private readonly writer_open: (() => boolean) | undefined;
  /** The batch's shard mutexes are held (see {@link holdsShard}). */
  private holding_shards = false;
  /** The shards of the write being applied (reused: see BatchShards). */
  private readonly batch_shards = new BatchShards();
  private readonly shard_of = (h: number) => this.table.shardOf(h);
  /** Scratch for Table.touchHomes. */
  private readonly home_refs = new Uint32Array(TOUCH_KEYS_MAX);
  /** Scratch for reserveSlotsFor: slots each shard of the write needs. */
  private slot_counts = new Int32Array(64);
  /** Scratch for {@link touchKeys}. */
  private readonly touch_hashes: number[] = new Array(TOUCH_KEYS_MAX).fill(0);
  /** The key ranges {@link touchKeys} found last: reads reuse their hashes in order ({@link touchedHash}). */
  private touched_bytes: Uint8Array | undefined = undefined;
  private readonly touched_starts = new Int32Array(TOUCH_KEYS_MAX);
  private readonly touched_ends = new Int32Array(TOUCH_KEYS_MAX);
  /** How many of them were hashed, and the next one a read may reuse. */
  private touched_count = 0;
  private touched_next = 0;
  /** What touchHomes read, kept so that its loads are not optimised away. */
  private touch_sink = 0;
  /** See {@link writesInFlight}. */
  private writes_in_flight = 0;
  /** Resolvers of {@link noWritesInFlight}, called when the count falls to 0. */
  private idle_waiters: Array<() => void> = [];

  constructor(shared: EngineShared, options: EngineOptions = {}) {
    this.config = shared.config;
    this.arena = new Arena(shared.arena);
    this.table = new Table(shared.table, this.arena);
    const wait = options.inline?.wait_for_space;
    this.wal = new WalBuffer(shared.wal, wait === undefined ? undefined : () => wait());
    this.visibility = new Visibility(this.wal, {
      inline: options.inline !== undefined,
      spin_us: this.config.write_wait_spin_us,
    });
    this.control = new EngineControl(shared.control);
    this.write_now = options.inline?.write_now;
    this.write_soon = options.inline?.write_soon;
    assert(
      this.write_now === undefined || this.write_soon === undefined,
      "write_now or write_soon, not both",
    );
    this.writer_open = options.inline?.writer_open;
  }

  /** Counters of the whole engine (any thread may ask). */
  stats(): EngineStats {
    const arena = this.arena.stats();
    const counters = this.wal.counters();
    const state = this.wal.state();
    return {
      keys: this.table.slotsUsed(),
      memory: {
        arena_reserved_bytes: arena.reserved_bytes,
        arena_live_bytes: arena.live_bytes,
        index_bytes: this.table.indexBytes(),
        wal_buffer_bytes: this.wal.ring_bytes,
      },
      lsn: { ...this.wal.lsns(), next: this.wal.nextLsn() },
      wal: {
        bytes_written: counters.wal_bytes,
        fsyncs: counters.fsyncs,
        last_group_records: counters.last_group_records,
        state: state === 0 ? "running" : state === 1 ? "recovering from a write error" : "stopped",
        error: this.wal.lastError(),
      },
      checkpoint: this.control.lastCheckpoint(),
    };
  }

  // ---------------------------------------------------------------- reads

  /** The value of `key` (a copy), or undefined. */
  get(key: Uint8Array): Uint8Array | undefined {
    this.checkKey(key);
    const h = hashKey(key);
    for (;;) {
      const result = this.table.get(key, h, this.wal.visibleLsn(), true);
      if (result !== STALE) return result;
    }
  }

  /**
   * Hands the value of the key `key[key_start, +key_length)` (by default all of `key`) in place to
   * `sink` (Table.read: no copy of its own; the sink copies it, say straight into a reply, and its
   * last call counts). True if the key holds a value.
   *
   * @example
   * if (!engine.read(key, writer)) writer.nil();
   * engine.read(request_bytes, writer, key_start, key_length); // a key inside a larger array
   */
  read(key: Uint8Array, sink: ValueSink, key_start = 0, key_length?: number): boolean {
    const length = this.checkKeyRange(key, key_start, key_length);
    const touched = this.touchedHash(key, key_start, key_start + length);
    const h = touched >= 0 ? touched : hashKey(key, key_start, key_start + length);
    for (;;) {
      const result = this.table.read(key, key_start, length, h, this.wal.visibleLsn(), sink);
      if (result !== STALE) return result;
    }
  }

  /**
   * Touches the table lines (home slot, then record) of the keys whose hashes are
   * `hashes[start, end)` (the first {@link TOUCH_KEYS_MAX}), so that their cache misses overlap
   * instead of meeting each probe one after the other. Takes no lock, changes nothing; a single key
   * gains nothing.
   */
  private touch(hashes: readonly number[], start: number, end: number): void {
    if (end - start > 1) this.touch_sink ^= this.table.touchHomes(hashes, start, end, this.home_refs);
  }

  /**
   * A hint before the reads of `bytes[start, end)` run: `find` (the protocol's scanner) names their
   * keys, and if there are two or more (one has no miss to overlap with) they are hashed and their
   * table lines touched (see `touch`); the reads that follow reuse those hashes ({@link read}).
   *
   * @example
   * engine.touchKeys(bytes, start, end, findLeadingGets); // then engine.read(…) for each GET
   */
  touchKeys(bytes: Uint8Array, start: number, end: number, find: KeyFinder): void {
    const starts = this.touched_starts;
    const ends = this.touched_ends;
    const n = find(bytes, start, end, starts, ends);
    this.touched_bytes = bytes;
    this.touched_count = 0;
    this.touched_next = 0;
    if (n < 2) return;
    const hashes = this.touch_hashes;
    for (let i = 0; i < n; i++) hashes[i] = hashKey(bytes, starts[i]!, ends[i]!);
    this.touched_count = n;
    this.touch(hashes, 0, n);
  }

  /**
   * The hash {@link touchKeys} computed for `bytes[start, end)`, if that is the next key it touched
   * (same array, same range: input bytes are never overwritten), else -1. Reads come in the order
   * their keys were touched, so one cursor suffices; a read out of that order hashes its own key.
   */
  private touchedHash(bytes: Uint8Array, start: number, end: number): number {
    const next = this.touched_next;
    if (bytes !== this.touched_bytes || next >= this.touched_count) return -1;
    if (this.touched_starts[next] !== start || this.touched_ends[next] !== end) return -1;
    this.touched_next = next + 1;
    return this.touch_hashes[next]!;
  }

  /** True if `key` holds a value. */
  exists(key: Uint8Array): boolean {
    this.checkKey(key);
    const h = hashKey(key);
    for (;;) {
      const result = this.table.get(key, h, this.wal.visibleLsn(), false);
      if (result !== STALE) return result !== undefined;
    }
  }

  /** The values of `keys` (copies, undefined where absent), all read at one visible LSN. */
  mget(keys: readonly Uint8Array[]): Array<Uint8Array | undefined> {
    for (const key of keys) this.checkKey(key);
    const hashes = keys.map((key) => hashKey(key));
    const values: Array<Uint8Array | undefined> = new Array(keys.length);
    retry: for (;;) {
      const visible = this.wal.visibleLsn();
      for (let i = 0; i < keys.length; i++) {
        const result = this.table.get(keys[i]!, hashes[i]!, visible, true);
        if (result === STALE) continue retry;
        values[i] = result;
      }
      return values;
    }
  }

  // ---------------------------------------------------------------- writes

  /**
   * Sets `key` to `value` (bytes stored exactly); resolves to the write's LSN (the key's new version).
   * `expiry_unix_ms` is reserved for TTL (0 = none).
   */
  async set(key: Uint8Array, value: Uint8Array, expiry_unix_ms = 0): Promise<number> {
    return (await this.write([setEntry(key, value, expiry_unix_ms)])).lsn;
  }

  /** Deletes `key`; true if it held a value. */
  async del(key: Uint8Array): Promise<boolean> {
    return (await this.write([delEntry(key)])).existed;
  }

  /**
   * Sets every pair atomically: one WAL record, visible all at once, all or nothing after a crash.
   * Resolves to its LSN.
   */
  async mset(pairs: ReadonlyArray<readonly [Uint8Array, Uint8Array]>): Promise<number> {
    if (pairs.length === 0) throw new InvalidError("mset needs at least one key");
    return await this.write(pairs.map(([key, value]) => setEntry(key, value))).then((r) => r.lsn);
  }

  /**
   * Applies a batch of SET/DEL entries as one WAL record. Resolves when the record is visible, with
   * its LSN, for a single DEL whether the key held a value, and how many DEL entries removed a value.
   * A single DEL of an absent key writes nothing: its `lsn` is then the version it observed (0 if the
   * key never existed).
   * Throws TooLargeError or InvalidError before changing anything; rejects with UnavailableError
   * if the WAL refuses or fails the write (then nothing of it is visible, now or after a restart).
   */
  async write(entries: readonly WalEntry[]): Promise<WriteResult> {
    this.writes_in_flight++;
    try {
      return await this.applyWrite(entries);
    } finally {
      this.writes_in_flight--;
      if (this.writes_in_flight === 0 && this.idle_waiters.length > 0) {
        const waiters = this.idle_waiters;
        this.idle_waiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  /**
   * Resolves once no write of this Engine is in flight ({@link writesInFlight} is 0), at once if none is.
   *
   * @example
   * await engine.noWritesInFlight(); // every write started so far has settled
   */
  noWritesInFlight(): Promise<void> {
    if (this.writes_in_flight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle_waiters.push(resolve));
  }

  /**
   * Writes of this Engine that started and have not settled yet (nor finalized their keys). A thread
   * that is about to end, or to be terminated, waits for 0: a write holds shard mutexes while it
   * links, and one cut short there would leave them held for every other thread (the checkpointer).
   *
   * @example
   * if (engine.writesInFlight() === 0) self.postMessage({ drained: true });
   */
  writesInFlight(): number {
    return this.writes_in_flight;
  }

  private async applyWrite(entries: readonly WalEntry[]): Promise<WriteResult> {
    const size_bytes = this.checkBatch(entries);
    if (this.writer_open?.() === false) throw new UnavailableError("the write-ahead log is closed");
    const hashes = entries.map((e) => hashKey(e.key, e.key_start, e.key_start + e.key_length));
    // Valid until the first await: the next write reloads it.
    const shards = this.batch_shards;
    shards.load(hashes, this.shard_of);
    const write_first = this.write_now !== undefined;
    // Versions not linked yet: discarded if the write fails before linking them. Threaded, they are
    // allocated before the mutexes; written first, under them (writeFirst), but before any change.
    let versions = write_first ? [] : this.newVersions(entries);
    let lsn = 0;
    let epoch = 0;
    let existed = true;
    let removed = 0;
    let visible_at_link = 0;
    /** The slot of each entry to finalize once visible, -1 for none (Table.link). */
    const finalize: number[] = [];
    let linked: number[] = [];
    for (let i = 0; i < shards.length; i++) this.table.lockShard(shards.shards[i]!);
    this.holding_shards = true;
    try {
      removed = this.countHeld(entries, hashes);
      if (entries.length === 1 && entries[0]!.op === OP_DEL && removed === 0) {
        // A DEL of an absent key writes nothing; it reports the version it observed.
        existed = false;
        const head = this.headRef(entries[0]!, hashes[0]!);
        for (const v of versions) this.table.discardVersion(v);
        versions.length = 0;
        lsn = head === 0 ? 0 : this.table.versionLsn(head);
        epoch = this.wal.epoch();
      } else if (write_first) {
        ({ lsn, epoch } = this.writeFirst(entries, hashes, size_bytes));
        visible_at_link = lsn; // applied visible: nothing to wait for, nothing to finalize
      } else {
        for (let i = 0; i < shards.length; i++) this.table.reserveSlots(shards.shards[i]!, shards.counts[i]!);
        lsn = this.wal.reserve(size_bytes);
        epoch = this.wal.reserved_epoch;
        try {
          encodeRecord(lsn, entries, this.wal.ring, this.wal.reservedOffset(lsn));
          visible_at_link = this.wal.visibleLsn();
          for (let i = 0; i < versions.length; i++) {
            if (i % LINK_TOUCH_WINDOW === 0) this.touch(hashes, i, i + LINK_TOUCH_WINDOW);
            finalize.push(this.table.link(versions[i]!, hashes[i]!, lsn, visible_at_link));
          }
        } finally {
          linked = versions;
          versions = [];
          this.wal.complete(lsn);
          this.write_soon?.();
        }
      }
    } finally {
      for (const v of versions) this.table.discardVersion(v);
      this.holding_shards = false;
      for (let i = shards.length - 1; i >= 0; i--) this.table.unlockShard(shards.shards[i]!);
    }
    if (lsn > 0 && visible_at_link < lsn) await this.visibility.wait(lsn, epoch);
    for (let i = 0; i < finalize.length; i++) {
      if (finalize[i]! >= 0) this.finalize(entries[i]!, hashes[i]!, finalize[i]!, linked[i]!);
    }
    return { lsn, existed, removed };
  }

  /**
   * The write of a table's lone writer (`write_now`), its shard mutexes held: slots are reserved
   * for its new versions, and its record reserved, completed and written before anything is linked, so each version is
   * linked visible and replaces the old one at once (nothing to finalize, nothing to wait for), and
   * a value of the same length as its key's only version is written over it in place, with no
   * version allocated or freed (Table.overwrite). Threaded, versions are linked first and the record
   * completed after (applyWrite): else a reader on another thread, which takes no mutex, could see
   * the record visible with half its versions linked. Throws, with nothing changed, when memory is
   * exhausted, when the log refuses the record, or when writing it failed (it was rolled back).
   */
  private writeFirst(
    entries: readonly WalEntry[],
    hashes: readonly number[],
    size_bytes: number,
  ): { lsn: number; epoch: number } {
    const plan = this.plan(entries, hashes);
    try {
      this.reserveSlotsFor(plan, hashes);
      const lsn = this.wal.reserve(size_bytes);
      const epoch = this.wal.reserved_epoch;
      try {
        encodeRecord(lsn, entries, this.wal.ring, this.wal.reservedOffset(lsn));
      } finally {
        this.wal.complete(lsn);
      }
      this.write_now!();
      if (this.visibility.outcome(lsn, epoch) === "failed") throw this.visibility.failure();
      assert(this.wal.visibleLsn() >= lsn, "write_now writes the record or fails it");
      this.applyPlan(plan, entries, hashes, lsn);
      return { lsn, epoch };
    } finally {
      this.releasePlan(plan);
    }
  }

  /**
   * Applies a plan whose record is written: in place, or linked visible. The record is in the log,
   * so a failure here (a broken invariant) would leave the table short of it until a restart: it
   * ends the thread (thrown again asynchronously, as LocalWalWriter does) and the daemon fails fast.
   */
  private applyPlan(
    plan: WritePlan,
    entries: readonly WalEntry[],
    hashes: readonly number[],
    lsn: number,
  ): void {
    try {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!;
        const head = plan.claimed[i]!;
        const version = plan.versions[i]!;
        plan.claimed[i] = 0;
        plan.versions[i] = 0;
        if (head !== 0) this.table.releaseClaim(head);
        if (version === 0) {
          this.table.overwrite(head, hashes[i]!, e.value!, e.value_start, e.expiry_unix_ms, lsn);
          continue;
        }
        const slot = this.table.link(version, hashes[i]!, lsn, lsn);
        assert(slot === -1, "linked visible: nothing to finalize");
      }
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
      throw error;
    }
  }

  /**
   * What {@link writeFirst} applies, under the write's shard mutexes: for each entry the key's head
   * version it claimed (0 if none, or if an earlier entry of the write claimed it: a key named twice
   * gets a version linked after the first), and the entry's new version, or 0 for one whose value
   * goes in place. Keys are touched ahead in windows, so the probes' cache misses overlap. Throws,
   * with nothing held, when memory is exhausted.
   */
  private plan(entries: readonly WalEntry[], hashes: readonly number[]): WritePlan {
    const plan: WritePlan = { claimed: [], versions: [] };
    const visible = this.wal.visibleLsn();
    try {
      for (let i = 0; i < entries.length; i++) {
        if (i % LINK_TOUCH_WINDOW === 0) this.touch(hashes, i, i + LINK_TOUCH_WINDOW);
        const e = entries[i]!;
        const head = this.headRef(e, hashes[i]!);
        const claimed = head !== 0 && this.table.claim(head) ? head : 0;
        plan.claimed.push(claimed);
        const in_place =
          claimed !== 0 && e.op === OP_SET && this.table.overwritable(claimed, e.value_length, visible);
        plan.versions.push(in_place ? 0 : this.newVersion(e));
      }
    } catch (error) {
      this.releasePlan(plan);
      throw error;
    }
    return plan;
  }

  /**
   * Makes room for the plan's new versions in their shards (Table.reserveSlots): a value written in
   * place needs no slot, so a nearly full arena does not refuse it for a shard's growth.
   */
  private reserveSlotsFor(plan: WritePlan, hashes: readonly number[]): void {
    const shards = this.batch_shards;
    const counts =
      this.slot_counts.length >= shards.length ? this.slot_counts : new Int32Array(shards.length);
    this.slot_counts = counts;
    counts.fill(0, 0, shards.length);
    // Counted up from the new versions, not down from the batch's keys: a batch of overwrites in
    // place (the common case of a steady workload) then looks no shard up.
    for (let i = 0; i < plan.versions.length; i++) {
      if (plan.versions[i] !== 0) counts[shards.indexOf(this.table.shardOf(hashes[i]!))]!++;
    }
    for (let i = 0; i < shards.length; i++) {
      if (counts[i]! > 0) this.table.reserveSlots(shards.shards[i]!, counts[i]!);
    }
  }

  /** Releases the claims a plan still holds and frees the versions it did not link. */
  private releasePlan(plan: WritePlan): void {
    for (const head of plan.claimed) if (head !== 0) this.table.releaseClaim(head);
    for (const version of plan.versions) if (version !== 0) this.table.discardVersion(version);
  }

  /**
   * True while this engine's write holds `shard`'s mutex (its record being written by `write_now`,
   * or the ring full while it reserves: a rollback on this thread must not wait for it).
   */
  holdsShard(shard: number): boolean {
    return this.holding_shards && this.batch_shards.indexOf(shard) >= 0;
  }

  /** DEL entries whose key holds a value now (the caller holds their shards' mutexes). */
  private countHeld(entries: readonly WalEntry[], hashes: readonly number[]): number {
    let held = 0;
    for (let i = 0; i < entries.length; i++) {
      if (entries[i]!.op !== OP_DEL) continue;
      const head = this.headRef(entries[i]!, hashes[i]!);
      if (head !== 0 && !this.table.isTombstone(head)) held++;
    }
    return held;
  }

  /** The head version of `entry`'s key (the caller holds its shard's mutex). */
  private headRef(entry: WalEntry, h: number): number {
    return this.table.headRef(entry.key, entry.key_start, entry.key_length, h);
  }

  /** Simulation: settle writes whose LSN became visible. */
  poll(): void {
    this.visibility.poll();
  }

  private finalize(entry: WalEntry, h: number, slot: number, ref: number): void {
    const shard = this.table.shardOf(h);
    this.table.lockShard(shard);
    try {
      this.table.finalize(entry.key, entry.key_start, entry.key_length, h, this.wal.visibleLsn(), slot, ref);
    } finally {
      this.table.unlockShard(shard);
    }
  }

  /** Allocates every version up front, so a full arena fails the write before anything changed. */
  private newVersions(entries: readonly WalEntry[]): number[] {
    const versions: number[] = [];
    try {
      for (const e of entries) versions.push(this.newVersion(e));
    } catch (error) {
      for (const v of versions) this.table.discardVersion(v);
      throw error;
    }
    return versions;
  }

  private newVersion(e: WalEntry): number {
    return this.table.newVersion(
      e.key,
      e.key_start,
      e.key_length,
      e.value,
      e.value_start,
      e.value_length,
      e.expiry_unix_ms,
    );
  }

  // ---------------------------------------------------------------- limits

  private checkKey(key: Uint8Array): void {
    this.checkKeyRange(key, 0, undefined);
  }

  /** Checks the key `key[key_start, +key_length)` (to the end of `key` by default); returns its length. */
  private checkKeyRange(key: Uint8Array, key_start: number, key_length: number | undefined): number {
    if (!(key instanceof Uint8Array)) throw new InvalidError("a key is a byte string");
    const length = key_length ?? key.length - key_start;
    if (!(key_start >= 0 && length >= 0 && key_start + length <= key.length))
      throw new InvalidError("a key's range lies within its array");
    this.checkKeyLength(length);
    return length;
  }

  private checkKeyLength(length_bytes: number): void {
    if (length_bytes > this.config.max_key_bytes) {
      throw new TooLargeError(
        `key of ${length_bytes} bytes is over the limit of ${this.config.max_key_bytes}`,
      );
    }
  }

  /** Validates every entry and returns the record size. */
  private checkBatch(entries: readonly WalEntry[]): number {
    if (entries.length === 0) throw new InvalidError("a write needs at least one entry");
    for (const e of entries) {
      if (!entryInBounds(e))
        throw new InvalidError("an entry is a SET of a byte string or a DEL, its ranges within their arrays");
      this.checkKeyLength(e.key_length);
      if (e.value_length > this.config.max_value_bytes) {
        throw new TooLargeError(
          `value of ${e.value_length} bytes is over the limit of ${this.config.max_value_bytes}`,
        );
      }
      if (!Number.isFinite(e.expiry_unix_ms) || e.expiry_unix_ms < 0)
        throw new InvalidError("expiry must be ≥ 0");
    }
    const size_bytes = encodedRecordSize(entries);
    if (size_bytes > this.config.max_batch_bytes) {
      throw new TooLargeError(
        `write of ${size_bytes} bytes is over the batch limit of ${this.config.max_batch_bytes}`,
      );
    }
    return size_bytes;
  }
}
