/**
 * The table side of recovery: versions read from `data.db` and the WAL go into a {@link ReplaySink};
 * the {@link Loader} links them into the table, every version visible at once. Recovery runs the
 * loader on its own thread, or hands the versions to a replay worker through a `PipeSink`
 * (replay_pipe.ts), so that reading and verifying overlap linking on two cores.
 *
 * @example
 * const loader = new Loader(table);
 * loader.set(bytes, key_offset, key_length, value_offset, value_length, lsn, 0);
 * loader.flush(); // the key is in the table now
 */
import { hashKey } from "./hash.ts";
import type { Table } from "./table.ts";

/** Versions linked at once, grouped by shard. */
const LINK_BATCH = 65536;

/**
 * Where recovery puts the versions it reads. `bytes` is valid only during the call: a sink copies
 * what it keeps. Versions of one key arrive in LSN order.
 */
export interface ReplaySink {
  /** A SET of `bytes[ko, +kl)` to `bytes[vo, +vl)` at `lsn`; `expiry` 0 is none. */
  set(bytes: Uint8Array, ko: number, kl: number, vo: number, vl: number, lsn: number, expiry: number): void;
  /** A DEL of `bytes[ko, +kl)` at `lsn`. */
  del(bytes: Uint8Array, ko: number, kl: number, lsn: number): void;
  /** Returns once every version put so far is linked into the table. */
  flush(): void;
}

/**
 * Links recovered versions into a table no other thread uses meanwhile (recovery's one writer at a
 * time: replay_pipe.ts hands the table between the recovering thread and its worker at barriers).
 */
export class Loader implements ReplaySink {
  private queued = 0;
  private readonly hashes = new Uint32Array(LINK_BATCH);
  private readonly versions = new Uint32Array(LINK_BATCH);
  private readonly key_lengths = new Uint32Array(LINK_BATCH);
  private readonly tombstones = new Uint8Array(LINK_BATCH);
  private readonly order = new Uint32Array(LINK_BATCH);
  private readonly shard_counts: Uint32Array;

  constructor(private readonly table: Table) {
    this.shard_counts = new Uint32Array(table.shard_count + 1);
  }

  set(bytes: Uint8Array, ko: number, kl: number, vo: number, vl: number, lsn: number, expiry: number): void {
    this.setHashed(hashKey(bytes, ko, ko + kl), bytes, ko, kl, vo, vl, lsn, expiry);
  }

  del(bytes: Uint8Array, ko: number, kl: number, lsn: number): void {
    this.delHashed(hashKey(bytes, ko, ko + kl), bytes, ko, kl, lsn);
  }

  /** {@link set} of a key whose hash `h` (hash.ts) the caller computed. */
  setHashed(
    h: number,
    bytes: Uint8Array,
    ko: number,
    kl: number,
    vo: number,
    vl: number,
    lsn: number,
    expiry: number,
  ): void {
    this.queue(this.table.newVersion(bytes, ko, kl, bytes, vo, vl, expiry, lsn), h, kl, false);
  }

  /** {@link del} of a key whose hash `h` (hash.ts) the caller computed. */
  delHashed(h: number, bytes: Uint8Array, ko: number, kl: number, lsn: number): void {
    this.queue(this.table.newVersion(bytes, ko, kl, undefined, 0, 0, 0, lsn), h, kl, true);
  }

  /**
   * Queues a version; {@link flush} links the queue in shard order. Copying the bytes happens now
   * (the source is only valid during the call); only linking waits.
   */
  private queue(version: number, h: number, key_length: number, tombstone: boolean): void {
    this.hashes[this.queued] = h;
    this.versions[this.queued] = version;
    this.key_lengths[this.queued] = key_length;
    this.tombstones[this.queued] = tombstone ? 1 : 0;
    if (++this.queued === LINK_BATCH) this.flush();
  }

  /**
   * Links the queued versions grouped by shard (a stable counting sort: one key's versions keep their
   * LSN order, as one key lives in one shard). Replay order is random over the shards; grouped, each
   * shard's slot array is touched in one burst instead of once per key — far fewer cache misses.
   * No shard mutex is taken: during recovery the table has one writer at a time and no reader.
   */
  flush(): void {
    const n = this.queued;
    const count = this.shard_counts.fill(0);
    for (let i = 0; i < n; i++) count[this.table.shardOf(this.hashes[i]!) + 1]!++;
    for (let s = 1; s < count.length; s++) count[s]! += count[s - 1]!;
    for (let i = 0; i < n; i++) this.order[count[this.table.shardOf(this.hashes[i]!)]!++] = i;
    let shard = -1;
    for (let j = 0; j < n; j++) {
      const i = this.order[j]!;
      const h = this.hashes[i]!;
      if (this.table.shardOf(h) !== shard) {
        shard = this.table.shardOf(h);
        this.table.reserveSlots(shard, count[shard]! - (shard === 0 ? 0 : count[shard - 1]!));
      }
      this.table.linkRecovered(this.versions[i]!, h, this.key_lengths[i]!, this.tombstones[i] === 1);
    }
    this.queued = 0;
  }
}
