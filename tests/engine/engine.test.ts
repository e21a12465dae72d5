import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { engineConfig } from "../../src/engine/config.ts";
import type { Engine, KeyFinder } from "../../src/engine/engine.ts";
import { InvalidError, TooLargeError, UnavailableError } from "../../src/engine/errors.ts";
import { openEngine } from "../../src/engine/host.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";
import { delEntry, encodedRecordSize, setEntry } from "../../src/engine/wal/record.ts";
import { SMALL_LIMITS as LIMITS, openSim, SEED, settle, text, utf8 } from "./sim_host.ts";

/** An inline engine on a SimDisk; `log` collects its log lines. */

/** What must not move when a write is refused. */
function footprint(engine: Engine, disk: SimDisk) {
  const stats = engine.stats();
  return {
    next: stats.lsn.next,
    keys: stats.keys,
    live: stats.memory.arena_live_bytes,
    wal: stats.wal.bytes_written,
    disk_bytes: disk.stats.bytes_written,
    disk_writes: disk.stats.writes,
  };
}

describe("limits", () => {
  test("over-limit key, value and batch throw TooLargeError and change nothing", async () => {
    const { host, engine, disk } = await openSim();
    await settle(host, engine.set(utf8("a"), utf8("1")));
    const before = footprint(engine, disk);
    const big_key = new Uint8Array(LIMITS.max_key_bytes + 1);
    const big_value = new Uint8Array(LIMITS.max_value_bytes + 1);
    const half = new Uint8Array(LIMITS.max_value_bytes / 2 + 100);
    const attempts = [
      () => engine.set(big_key, utf8("v")),
      () => engine.set(utf8("a"), big_value),
      () => engine.del(big_key),
      () =>
        engine.mset([
          [utf8("a"), utf8("2")],
          [big_key, utf8("x")],
        ]),
      () =>
        engine.mset([
          [utf8("a"), utf8("2")],
          [utf8("b"), big_value],
        ]),
      () =>
        engine.mset([
          [utf8("a"), half],
          [utf8("b"), half],
          [utf8("c"), half],
          [utf8("d"), half],
        ]),
    ];
    for (const attempt of attempts) {
      await expect(attempt()).rejects.toBeInstanceOf(TooLargeError);
      host.step();
      expect(footprint(engine, disk)).toEqual(before);
    }
    expect(() => engine.get(big_key)).toThrow(TooLargeError);
    expect(() => engine.mget([utf8("a"), big_key])).toThrow(TooLargeError);
    expect(text(engine.get(utf8("a")))).toBe("1");
    expect(engine.get(utf8("b"))).toBeUndefined();
    await expect(engine.mset([])).rejects.toBeInstanceOf(InvalidError);
  });

  test("sizes exactly at each limit are accepted", async () => {
    const { host, engine } = await openSim();
    const key = new Uint8Array(LIMITS.max_key_bytes).fill(7);
    const value = new Uint8Array(LIMITS.max_value_bytes).fill(9);
    await settle(host, engine.set(key, value));
    expect(engine.get(key)).toEqual(value);
    // A batch of exactly max_batch_bytes: header 24 + two entries of 12 + 8 + value.
    const v2_length = LIMITS.max_batch_bytes - 24 - 2 * (12 + 8) - LIMITS.max_value_bytes;
    const pairs: Array<[Uint8Array, Uint8Array]> = [
      [utf8("batch--1"), new Uint8Array(LIMITS.max_value_bytes)],
      [utf8("batch--2"), new Uint8Array(v2_length)],
    ];
    const entries = pairs.map(([k, v]) => setEntry(k, v));
    expect(encodedRecordSize(entries)).toBe(LIMITS.max_batch_bytes);
    await settle(host, engine.mset(pairs));
    expect(engine.get(utf8("batch--2"))!.length).toBe(v2_length);
    pairs[1]![1] = new Uint8Array(v2_length + 1);
    await expect(engine.mset(pairs)).rejects.toBeInstanceOf(TooLargeError);
  });

  test("the empty key is an ordinary key (only the length limit is checked)", async () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    const { host, engine } = await openSim({}, disk);
    const empty = new Uint8Array(0);
    expect(engine.get(empty)).toBeUndefined();
    await settle(host, engine.set(empty, utf8("nothing")));
    expect(text(engine.get(empty))).toBe("nothing");
    expect(engine.exists(empty)).toBe(true);
    await host.close();
    disk.powerCut();
    const reopened = await openSim({}, disk);
    expect(text(reopened.engine.get(empty))).toBe("nothing");
    expect(await settle(reopened.host, reopened.engine.del(empty))).toBe(true);
    expect(reopened.engine.exists(empty)).toBe(false);
  });
});

describe("reads", () => {
  /** A sink that keeps a copy of the last value it was handed. */
  const sink = () => {
    let last: string | undefined;
    return {
      value: (bytes: Uint8Array, start: number, length: number) => {
        last = new TextDecoder().decode(bytes.subarray(start, start + length));
      },
      last: () => last,
    };
  };

  test("read takes a key as a range of a larger array, within its bounds and limit", async () => {
    const { host, engine } = await openSim();
    await settle(host, engine.set(utf8("key"), utf8("value")));
    const frame = utf8("GET key\r\n");
    const found = sink();
    expect(engine.read(frame, found, 4, 3)).toBe(true);
    expect(found.last()).toBe("value");
    expect(engine.read(frame, sink(), 4, 2)).toBe(false); // "ke"
    expect(engine.read(utf8("key"), found)).toBe(true); // the whole array by default
    for (const [start, length] of [
      [8, 3],
      [-1, 3],
      [4, -1],
    ] as const) {
      expect(() => engine.read(frame, sink(), start, length)).toThrow(InvalidError);
    }
    expect(() => engine.read(null as unknown as Uint8Array, sink())).toThrow(InvalidError);
    const long = new Uint8Array(LIMITS.max_key_bytes + 10);
    expect(() => engine.read(long, sink(), 5, LIMITS.max_key_bytes + 1)).toThrow(TooLargeError);
    expect(engine.read(long, sink(), 5, LIMITS.max_key_bytes)).toBe(false);
  });

  test("reads after touchKeys find their keys in any order, and with ranges or arrays other than those touched", async () => {
    const { host, engine } = await openSim();
    for (const k of ["k1", "k2", "k3"]) await settle(host, engine.set(utf8(k), utf8(`v${k}`)));
    const chunk = utf8("k1k2k3k9");
    const starts = Int32Array.from([0, 2, 4, 6]);
    const ends = Int32Array.from([2, 4, 6, 8]);
    const readAll = (order: number[], bytes = chunk) =>
      order.map((i) => {
        const found = sink();
        return engine.read(bytes, found, starts[i], 2) ? found.last() : undefined;
      });
    /** A scanner that names the four two-byte keys of `chunk`. */
    const fourKeys: KeyFinder = (_bytes, _start, _end, key_starts, key_ends) => {
      key_starts.set(starts);
      key_ends.set(ends);
      return starts.length;
    };
    const expected = ["vk1", "vk2", "vk3", undefined];
    for (const order of [
      [0, 1, 2, 3],
      [1, 0, 3, 2],
      [3, 2, 1, 0],
      [0, 0, 1, 1],
    ]) {
      engine.touchKeys(chunk, 0, chunk.length, fourKeys);
      expect(readAll(order), JSON.stringify(order)).toEqual(order.map((i) => expected[i]));
    }
    engine.touchKeys(chunk, 0, chunk.length, fourKeys);
    expect(readAll([0, 1], utf8("k3k1k2k3"))).toEqual(["vk3", "vk1"]); // another array, same ranges
    const shifted = sink();
    engine.touchKeys(chunk, 0, chunk.length, fourKeys);
    expect(engine.read(chunk, shifted, 1, 2)).toBe(false); // "1k": a range not touched
    expect(readAll([0, 1, 2])).toEqual(["vk1", "vk2", "vk3"]);
  });
});

describe("writes", () => {
  test("del of an absent key returns false and writes no WAL", async () => {
    const { host, engine, disk } = await openSim();
    await settle(host, engine.set(utf8("present"), utf8("v")));
    const before = footprint(engine, disk);
    expect(await engine.del(utf8("absent"))).toBe(false);
    host.step();
    expect(footprint(engine, disk)).toEqual(before);
    // A deleted key is absent too: a second del writes nothing.
    expect(await settle(host, engine.del(utf8("present")))).toBe(true);
    const after_del = footprint(engine, disk);
    expect(after_del.next).toBe(before.next + 1);
    expect(await engine.del(utf8("present"))).toBe(false);
    expect(footprint(engine, disk)).toEqual(after_del);
  });

  test("write() reports existed for a single DEL and the LSN of each write", async () => {
    const { host, engine } = await openSim();
    const l1 = await settle(host, engine.set(utf8("k"), utf8("v")));
    const del = engine.write([delEntry(utf8("k"))]);
    host.step();
    expect(await del).toEqual({ lsn: l1 + 1, existed: true, removed: 1 });
  });

  test("write() counts the DEL entries that removed a value", async () => {
    const { host, engine } = await openSim();
    await settle(host, engine.set(utf8("a"), utf8("1")));
    await settle(host, engine.set(utf8("b"), utf8("2")));
    const del = (key: string) => delEntry(utf8(key));
    const first = engine.write([del("a"), del("absent"), del("b")]);
    host.step();
    expect((await first).removed).toBe(2);
    const again = engine.write([del("a"), del("b")]);
    host.step();
    expect((await again).removed).toBe(0);
    expect(engine.exists(utf8("a")) || engine.exists(utf8("b"))).toBe(false);
  });

  test("mset is atomically visible: all old before the writer step, all new after", async () => {
    const { host, engine, disk } = await openSim();
    await settle(
      host,
      engine.mset([
        [utf8("a"), utf8("1")],
        [utf8("b"), utf8("1")],
      ]),
    );
    const syncs = disk.stats.syncs;
    const keys = [utf8("a"), utf8("b"), utf8("c")];
    const pending = engine.mset(keys.map((k) => [k, utf8("2")] as [Uint8Array, Uint8Array]));
    expect(engine.mget(keys).map(text)).toEqual(["1", "1", undefined]);
    expect(keys.map((k) => text(engine.get(k)))).toEqual(["1", "1", undefined]);
    expect(engine.exists(utf8("c"))).toBe(false);
    host.step();
    const lsn = await pending;
    expect(engine.mget(keys).map(text)).toEqual(["2", "2", "2"]);
    expect(disk.stats.syncs).toBe(syncs + 1);
    expect(engine.stats().lsn.visible).toBe(lsn);
  });

  test("fsync always: a write is invisible until the fdatasync that covers it", async () => {
    const { host, engine, disk } = await openSim({ fsync: "always" });
    await settle(host, engine.set(utf8("k"), utf8("old")));
    const syncs = disk.stats.syncs;
    let resolved = false;
    const pending = engine.set(utf8("k"), utf8("new")).then((lsn) => {
      resolved = true;
      return lsn;
    });
    await Promise.resolve();
    expect(text(engine.get(utf8("k")))).toBe("old");
    expect(resolved).toBe(false);
    host.step(); // one write + one fdatasync: now it is visible

    await pending;
    expect(resolved).toBe(true);
    expect(disk.stats.syncs).toBe(syncs + 1);
    expect(text(engine.get(utf8("k")))).toBe("new");
  });

  for (const fsync of ["everysec", "no"] as const) {
    test(`fsync ${fsync}: visible after the write step, without an fdatasync`, async () => {
      const { host, engine, disk } = await openSim({ fsync });
      await settle(host, engine.set(utf8("k"), utf8("old"))); // creates the segment (synced once)
      const syncs = disk.stats.syncs;
      const writes = disk.stats.writes;
      const pending = engine.set(utf8("k"), utf8("new"));
      expect(text(engine.get(utf8("k")))).toBe("old");
      host.step();
      const lsn = await pending;
      expect(text(engine.get(utf8("k")))).toBe("new");
      expect(disk.stats.writes).toBe(writes + 1);
      expect(disk.stats.syncs).toBe(syncs);
      const { lsn: lsns } = engine.stats();
      expect(lsns.visible).toBe(lsn);
      expect(lsns.written).toBe(lsn);
      expect(lsns.durable).toBeLessThan(lsn);
    });
  }

  test("out of memory: UnavailableError and nothing changed", async () => {
    const { host, engine, disk } = await openSim({
      memory_limit_bytes: 16 << 20,
      max_value_bytes: 1 << 20,
      max_batch_bytes: 2 << 20,
      wal_segment_bytes: 4 << 20,
    });
    const value = new Uint8Array(1 << 20);
    let stored = 0;
    let failure: unknown;
    for (; stored < 32; stored++) {
      const before = footprint(engine, disk);
      try {
        await settle(host, engine.set(utf8(`big${stored}`), value));
      } catch (error) {
        failure = error;
        expect(footprint(engine, disk)).toEqual(before);
        break;
      }
    }
    expect(failure).toBeInstanceOf(UnavailableError);
    expect(stored).toBeGreaterThan(8);
    expect(engine.get(utf8(`big${stored}`))).toBeUndefined();
    expect(engine.get(utf8("big0"))!.length).toBe(1 << 20);
    expect(engine.stats().keys).toBe(stored);
    // Small writes still fit in the classes already carved, and deleting frees room for a big one.
    await settle(host, engine.del(utf8("big0")));
    await settle(host, engine.set(utf8(`big${stored}`), value));
    expect(engine.get(utf8(`big${stored}`))!.length).toBe(1 << 20);
  });

  test("stats() fields are consistent", async () => {
    const { host, engine, disk } = await openSim({ wal_zero_ahead_bytes: 0 }); // the disk's bytes: records only
    const empty = engine.stats();
    expect(empty.keys).toBe(0);
    expect(empty.lsn).toEqual({ visible: 0, durable: 0, written: 0, next: 1 });
    expect(empty.wal).toEqual({
      bytes_written: 0,
      fsyncs: 0,
      last_group_records: 0,
      state: "running",
      error: "",
    });
    expect(empty.memory.wal_buffer_bytes).toBe(engine.config.wal_buffer_bytes);
    expect(empty.memory.index_bytes).toBe(16 * 16 * 8); // 16 shards of 16 slots of 8 bytes
    expect(empty.memory.arena_live_bytes).toBe(empty.memory.index_bytes);
    expect(empty.memory.arena_reserved_bytes).toBeGreaterThanOrEqual(empty.memory.arena_live_bytes);
    expect(empty.checkpoint.count).toBe(0);
    const writes = Array.from({ length: 5 }, (_, i) => engine.set(utf8(`k${i}`), utf8("value")));
    host.step();
    await Promise.all(writes);
    const full = engine.stats();
    expect(full.keys).toBe(5);
    expect(full.lsn).toEqual({ visible: 5, durable: 5, written: 5, next: 6 });
    expect(full.wal.fsyncs).toBe(1);
    expect(full.wal.last_group_records).toBe(5);
    const record_bytes = encodedRecordSize([setEntry(utf8("k0"), utf8("value"))]);
    expect(full.wal.bytes_written).toBe(5 * record_bytes);
    expect(disk.stats.bytes_written).toBe(32 + 5 * record_bytes); // segment header + records
    expect(full.memory.arena_live_bytes).toBeGreaterThan(empty.memory.arena_live_bytes);
    await host.checkpoint();
    expect(engine.stats().checkpoint).toMatchObject({ count: 1, redo_lsn: 5, entries: 5 });
  });
});

describe("threaded host", () => {
  let dir = "";
  afterEach(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
    dir = "";
  });

  test("writes are visible and durable across a close and reopen", async () => {
    dir = mkdtempSync(join(tmpdir(), "walkv-engine-"));
    const config = engineConfig({ data_dir: dir, fsync: "always", ...LIMITS });
    const log: string[] = [];
    const host = await openEngine(config, { log: (l) => log.push(l) });
    const { engine } = host;
    const lsns = await Promise.all(
      Array.from({ length: 50 }, (_, i) => engine.set(utf8(`k${i}`), utf8(`v${i}`))),
    );
    expect(new Set(lsns).size).toBe(50);
    expect(Math.max(...lsns)).toBe(50);
    await engine.mset([
      [utf8("k0"), utf8("m")],
      [utf8("k1"), utf8("m")],
    ]);
    expect(await engine.del(utf8("k2"))).toBe(true);
    expect(await engine.del(utf8("k2"))).toBe(false);
    expect(engine.mget([utf8("k0"), utf8("k1"), utf8("k2"), utf8("k3")]).map(text)).toEqual([
      "m",
      "m",
      undefined,
      "v3",
    ]);
    const stats = engine.stats();
    expect(stats.lsn).toEqual({ visible: 52, durable: 52, written: 52, next: 53 });
    expect(stats.wal.state).toBe("running");
    const status = await host.checkpoint();
    expect(status.redo_lsn).toBe(52);
    expect(status.entries).toBe(49);
    await engine.set(utf8("after"), utf8("checkpoint"));
    await host.close();

    const again = await openEngine(config, { log: (l) => log.push(l) });
    try {
      expect(again.recovery.next_lsn).toBe(54);
      expect(text(again.engine.get(utf8("after")))).toBe("checkpoint");
      expect(text(again.engine.get(utf8("k0")))).toBe("m");
      expect(again.engine.get(utf8("k2"))).toBeUndefined();
      expect(text(again.engine.get(utf8("k49")))).toBe("v49");
      expect(again.engine.stats().keys).toBe(50);
    } finally {
      await again.close();
    }
  });

  test("a recovery of more than 8 MiB links on a replay worker and loses nothing", async () => {
    dir = mkdtempSync(join(tmpdir(), "walkv-engine-"));
    const config = engineConfig({ data_dir: dir, fsync: "no", checkpoint_interval_ms: 0 });
    const value = (i: number) => utf8(`${i}:${"v".repeat(200)}`);
    const host = await openEngine(config, { log: () => {} });
    const keys = 50_000; // ~11 MiB of WAL
    for (let batch = 0; batch < keys; batch += 1000) {
      const pairs = Array.from(
        { length: 1000 },
        (_, j) => [utf8(`k${batch + j}`), value(batch + j)] as const,
      );
      await host.engine.mset(pairs);
    }
    await host.engine.del(utf8("k7"));
    await host.close(); // with a final checkpoint: data.db holds everything
    for (const name of readdirSync(join(dir, "wal"))) rmSync(join(dir, "wal", name));
    const log: string[] = [];
    const again = await openEngine(config, { log: (l) => log.push(l) });
    try {
      expect(log.some((l) => l.includes("linking on a replay worker"))).toBe(true);
      expect(again.engine.stats().keys).toBe(keys - 1);
      expect(again.engine.get(utf8("k7"))).toBeUndefined();
      for (const i of [0, 1, 999, 25_000, keys - 1])
        expect(text(again.engine.get(utf8(`k${i}`)))).toBe(text(value(i)));
    } finally {
      await again.close();
    }
  });

  test("write_wait_spin_us reaches the engine: with it, durable writes are awaited without waitAsync", async () => {
    const real = Atomics.waitAsync;
    const sleeps: number[] = [];
    for (const write_wait_spin_us of [0, 10_000]) {
      dir = mkdtempSync(join(tmpdir(), "walkv-engine-"));
      const config = engineConfig({ data_dir: dir, fsync: "always", write_wait_spin_us, ...LIMITS });
      const host = await openEngine(config, { log: () => {} });
      let calls = 0;
      Atomics.waitAsync = ((...args: Parameters<typeof Atomics.waitAsync>) => {
        calls++;
        return real(...args);
      }) as typeof Atomics.waitAsync;
      try {
        // One at a time: each waits for its own fdatasync (a fraction of a millisecond here).
        for (let i = 0; i < 20; i++) await host.engine.set(utf8(`k${i}`), utf8("v"));
      } finally {
        Atomics.waitAsync = real;
        await host.close();
        rmSync(dir, { recursive: true, force: true });
        dir = "";
      }
      sleeps.push(calls);
    }
    expect(sleeps[0]).toBeGreaterThanOrEqual(20); // no spin: each write slept
    expect(sleeps[1]).toBeLessThan(10); // 10 ms of polling covers an fdatasync, but on a stalled disk
  });

  test("limits are enforced on the threaded host too", async () => {
    dir = mkdtempSync(join(tmpdir(), "walkv-engine-"));
    const host = await openEngine(engineConfig({ data_dir: dir, fsync: "everysec", ...LIMITS }), {
      log: () => {},
    });
    try {
      await expect(
        host.engine.set(new Uint8Array(LIMITS.max_key_bytes + 1), utf8("v")),
      ).rejects.toBeInstanceOf(TooLargeError);
      expect(host.engine.stats().lsn.next).toBe(1);
      expect(await host.engine.set(utf8("k"), utf8("v"))).toBe(1);
      expect(text(host.engine.get(utf8("k")))).toBe("v");
    } finally {
      await host.close();
    }
  });
});

describe("writes in flight (what a draining I/O worker waits for)", () => {
  test("a write counts from its start until it settled and finalized its keys; a refused one too", async () => {
    const { host, engine } = await openSim();
    expect(engine.writesInFlight()).toBe(0);
    const first = engine.set(utf8("a"), utf8("1"));
    const second = engine.set(utf8("a"), utf8("2")); // an overwrite: its key is finalized once visible
    expect(engine.writesInFlight()).toBe(2); // linked, not yet settled
    await settle(host, Promise.all([first, second]));
    expect(engine.writesInFlight()).toBe(0);
    const refused = engine.set(new Uint8Array(LIMITS.max_key_bytes + 1), utf8("v"));
    expect(engine.writesInFlight()).toBe(1);
    await expect(refused).rejects.toBeInstanceOf(TooLargeError);
    expect(engine.writesInFlight()).toBe(0);
    expect(text(engine.get(utf8("a")))).toBe("2");
  });

  test("noWritesInFlight resolves at once when idle, else when the last write settled", async () => {
    const { host, engine } = await openSim();
    let idle = false;
    await engine.noWritesInFlight().then(() => (idle = true));
    expect(idle).toBe(true);
    const write = engine.set(utf8("b"), utf8("1"));
    idle = false;
    const waited = engine.noWritesInFlight().then(() => {
      idle = true;
      return engine.writesInFlight();
    });
    await Promise.resolve();
    expect(idle).toBe(false); // the write is linked, not settled
    await settle(host, write);
    expect(await waited).toBe(0);
    expect(idle).toBe(true);
  });
});
