import { describe, expect, test } from "bun:test";
import { Arena, createArenaShared } from "../../src/engine/arena.ts";
import { hashKey } from "../../src/engine/hash.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { createTableShared, PRESENT, STALE, Table } from "../../src/engine/table.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240611);
const SHARD_BITS = 2;
const utf8 = (text: string) => new TextEncoder().encode(text);
const text = (bytes: Uint8Array | undefined | typeof STALE) =>
  bytes === undefined || bytes === STALE ? bytes : new TextDecoder().decode(bytes);

/**
 * A table over a fresh arena, driven the way the engine drives it: every write is linked at the next
 * LSN while the visible LSN is still below it; `publish` makes it visible and finalizes it.
 */
class Harness {
  readonly arena = new Arena(
    createArenaShared({ buffer_count: 1, initial_bytes: 1 << 20, max_bytes_per_buffer: 64 << 20 }),
  );
  readonly table = new Table(createTableShared(this.arena, SHARD_BITS), this.arena);
  lsn = 0;
  visible = 0;

  /** Links a SET (value) or DEL (undefined) at the next LSN; not yet visible. Returns its LSN and finalize flag. */
  write(key: Uint8Array, value: Uint8Array | undefined): { lsn: number; finalize: boolean } {
    const h = hashKey(key);
    const shard = this.table.shardOf(h);
    const version = this.table.newVersion(key, 0, key.length, value, 0, value?.length ?? 0, 0);
    const lsn = ++this.lsn;
    this.table.lockShard(shard);
    try {
      this.table.reserveSlots(shard, 1);
      return { lsn, finalize: this.table.link(version, h, lsn, this.visible) >= 0 };
    } finally {
      this.table.unlockShard(shard);
    }
  }

  /** Makes everything linked so far visible and finalizes `keys`. */
  publish(...keys: Uint8Array[]): void {
    this.visible = this.lsn;
    for (const key of keys) this.locked(key, (h) => this.table.finalize(key, 0, key.length, h, this.visible));
  }

  /** A write made visible at once (the common path). */
  apply(key: Uint8Array, value: Uint8Array | undefined): number {
    const { lsn, finalize } = this.write(key, value);
    this.visible = lsn;
    if (finalize) this.publish(key);
    return lsn;
  }

  rollback(key: Uint8Array, lsn: number): void {
    this.locked(key, (h) => this.table.rollback(key, h, lsn));
  }

  get(key: Uint8Array, visible = this.visible) {
    return this.table.get(key, hashKey(key), visible);
  }

  /** Every entry visible at `visible`, over all shards: key → [value, lsn]. */
  scan(visible = this.visible): Map<string, [string, number]> {
    const seen = new Map<string, [string, number]>();
    const decoder = new TextDecoder();
    for (let s = 0; s < this.table.shard_count; s++) {
      this.table.scanShard(
        s,
        () => visible,
        (bytes, ko, kl, vl, lsn) => {
          const key = decoder.decode(bytes.subarray(ko, ko + kl));
          expect(seen.has(key)).toBe(false);
          seen.set(key, [decoder.decode(bytes.subarray(ko + kl, ko + kl + vl)), lsn]);
        },
      );
    }
    return seen;
  }

  private locked(key: Uint8Array, body: (h: number) => void): void {
    const h = hashKey(key);
    const shard = this.table.shardOf(h);
    this.table.lockShard(shard);
    try {
      body(h);
    } finally {
      this.table.unlockShard(shard);
    }
  }
}

/** `count` keys of shard 0 whose hashes share their low 4 bits: long probe runs, many wrap-arounds. */
function collidingKeys(count: number): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) {
    const key = `c${i}`;
    const h = hashKey(utf8(key));
    if (h >>> (32 - SHARD_BITS) === 0 && (h & 15) === 5) keys.push(key);
  }
  return keys;
}

describe("Table against a model", () => {
  test("random set/del over colliding and ordinary keys, with growth and backward-shift deletes", () => {
    const rng = prng(SEED);
    const t = new Harness();
    const keys = [...collidingKeys(250), ...Array.from({ length: 150 }, (_, i) => `k${i}`)];
    const model = new Map<string, string>();
    const initial_index_bytes = t.table.indexBytes();
    const check = (step: number) => {
      for (const key of keys) {
        const got = text(t.get(utf8(key)));
        if (got !== model.get(key)) {
          throw new Error(`seed ${SEED} step ${step}: ${key} = ${String(got)}, model ${model.get(key)}`);
        }
      }
      expect(t.table.slotsUsed()).toBe(model.size);
    };
    for (let step = 0; step < 6000; step++) {
      const key = keys[randomInt(rng, keys.length)]!;
      // Grow first (60% sets), then shrink (25% sets), then mixed: many doublings and long delete runs.
      const set_share = step < 2000 ? 0.6 : step < 4000 ? 0.25 : 0.5;
      if (rng() < set_share) {
        const value = `${key}@${step}:${"x".repeat(randomInt(rng, 40))}`;
        t.apply(utf8(key), utf8(value));
        model.set(key, value);
      } else {
        t.apply(utf8(key), undefined);
        model.delete(key);
      }
      if (step % 7 === 0 || step > 5900) check(step);
    }
    check(6000);
    expect(t.table.indexBytes()).toBeGreaterThanOrEqual(4 * initial_index_bytes); // shards doubled
  });

  test("inserting 4000 keys doubles shards many times; every key stays findable", () => {
    const t = new Harness();
    const keys = collidingKeys(1000).concat(Array.from({ length: 3000 }, (_, i) => `g${i}`));
    for (const key of keys) t.apply(utf8(key), utf8(`v-${key}`));
    for (const key of keys) expect(text(t.get(utf8(key)))).toBe(`v-${key}`);
    expect(t.table.slotsUsed()).toBe(keys.length);
    // Shard 0 holds ≥ 1000 + ~750 keys at load ≤ 3/4: at least 4096 slots (2^4 → 2^12, 8 doublings).
    expect(t.table.indexBytes()).toBeGreaterThanOrEqual(8 * 4096);
    // Delete the colliding keys in insertion order: every backward shift must keep the rest reachable.
    for (const [i, key] of keys.slice(0, 1000).entries()) {
      t.apply(utf8(key), undefined);
      if (i % 50 === 0) for (const other of keys.slice(i + 1, 1000)) expect(t.get(utf8(other))).toBeDefined();
    }
    for (const key of keys.slice(1000)) expect(text(t.get(utf8(key)))).toBe(`v-${key}`);
    expect(t.table.slotsUsed()).toBe(3000);
  });
});

describe("version chains", () => {
  test("a version linked at L is invisible below L, visible at ≥ L", () => {
    const t = new Harness();
    const key = utf8("k");
    t.apply(key, utf8("old"));
    const { lsn, finalize } = t.write(key, utf8("new"));
    expect(finalize).toBe(true); // an older version remains below it
    expect(text(t.get(key, lsn - 1))).toBe("old");
    expect(text(t.get(key, lsn))).toBe("new");
    expect(text(t.get(key, lsn + 10))).toBe("new");
    expect(t.table.get(key, hashKey(key), lsn - 1, false)).toBe(PRESENT);
    // A pending insert of a new key: absent below its LSN.
    const fresh = t.write(utf8("fresh"), utf8("v"));
    expect(fresh.finalize).toBe(false);
    expect(t.get(utf8("fresh"), fresh.lsn - 1)).toBeUndefined();
    expect(text(t.get(utf8("fresh"), fresh.lsn))).toBe("v");
  });

  test("finalize frees the older versions; a read below them is then STALE", () => {
    const t = new Harness();
    const key = utf8("k");
    const first = t.apply(key, utf8("a".repeat(100)));
    const live_one = t.arena.stats().live_bytes;
    const second = t.write(key, utf8("b".repeat(100))).lsn;
    expect(t.arena.stats().live_bytes).toBeGreaterThan(live_one);
    expect(text(t.get(key, first))).toBe("a".repeat(100));
    t.publish(key);
    expect(t.arena.stats().live_bytes).toBe(live_one);
    expect(text(t.get(key, second))).toBe("b".repeat(100));
    expect(t.get(key, first)).toBe(STALE);
  });

  test("finalize with link's slot hint, or with a hint gone stale as the shard grew, frees the same", () => {
    const freed_bytes: number[] = [];
    for (const stale of [false, true]) {
      const t = new Harness();
      const key = utf8("k");
      const h = hashKey(key);
      t.apply(key, utf8("a".repeat(100)));
      const version = t.table.newVersion(key, 0, key.length, utf8("b".repeat(100)), 0, 100, 0);
      const shard = t.table.shardOf(h);
      const b_lsn = ++t.lsn;
      t.table.lockShard(shard);
      t.table.reserveSlots(shard, 1);
      const hint = t.table.link(version, h, b_lsn, t.visible);
      t.table.unlockShard(shard);
      expect(hint).toBeGreaterThanOrEqual(0);
      // Other keys of the shard make its slot array grow: the key's slot moves, the hint is stale.
      for (let i = 0; stale && i < 200; i++) {
        const other = utf8(`other-${i}`);
        if (t.table.shardOf(hashKey(other)) === shard) t.apply(other, utf8("x"));
      }
      t.visible = t.lsn;
      const live_before = t.arena.stats().live_bytes;
      t.table.lockShard(shard);
      t.table.finalize(key, 0, key.length, h, t.visible, hint, version);
      t.table.unlockShard(shard);
      freed_bytes.push(live_before - t.arena.stats().live_bytes);
      expect(text(t.get(key))).toBe("b".repeat(100));
      expect(t.get(key, b_lsn - 1)).toBe(STALE); // "a" was freed
    }
    expect(freed_bytes[0]).toBeGreaterThan(100);
    expect(freed_bytes[1]).toBe(freed_bytes[0]!);
  });

  test("linking over a visible chain discards what the visible LSN no longer needs", () => {
    const t = new Harness();
    const key = utf8("k");
    t.apply(key, utf8("v1"));
    const live_one = t.arena.stats().live_bytes;
    const l2 = t.write(key, utf8("v2")).lsn;
    const l3 = t.write(key, utf8("v3")).lsn; // v1 ← v2 ← v3, visible below both
    expect(text(t.get(key, l2 - 1))).toBe("v1");
    expect(text(t.get(key, l2))).toBe("v2");
    expect(text(t.get(key, l3))).toBe("v3");
    t.visible = l2; // v2 is visible now: linking v4 must free v1
    t.write(key, utf8("v4"));
    expect(t.get(key, l2 - 1)).toBe(STALE);
    t.publish(key);
    expect(t.arena.stats().live_bytes).toBe(live_one); // only v4, the same size as v1
    expect(text(t.get(key))).toBe("v4");
  });

  test("a pending delete hides the key only at its LSN; finalize removes the slot", () => {
    const t = new Harness();
    const key = utf8("gone");
    const baseline = t.arena.stats().live_bytes;
    const set = t.apply(key, utf8("v"));
    const del = t.write(key, undefined);
    expect(del.finalize).toBe(true);
    expect(text(t.get(key, set))).toBe("v");
    expect(t.get(key, del.lsn)).toBeUndefined();
    expect(t.table.slotsUsed()).toBe(1);
    t.publish(key);
    expect(t.table.slotsUsed()).toBe(0);
    expect(t.arena.stats().live_bytes).toBe(baseline);
    // A delete of a key the table does not hold is freed at once.
    expect(t.write(utf8("never"), undefined).finalize).toBe(false);
    expect(t.arena.stats().live_bytes).toBe(baseline);
  });

  // A removed slot must not make an older reader see "absent" (mget of [DEL a, SET b] would tear).
  test("a read below a finalized delete is STALE or the old value, never absent", () => {
    const t = new Harness();
    const key = utf8("k");
    const set = t.apply(key, utf8("v"));
    t.write(key, undefined);
    t.publish(key);
    const seen = t.get(key, set);
    expect(seen === STALE || text(seen) === "v").toBe(true);
  });

  test("rollback removes a pending version: the key reverts, a rolled-back insert disappears", () => {
    const t = new Harness();
    const key = utf8("k");
    t.apply(key, utf8("v1"));
    const live_one = t.arena.stats().live_bytes;
    const l2 = t.write(key, utf8("v2")).lsn;
    const l3 = t.write(key, utf8("v3")).lsn;
    const insert = t.write(utf8("new"), utf8("n")).lsn;
    // The WAL writer rolls back in LSN order.
    t.rollback(key, l2);
    expect(text(t.get(key, l2))).toBe("v1");
    expect(text(t.get(key, l3))).toBe("v3");
    t.rollback(key, l3);
    t.rollback(utf8("new"), insert);
    for (const at of [l2, l3, insert, insert + 5]) {
      expect(text(t.get(key, at))).toBe("v1");
      expect(t.get(utf8("new"), at)).toBeUndefined();
    }
    expect(t.table.slotsUsed()).toBe(1);
    expect(t.arena.stats().live_bytes).toBe(live_one);
    // Rolling back an LSN the key never had changes nothing.
    t.rollback(key, 999);
    expect(text(t.get(key, 999))).toBe("v1");
  });

  test("rollback of a pending delete restores the value", () => {
    const t = new Harness();
    const key = utf8("k");
    t.apply(key, utf8("v1"));
    const del = t.write(key, undefined).lsn;
    t.rollback(key, del);
    expect(text(t.get(key, del))).toBe("v1");
    expect(t.table.slotsUsed()).toBe(1);
  });
});

describe("overwrite in place", () => {
  /** The key's head version, the shard mutex held around `body`. */
  function withHead(t: Harness, key: Uint8Array, body: (head: number, h: number) => void): void {
    const h = hashKey(key);
    t.table.lockShard(t.table.shardOf(h));
    try {
      body(t.table.headRef(key, 0, key.length, h), h);
    } finally {
      t.table.unlockShard(t.table.shardOf(h));
    }
  }

  test("only the visible, only version of a value of the same length is overwritable", () => {
    const t = new Harness();
    const key = utf8("k");
    t.apply(key, utf8("abc"));
    withHead(t, key, (head) => {
      expect(t.table.overwritable(head, 3, t.visible)).toBe(true);
      expect(t.table.overwritable(head, 4, t.visible)).toBe(false); // another length
      expect(t.table.overwritable(head, 3, t.visible - 1)).toBe(false); // not visible there
    });
    t.write(key, utf8("xyz")); // pending: an older version stays linked below it
    withHead(t, key, (head) => expect(t.table.overwritable(head, 3, t.lsn)).toBe(false));
    t.publish(key);
    withHead(t, key, (head) => expect(t.table.overwritable(head, 3, t.visible)).toBe(true));
    t.apply(key, undefined);
    t.apply(key, utf8("abc"));
    const tomb = t.write(key, undefined);
    withHead(t, key, (head) => expect(t.table.overwritable(head, 0, tomb.lsn)).toBe(false)); // a delete
  });

  test("a claim is taken once until released; readers do not see it", () => {
    const t = new Harness();
    const key = utf8("k");
    t.apply(key, utf8("abc"));
    withHead(t, key, (head) => {
      expect(t.table.claim(head)).toBe(true);
      expect(t.table.claim(head)).toBe(false);
      expect(text(t.get(key))).toBe("abc");
      expect(t.table.overwritable(head, 3, t.visible)).toBe(true);
      t.table.releaseClaim(head);
      expect(t.table.claim(head)).toBe(true);
      t.table.releaseClaim(head);
    });
  });

  test("overwrite replaces value and version in place, frees nothing; a read below the new version is STALE", () => {
    const t = new Harness();
    const key = utf8("k");
    const first = t.apply(key, utf8("a".repeat(100)));
    const live = t.arena.stats();
    const second = ++t.lsn;
    t.visible = second; // written first: the new version is visible before it is applied
    withHead(t, key, (head, h) => {
      const value = utf8(`xx${"b".repeat(100)}`);
      t.table.overwrite(head, h, value, 2, 0, second);
      expect(t.table.versionLsn(head)).toBe(second);
    });
    expect(t.arena.stats()).toEqual(live);
    expect(text(t.get(key))).toBe("b".repeat(100));
    expect(t.get(key, first)).toBe(STALE);
    expect(t.scan().get("k")).toEqual(["b".repeat(100), second]);
  });
});

describe("touchHomes", () => {
  test(`reads home slots and records without changing anything, for any hash, across growth (seed ${SEED})`, () => {
    const t = new Harness();
    const rng = prng(SEED);
    const keys = Array.from({ length: 600 }, (_, i) => utf8(`touch-${i}`));
    const scratch = new Uint32Array(256);
    for (const [i, key] of keys.entries()) {
      t.apply(key, utf8(`v${i}`));
      // Hashes of keys held, of absent keys, and arbitrary words (a torn read's garbage).
      const hashes = [hashKey(key), hashKey(utf8(`absent-${i}`)), randomInt(rng, 2 ** 32), 0, 2 ** 32 - 1];
      const before = t.scan();
      const live = t.arena.stats().live_bytes;
      expect(typeof t.table.touchHomes(hashes, 0, hashes.length, scratch), `seed ${SEED} key ${i}`).toBe(
        "number",
      );
      expect(t.arena.stats().live_bytes).toBe(live);
      if (i % 50 === 0) expect(t.scan()).toEqual(before);
    }
    // More hashes than scratch slots: only the first scratch.length are touched, none is an error.
    const many = keys.map((key) => hashKey(key));
    expect(typeof t.table.touchHomes(many, 0, many.length, scratch)).toBe("number");
    for (const [i, key] of keys.entries()) expect(text(t.get(key)), `seed ${SEED}`).toBe(`v${i}`);
  });

  test("on torn state: shard words and slots full of garbage (a writer mid-change in another thread): no throw, no write", () => {
    const arena = new Arena(
      createArenaShared({
        buffer_count: 2,
        initial_bytes: 1 << 16,
        max_bytes_per_buffer: 1 << 20,
        grow_step_bytes: 1 << 16,
      }),
    );
    const shared = createTableShared(arena, SHARD_BITS);
    const table = new Table(shared, arena);
    const meta = new Int32Array(shared.meta);
    const scratch = new Uint32Array(64);
    const hashes = Array.from({ length: 64 }, (_, i) => Math.imul(i + 1, 0x9e3779b9) >>> 0);
    // Shard words (table.ts: 16 per shard; word 2 the slot array's ref, word 3 log2 of its capacity).
    const slots_ref = meta[2]! >>> 0;
    const garbage_refs = [0xffffffff, 0x7 << 29, (1 << 29) | 5, slots_ref];
    const garbage_log2 = [31, 32, -1, 0, 27];
    const slot_words = arena.u32[slots_ref >>> 29]!;
    const slot_w0 = (slots_ref & 0x1fffffff) * 2;
    slot_words.fill(0xffffffff, slot_w0, slot_w0 + 32); // slots naming refs past every buffer
    let cases = 0;
    for (const ref of garbage_refs) {
      for (const log2 of garbage_log2) {
        for (let shard = 0; shard < 1 << SHARD_BITS; shard++) {
          meta[shard * 16 + 2] = ref | 0;
          meta[shard * 16 + 3] = log2;
        }
        const meta_before = meta.slice();
        const arena_before = arena.u8.map((bytes) => bytes.slice());
        expect(
          () => table.touchHomes(hashes, 0, hashes.length, scratch),
          `ref ${ref} log2 ${log2}`,
        ).not.toThrow();
        expect([...meta]).toEqual([...meta_before]);
        expect(arena.u8.map((bytes, b) => Buffer.compare(bytes, arena_before[b]!))).toEqual([0, 0]);
        cases++;
      }
    }
    expect(cases).toBe(garbage_refs.length * garbage_log2.length);
  });
});

describe("scanShard", () => {
  test("returns exactly the entries visible at the LSN, with their versions", () => {
    const rng = prng(SEED ^ 0x5ca);
    const t = new Harness();
    const model = new Map<string, [string, number]>();
    for (let i = 0; i < 300; i++) {
      const key = `s${randomInt(rng, 200)}`;
      if (rng() < 0.75) {
        const value = `v${i}`;
        model.set(key, [value, t.apply(utf8(key), utf8(value))]);
      } else {
        t.apply(utf8(key), undefined);
        model.delete(key);
      }
    }
    const visible = t.visible;
    // Pending writes above the visible LSN (never finalized here): none may show up at `visible`.
    const pending = new Map(model);
    const pending_keys: Uint8Array[] = [];
    for (let i = 0; i < 60; i++) {
      const key = `s${randomInt(rng, 260)}`;
      const del = rng() < 0.3;
      const { lsn } = t.write(utf8(key), del ? undefined : utf8(`p${i}`));
      if (del) pending.delete(key);
      else pending.set(key, [`p${i}`, lsn]);
      pending_keys.push(utf8(key));
    }
    expect(t.scan(visible)).toEqual(model);
    expect(t.scan(t.lsn)).toEqual(pending);
    t.publish(...pending_keys);
    expect(t.scan(t.lsn)).toEqual(pending);
  });
});

describe("memory", () => {
  test("steady overwrite of one key does not grow the arena", () => {
    const t = new Harness();
    const key = utf8("hot");
    const value = new Uint8Array(200);
    for (let i = 0; i < 10; i++) t.apply(key, value);
    const warm = t.arena.stats();
    for (let i = 0; i < 20_000; i++) {
      value[0] = i;
      t.apply(key, value);
    }
    const after = t.arena.stats();
    expect(after.reserved_bytes).toBe(warm.reserved_bytes);
    expect(after.bump_bytes).toBe(warm.bump_bytes);
    expect(after.live_bytes).toBe(warm.live_bytes);
    expect(t.get(key)).toEqual(value);
  });

  test("deleting everything and finalizing returns to the index-only baseline", () => {
    const rng = prng(SEED ^ 0x3e3);
    const t = new Harness();
    const fresh = t.arena.stats();
    expect(fresh.live_bytes).toBe(t.table.indexBytes());
    expect(fresh.chunks_live).toBe(t.table.shard_count);
    const keys = Array.from({ length: 1500 }, (_, i) => `m${i}`);
    for (const key of keys) t.apply(utf8(key), new Uint8Array(randomInt(rng, 300)));
    for (const key of keys) if (rng() < 0.5) t.apply(utf8(key), new Uint8Array(randomInt(rng, 300)));
    // Some deletes stay pending for a while, then are published together.
    const late = keys.filter(() => rng() < 0.2);
    const late_set = new Set(late);
    for (const key of keys) if (!late_set.has(key)) t.apply(utf8(key), undefined);
    for (const key of late) t.write(utf8(key), undefined);
    t.publish(...late.map(utf8));
    const stats = t.arena.stats();
    expect(t.table.slotsUsed()).toBe(0);
    // Only the (grown) slot arrays remain: one chunk per shard, exactly their size.
    expect(stats.chunks_live).toBe(t.table.shard_count);
    expect(stats.live_bytes).toBe(t.table.indexBytes());
    for (const key of keys) expect(t.get(utf8(key))).toBeUndefined();
  });
});
