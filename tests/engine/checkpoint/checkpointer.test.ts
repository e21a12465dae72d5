import { describe, expect, test } from "bun:test";
import { Checkpointer } from "../../../src/engine/checkpoint/checkpointer.ts";
import { readSnapshot, verifySnapshot } from "../../../src/engine/checkpoint/snapshot_reader.ts";
import { IoError } from "../../../src/engine/errors.ts";
import { hashKey } from "../../../src/engine/hash.ts";
import type { InlineHost } from "../../../src/engine/host.ts";
import { prng, randomInt } from "../../../src/engine/io/prng.ts";
import type { SimDisk } from "../../../src/engine/io/sim_disk.ts";
import { parseSegmentName } from "../../../src/engine/wal/format.ts";
import { openSim, readWholeFile, SEED, settle, text, utf8 } from "../sim_host.ts";

const DATA_DB = "/data/data.db";
const TMP = "/data/data.db.tmp";

/** Every entry of data.db: key → value. */
function snapshotEntries(disk: SimDisk): Map<string, string> {
  const entries = new Map<string, string>();
  const decoder = new TextDecoder();
  readSnapshot(disk, DATA_DB, (bytes, ko, kl, vo, vl) => {
    entries.set(decoder.decode(bytes.subarray(ko, ko + kl)), decoder.decode(bytes.subarray(vo, vo + vl)));
  });
  return entries;
}

/** Writes `count` random sets/dels over `keys` keys, applying them to `model`. */
async function randomWrites(host: InlineHost, model: Map<string, string>, rng: () => number, count: number) {
  for (let i = 0; i < count; i++) {
    const key = `k${randomInt(rng, 120)}`;
    if (rng() < 0.8) {
      const value = `${key}#${i}:${"v".repeat(randomInt(rng, 900))}`;
      model.set(key, value);
      await settle(host, host.engine.set(utf8(key), utf8(value)));
    } else {
      model.delete(key);
      await settle(host, host.engine.del(utf8(key)));
    }
  }
}

describe("checkpoint", () => {
  test("writes a verified data.db at the visible LSN, deletes covered segments, keeps the newest", async () => {
    const rng = prng(SEED);
    const { host, engine, disk } = await openSim();
    const model = new Map<string, string>();
    await randomWrites(host, model, rng, 600);
    const before = disk.list("/data/wal").map((n) => parseSegmentName(n)!);
    expect(before.length).toBeGreaterThanOrEqual(3);
    const visible = engine.stats().lsn.visible;
    const status = await host.checkpoint();
    expect(status.redo_lsn).toBe(visible);
    const info = verifySnapshot(disk, DATA_DB);
    expect(info.redo_lsn).toBe(visible);
    expect(info.entry_count).toBe(model.size);
    expect(status.entries).toBe(model.size);
    expect(snapshotEntries(disk)).toEqual(model);
    expect(disk.exists(TMP)).toBe(false);
    const after = disk.list("/data/wal").map((n) => parseSegmentName(n)!);
    expect(after).toEqual([Math.max(...before)]);
    // The checkpoint's files survive a power cut (data.db synced, renamed, directory synced).
    disk.powerCut();
    expect(verifySnapshot(disk, DATA_DB).redo_lsn).toBe(visible);
  });

  test("a checkpoint does not include writes that are not yet visible", async () => {
    const { host, engine, disk } = await openSim();
    await settle(host, engine.set(utf8("k"), utf8("v1")));
    await settle(host, engine.set(utf8("gone"), utf8("x")));
    const visible = engine.stats().lsn.visible;
    const pending = [
      engine.set(utf8("k"), utf8("v2")),
      engine.set(utf8("new"), utf8("n")),
      engine.del(utf8("gone")),
    ];
    const result = host.checkpointer.run(); // its make_durable steps the writer after the scan
    expect(result.redo_lsn).toBe(visible);
    expect(snapshotEntries(disk)).toEqual(
      new Map([
        ["k", "v1"],
        ["gone", "x"],
      ]),
    );
    while (host.step()) {}
    await Promise.all(pending);
    // Recovery = data.db + the WAL records after its redo LSN.
    await host.close();
    disk.powerCut();
    const reopened = await openSim({}, disk);
    expect(reopened.host.recovery.redo_lsn).toBe(visible);
    expect(reopened.host.recovery.wal_records).toBe(3);
    expect(text(reopened.engine.get(utf8("k")))).toBe("v2");
    expect(text(reopened.engine.get(utf8("new")))).toBe("n");
    expect(reopened.engine.get(utf8("gone"))).toBeUndefined();
  });

  test("recovery from data.db plus the WAL after it reproduces the state", async () => {
    const rng = prng(SEED ^ 0xc4);
    const { host, disk } = await openSim();
    const model = new Map<string, string>();
    await randomWrites(host, model, rng, 200);
    const first = await host.checkpoint();
    await randomWrites(host, model, rng, 150);
    const second = await host.checkpoint();
    expect(second.redo_lsn).toBeGreaterThan(first.redo_lsn);
    await randomWrites(host, model, rng, 150);
    await host.close();
    disk.powerCut();
    const reopened = await openSim({}, disk);
    expect(reopened.host.recovery.redo_lsn).toBe(second.redo_lsn);
    expect(reopened.engine.stats().keys).toBe(model.size);
    for (let i = 0; i < 120; i++) {
      const key = `k${i}`;
      if (text(reopened.engine.get(utf8(key))) !== model.get(key))
        throw new Error(`seed ${SEED}: ${key} differs`);
    }
  });

  const failures = [
    ["write", TMP],
    ["sync", TMP],
    ["rename", TMP],
    ["open", TMP],
  ] as const;
  for (const [op, path] of failures) {
    test(`a failed ${op} of data.db.tmp leaves data.db unchanged and no data.db.tmp`, async () => {
      const { host, engine, disk } = await openSim();
      await settle(host, engine.set(utf8("k"), utf8("v1")));
      await host.checkpoint();
      const good = readWholeFile(disk, DATA_DB);
      await settle(host, engine.set(utf8("k"), utf8("v2")));
      disk.injectFault((call) => (call.op === op && call.path === path ? "EIO" : undefined));
      expect(() => host.checkpointer.run()).toThrow(IoError);
      disk.clearFaults();
      expect(readWholeFile(disk, DATA_DB)).toEqual(good);
      expect(disk.exists(TMP)).toBe(false);
      expect(snapshotEntries(disk).get("k")).toBe("v1");
      // The next checkpoint succeeds.
      await host.checkpoint();
      expect(snapshotEntries(disk).get("k")).toBe("v2");
      expect(disk.exists(TMP)).toBe(false);
    });
  }

  test("a checkpoint that failed in the middle of a shard's entries leaves none of them to the next one", async () => {
    const { host, engine, disk } = await openSim();
    for (let i = 0; i < 400; i++) await settle(host, engine.set(utf8(`k${i}`), utf8("v".repeat(4000))));
    let writes = 0; // the header, then the first 1 MiB block: written while a shard's entries drain
    disk.injectFault((call) =>
      call.op === "write" && call.path === TMP && ++writes === 2 ? "ENOSPC" : undefined,
    );
    expect(() => host.checkpointer.run()).toThrow(IoError);
    disk.clearFaults();
    for (let i = 0; i < 400; i++) await settle(host, engine.del(utf8(`k${i}`)));
    await host.checkpoint();
    expect(snapshotEntries(disk).size).toBe(0);
  });

  /** k = v1 checkpointed (`good`: that data.db), then k = v2 in the WAL only. */
  async function checkpointedThenChanged() {
    const { host, engine, disk } = await openSim();
    await settle(host, engine.set(utf8("k"), utf8("v1")));
    await host.checkpoint();
    const good = readWholeFile(disk, DATA_DB);
    await settle(host, engine.set(utf8("k"), utf8("v2")));
    return { host, engine, disk, good };
  }

  test("a scan waiting for a mutex that is never released gives up when told, leaving data.db as it was", async () => {
    // At a shutdown whose drain timed out, a writer may have been cut off holding a shard mutex.
    const { host, engine, disk, good } = await checkpointedThenChanged();
    const table = engine.table;
    const shard = 0;
    let asked = 0;
    // Asked after each of the other shards (taken first: shard 0 is busy), then while it waits for 0.
    const checkpointer = new Checkpointer(disk, host.shared.config, table, engine.wal, {
      make_durable: () => {
        throw new Error("not reached: the scan gives up first");
      },
      abandoned: () => ++asked > table.shard_count - 1,
    });
    table.lockShard(shard); // the cut-off writer's
    try {
      expect(() => checkpointer.run()).toThrow(
        /scan of shard 0 given up, as asked, while its mutex was held/,
      );
    } finally {
      table.unlockShard(shard);
    }
    expect(asked).toBe(table.shard_count);
    expect(readWholeFile(disk, DATA_DB)).toEqual(good);
    expect(disk.exists(TMP)).toBe(false);
    // Not told to give up, the same scan goes through once the mutex is free.
    await host.checkpoint();
    expect(snapshotEntries(disk).get("k")).toBe("v2");
  });

  test("the scan takes the shards a writer holds after the others, and waits for none that comes free meanwhile", async () => {
    const { host, engine, disk } = await openSim();
    for (let i = 0; i < 40; i++) await settle(host, engine.set(utf8(`k${i}`), utf8(`v${i}`)));
    const table = engine.table;
    const held = table.shardOf(hashKey(utf8("k7")));
    const scanned: number[] = [];
    let tries_on_held = 0;
    let writer_done = false;
    const writerDone = () => {
      if (!writer_done) table.unlockShard(held);
      writer_done = true;
    };
    const ifFree = table.scanShardIfFree.bind(table);
    table.scanShardIfFree = (shard, visibleLsn, visit) => {
      if (shard === held && ++tries_on_held === 3) writerDone();
      const lsn = ifFree(shard, visibleLsn, visit);
      if (lsn !== undefined) scanned.push(shard);
      return lsn;
    };
    const waiting = table.scanShard.bind(table);
    let waits = 0;
    table.scanShard = (...args) => {
      waits++;
      writerDone(); // else this thread would wait for itself
      return waiting(...args);
    };
    table.lockShard(held); // a writer applying its batch
    await host.checkpoint();
    expect(tries_on_held).toBe(3);
    expect(waits).toBe(0);
    expect(scanned.at(-1)).toBe(held);
    expect(new Set(scanned).size).toBe(table.shard_count);
    const entries = snapshotEntries(disk);
    expect(entries.size).toBe(40);
    expect(entries.get("k7")).toBe("v7");
  });

  test("a running checkpoint gives up between shards once abandoned, leaving data.db as it was", async () => {
    // A shutdown that skips the final checkpoint does not wait for a long running one to end.
    const { host, engine, disk, good } = await checkpointedThenChanged();
    let asked = 0;
    const checkpointer = new Checkpointer(disk, host.shared.config, engine.table, engine.wal, {
      make_durable: () => {
        throw new Error("not reached: the checkpoint gives up first");
      },
      abandoned: () => ++asked > 3,
    });
    expect(() => checkpointer.run()).toThrow(/checkpoint abandoned: the shutdown skips the final checkpoint/);
    expect(asked).toBe(4); // after the fourth shard of 4096
    expect(readWholeFile(disk, DATA_DB)).toEqual(good);
    expect(disk.exists(TMP)).toBe(false);
  });
});
