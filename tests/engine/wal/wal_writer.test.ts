import { describe, expect, test } from "bun:test";
import { UnavailableError } from "../../../src/engine/errors.ts";
import { prng } from "../../../src/engine/io/prng.ts";
import { SimDisk, type SimDiskCall } from "../../../src/engine/io/sim_disk.ts";
import { parseSegmentName, segmentName } from "../../../src/engine/wal/format.ts";
import { readSegment } from "../../../src/engine/wal/segment_reader.ts";
import { createWalBufferShared, WalBuffer } from "../../../src/engine/wal/wal_buffer.ts";
import { fileSize, openSim, SEED, settle, text, utf8 } from "../sim_host.ts";

const WAL_DIR = "/data/wal";
const SEGMENT_BYTES = 64 << 10;

function segments(disk: SimDisk): number[] {
  return disk
    .list(WAL_DIR)
    .map((name) => parseSegmentName(name)!)
    .sort((a, b) => a - b);
}

/** A fault hook that fails the next `count` calls of `op` on `path_prefix` with `errno`. */
function failNext(op: string, path_prefix: string, errno: string, count = 1) {
  let left = count;
  return (call: SimDiskCall) => {
    if (left > 0 && call.op === op && call.path.startsWith(path_prefix)) {
      left--;
      return errno;
    }
    return undefined;
  };
}

describe("group commit", () => {
  test("N writes issued before one step share one fdatasync", async () => {
    const { host, engine, disk } = await openSim({ fsync: "always" });
    await settle(host, engine.set(utf8("first"), utf8("creates the segment")));
    const syncs = disk.stats.syncs;
    const writes = disk.stats.writes;
    const n = 25;
    const pending = Array.from({ length: n }, (_, i) => engine.set(utf8(`k${i}`), utf8(`v${i}`)));
    expect(host.step()).toBe(true);
    const lsns = await Promise.all(pending);
    expect(lsns).toEqual(Array.from({ length: n }, (_, i) => i + 2));
    expect(disk.stats.syncs).toBe(syncs + 1);
    expect(disk.stats.writes).toBe(writes + 1); // contiguous in the ring: one write(2)
    expect(engine.stats().wal.last_group_records).toBe(n);
    expect(engine.stats().wal.fsyncs).toBe(2);
  });
});

describe("group commit linger (fsync always, threaded waitAndStep)", () => {
  /** A host whose fdatasync takes `sync_ms` and, the first time, lets another writer append meanwhile. */
  async function lingerCase(append_during_sync: boolean) {
    const { host, engine, disk } = await openSim({ fsync: "always" });
    await settle(host, engine.set(utf8("first"), utf8("creates the segment")));
    const sleeps: number[] = [];
    const buffer = engine.wal; // the buffer the writer sleeps on
    const sleep = buffer.sleepOnDoorbell.bind(buffer);
    buffer.sleepOnDoorbell = (seen: number, timeout_ms: number) => {
      sleeps.push(timeout_ms);
      sleep(seen, timeout_ms);
    };
    let second: Promise<number> | undefined;
    disk.injectFault((call) => {
      if (call.op !== "sync") return undefined;
      const until = performance.now() + 4;
      while (performance.now() < until) {} // a slow fdatasync
      if (append_during_sync && second === undefined)
        second = engine.set(utf8("second"), utf8("came during the sync"));
      return undefined;
    });
    const first = engine.set(utf8("k"), utf8("v"));
    host.writer.waitAndStep(); // the group of `first`: write, fdatasync (4 ms), publish
    second ??= engine.set(utf8("second"), utf8("came after the group"));
    const syncs = disk.stats.syncs;
    host.writer.waitAndStep(); // lingers only if a record was waiting behind the group
    host.engine.poll();
    return { first, second, sleeps, syncs_after: disk.stats.syncs - syncs };
  }

  test("records waiting behind a group: the writer lingers, at most half the fdatasync, then writes them", async () => {
    const r = await lingerCase(true);
    expect(r.sleeps.length).toBeGreaterThan(0);
    for (const timeout_ms of r.sleeps) expect(timeout_ms).toBeLessThanOrEqual(2 + 0.01);
    expect(r.syncs_after).toBe(1); // then the waiting record had its own group
    expect(await r.first).toBeGreaterThan(0);
    expect(await r.second).toBeGreaterThan(await r.first);
  });

  test("nothing waiting behind a group (a lone writer): no linger, the next record is written at once", async () => {
    const r = await lingerCase(false);
    expect(r.sleeps).toEqual([]);
    expect(r.syncs_after).toBe(1);
    expect(await r.second).toBeGreaterThan(await r.first);
  });
});

describe("ring space", () => {
  test("an empty ring takes any record up to its size, wherever its cursor stands", () => {
    // Minimal reproduction of a livelock: a record longer than the cursor's offset into the ring,
    // that also does not fit before the ring's end, waited for space forever on an EMPTY ring.
    const ring_bytes = 4096;
    let waits = 0;
    const buffer = new WalBuffer(createWalBufferShared({ ring_bytes }), () => {
      waits++;
      if (waits > 3) throw new Error("reserve() keeps waiting for space on an empty ring");
    });
    const first = buffer.reserve(1000);
    buffer.complete(first);
    // What the WAL writer publishes after writing record 1: the ring is now empty.
    buffer.publish({
      written: 1,
      durable: 1,
      visible: 1,
      flushed_pos: 1000,
      flushed_lsn: 1,
      wal_bytes_added: 1000,
      fsyncs_added: 1,
      group_records: 1,
      segment_first_lsn: 1,
    });
    expect(buffer.reserve(3100)).toBe(2);
    expect(buffer.reservedOffset(2) + 3100).toBeLessThanOrEqual(ring_bytes);
    expect(waits).toBe(0);
  });

  test("records larger than half the ring go through the engine one after another", async () => {
    const { host, engine } = await openSim({
      max_value_bytes: 40 << 10,
      max_batch_bytes: 64 << 10,
      wal_buffer_bytes: 64 << 10,
      wal_segment_bytes: 256 << 10,
    });
    let steps = 0;
    const step = host.step.bind(host);
    host.step = () => {
      if (++steps > 1000) throw new Error(`seed ${SEED}: the WAL writer makes no progress`);
      return step();
    };
    for (let i = 0; i < 12; i++) {
      const value = new Uint8Array(33_000 + i * 97).fill(i);
      await settle(host, engine.set(utf8(`big${i}`), value));
      expect(engine.get(utf8(`big${i}`))).toEqual(value);
    }
  });
});

describe("segment rotation", () => {
  for (const fsync of ["always", "no"] as const) {
    test(`fsync ${fsync}: segments named by first LSN, within the limit, sealed before the next`, async () => {
      const disk = new SimDisk({ rng: prng(SEED) });
      const calls: SimDiskCall[] = [];
      disk.injectFault((call) => {
        calls.push(call);
        return undefined;
      });
      const { host, engine } = await openSim({ fsync }, disk);
      const values = new Map<string, string>();
      for (let round = 0; round < 30; round++) {
        const batch = Array.from({ length: 7 }, (_, i) => {
          const key = `r${round}-${i}`;
          const value = `${key}:${"x".repeat(1000 + ((round * 7 + i) % 13) * 111)}`;
          values.set(key, value);
          return engine.set(utf8(key), utf8(value));
        });
        await settle(host, Promise.all(batch));
      }
      await host.close();
      const firsts = segments(disk);
      expect(firsts.length).toBeGreaterThanOrEqual(4);
      let next_lsn = 1;
      const first_lengths: number[] = [];
      const sizes: number[] = [];
      for (const first of firsts) {
        const path = `${WAL_DIR}/${segmentName(first)}`;
        expect(fileSize(disk, path)).toBeLessThanOrEqual(SEGMENT_BYTES);
        // Every segment but the newest must end exactly on a record boundary: no record spans two.
        const lengths: number[] = [];
        const result = readSegment(
          disk,
          path,
          { newest: false, expected_first_lsn: next_lsn, max_record_bytes: 8192 },
          (_lsn, _bytes, _offset, length_bytes) => lengths.push(length_bytes),
        );
        first_lengths.push(lengths[0] ?? 0);
        expect(result.first_lsn).toBe(first);
        expect(result.torn_tail_offset_bytes).toBeUndefined();
        expect(result.records).toBeGreaterThan(0);
        sizes.push(result.size_bytes);
        next_lsn = first + result.records;
      }
      expect(next_lsn).toBe(30 * 7 + 1);
      // Rotation happens only when the next record would not fit.
      for (let i = 1; i < firsts.length; i++)
        expect(sizes[i - 1]! + first_lengths[i]!).toBeGreaterThan(SEGMENT_BYTES);
      // Order of operations around each rotation.
      const index = (pred: (c: SimDiskCall, i: number) => boolean, from = 0) =>
        calls.findIndex((c, i) => i >= from && pred(c, i));
      for (let i = 1; i < firsts.length; i++) {
        const old_path = `${WAL_DIR}/${segmentName(firsts[i - 1]!)}`;
        const new_path = `${WAL_DIR}/${segmentName(firsts[i]!)}`;
        const created = index((c) => c.op === "open" && c.path === new_path);
        expect(created).toBeGreaterThan(0);
        const last_old_write = calls.findLastIndex(
          (c, j) => j < created && c.op === "write" && c.path === old_path,
        );
        const old_sync = index((c) => c.op === "sync" && c.path === old_path, last_old_write);
        expect(old_sync).toBeGreaterThan(last_old_write);
        expect(old_sync).toBeLessThan(created);
        const header_sync = index((c) => c.op === "sync" && c.path === new_path, created);
        const dir_sync = index((c) => c.op === "syncDir" && c.path === WAL_DIR, created);
        const first_record = index((c) => c.op === "write" && c.path === new_path, header_sync);
        expect(header_sync).toBeGreaterThan(created);
        expect(dir_sync).toBeGreaterThan(header_sync);
        expect(first_record === -1 || first_record > dir_sync).toBe(true);
      }
      // Everything was synced and every directory entry too: a power cut loses nothing.
      disk.clearFaults();
      disk.powerCut();
      const reopened = await openSim({ fsync }, disk);
      expect(reopened.host.recovery.next_lsn).toBe(30 * 7 + 1);
      for (const [key, value] of values) expect(text(reopened.engine.get(utf8(key)))).toBe(value);
    });
  }
});

/** Where the records of the segment at `path` end (zeros written ahead of them excluded). */
function recordsEnd(disk: SimDisk, path: string): number {
  return readSegment(disk, path, { newest: true, max_record_bytes: 1 << 20 }, () => {}).end_offset_bytes;
}

describe("zeros written ahead of the records (fsync always)", () => {
  const ahead = 8192;

  test("the segment is kept written with zeros past its records; a batch within them does not grow it; a power cut drops nothing", async () => {
    const { host, engine, disk, log } = await openSim({
      wal_segment_bytes: 256 << 10,
      wal_zero_ahead_bytes: ahead,
    });
    const path = `${WAL_DIR}/${segmentName(1)}`;
    await settle(host, engine.set(utf8("k0"), utf8("v0")));
    const first_size = fileSize(disk, path);
    expect(first_size).toBe(recordsEnd(disk, path) + ahead);
    await settle(host, engine.set(utf8("k1"), utf8("v1")));
    expect(fileSize(disk, path)).toBe(first_size); // written over the zeros
    let i = 2;
    while (recordsEnd(disk, path) <= first_size) {
      await settle(host, engine.set(utf8(`k${i}`), utf8(`v${i}`.padEnd(1000, "."))));
      i++;
    }
    expect(fileSize(disk, path)).toBe(recordsEnd(disk, path) + ahead); // extended past the batch that reached past them
    const records_end = recordsEnd(disk, path);
    disk.powerCut();
    const reopened = await openSim({ wal_segment_bytes: 256 << 10, wal_zero_ahead_bytes: ahead }, disk);
    expect(reopened.host.recovery.next_lsn).toBe(i + 1); // k0 … k(i-1) took LSNs 1 … i
    expect(reopened.host.recovery.torn_bytes).toBe(0);
    expect(reopened.host.recovery.wal_bytes).toBe(records_end); // the zeros are not log
    for (let j = 0; j < i; j++) expect(reopened.engine.get(utf8(`k${j}`)), `k${j}`).toBeDefined();
    expect(log.concat().join("\n")).not.toMatch(/torn/);
  });

  test("rotation cuts the zeros, then syncs, before it creates the next segment", async () => {
    const disk = new SimDisk({ rng: prng(SEED) });
    const calls: SimDiskCall[] = [];
    disk.injectFault((call) => {
      calls.push(call);
      return undefined;
    });
    const { host, engine } = await openSim({ wal_zero_ahead_bytes: ahead }, disk);
    for (let i = 0; i < 200; i++) await settle(host, engine.set(utf8(`k${i}`), utf8("x".repeat(1000))));
    const firsts = segments(disk);
    expect(firsts.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < firsts.length; i++) {
      const old_path = `${WAL_DIR}/${segmentName(firsts[i - 1]!)}`;
      const created = calls.findIndex(
        (c) => c.op === "open" && c.path === `${WAL_DIR}/${segmentName(firsts[i]!)}`,
      );
      const cut = calls.findLastIndex((c, j) => j < created && c.op === "truncate" && c.path === old_path);
      const sync = calls.findLastIndex((c, j) => j < created && c.op === "sync" && c.path === old_path);
      expect(cut).toBeGreaterThan(0);
      expect(sync).toBeGreaterThan(cut);
      expect(fileSize(disk, old_path)).toBe(recordsEnd(disk, old_path));
    }
    const newest = `${WAL_DIR}/${segmentName(firsts.at(-1)!)}`;
    expect(fileSize(disk, newest)).toBeGreaterThan(recordsEnd(disk, newest));
    await host.close();
    if (segments(disk).length > 0) expect(fileSize(disk, newest)).toBe(recordsEnd(disk, newest)); // close cuts them too
  });

  test.each(["everysec", "no"] as const)("fsync %s writes no zeros", async (fsync) => {
    const { host, engine, disk } = await openSim({ fsync, wal_zero_ahead_bytes: ahead });
    await settle(host, engine.set(utf8("k"), utf8("v")));
    const path = `${WAL_DIR}/${segmentName(1)}`;
    expect(fileSize(disk, path)).toBe(recordsEnd(disk, path));
  });
});

describe("write failures", () => {
  // 0: the segment grows by appends; 64: zeros are written 64 bytes ahead of the records, so the
  // failing batch reaches past them and its write of zeros is the one that fails.
  for (const [errno, wal_zero_ahead_bytes] of [
    ["EIO", 0],
    ["ENOSPC", 0],
    ["EIO", 64],
    ["ENOSPC", 64],
  ] as const) {
    test(`a failed write (${errno}, zeros ahead ${wal_zero_ahead_bytes} B) rejects its writes, reverts the table, cuts the segment, then heals`, async () => {
      const { host, engine, disk, log } = await openSim({ wal_zero_ahead_bytes });
      expect(await settle(host, engine.set(utf8("k"), utf8("v1")))).toBe(1);
      const path = `${WAL_DIR}/${segmentName(1)}`;
      const good_size = recordsEnd(disk, path);
      expect(fileSize(disk, path)).toBe(good_size + wal_zero_ahead_bytes);
      const before = engine.stats();
      const failing = [
        engine.set(utf8("k"), utf8("v2")),
        engine.set(utf8("new"), utf8("n")),
        engine.mset([
          [utf8("k"), utf8("v3")],
          [utf8("other"), utf8("o")],
        ]),
        engine.del(utf8("k")),
      ];
      const outcomes = Promise.allSettled(failing);
      if (errno === "EIO") disk.injectFault(failNext("write", path, "EIO"));
      else disk.setCapacity(fileSize(disk, path) + 40); // a prefix of the batch (or its zeros) fits, then ENOSPC
      host.step();
      for (const outcome of await outcomes) {
        expect(outcome.status).toBe("rejected");
        expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(UnavailableError);
      }
      expect(text(engine.get(utf8("k")))).toBe("v1");
      expect(engine.get(utf8("new"))).toBeUndefined();
      expect(engine.get(utf8("other"))).toBeUndefined();
      expect(fileSize(disk, path)).toBe(good_size);
      const after = engine.stats();
      expect(after.keys).toBe(1);
      expect(after.memory.arena_live_bytes).toBe(before.memory.arena_live_bytes);
      expect(after.wal.state).toBe("running");
      expect(after.lsn.next).toBe(2);
      expect(log.some((line) => line.includes(errno) && line.includes("unwritten writes rejected"))).toBe(
        true,
      );
      // The disk heals: the log goes on from LSN 2, contiguous.
      disk.clearFaults();
      disk.setCapacity(undefined);
      expect(await settle(host, engine.set(utf8("k"), utf8("v4")))).toBe(2);
      expect(await settle(host, engine.set(utf8("new"), utf8("n2")))).toBe(3);
      expect(text(engine.get(utf8("k")))).toBe("v4");
      // The rolled-back records must never reach the log: only LSNs 1..3 were written.
      expect(engine.stats().lsn.written).toBe(3);
      expect(host.step()).toBe(false);
      disk.powerCut();
      const reopened = await openSim({ wal_zero_ahead_bytes }, disk);
      expect(reopened.host.recovery.next_lsn).toBe(4);
      expect(reopened.host.recovery.torn_bytes).toBe(0);
      expect(text(reopened.engine.get(utf8("k")))).toBe("v4");
      expect(text(reopened.engine.get(utf8("new")))).toBe("n2");
      expect(reopened.engine.get(utf8("other"))).toBeUndefined();
    });
  }

  test("a failed write, then a rotation, then a power cut: the cut was durable before the next segment (zeros ahead)", async () => {
    const { host, engine, disk } = await openSim(); // zeros ahead fill the 64 KiB segment at its first write
    const path = `${WAL_DIR}/${segmentName(1)}`;
    const values = new Map<string, string>();
    let i = 0;
    do {
      values.set(`k${i}`, `${i}`.padEnd(1000, "."));
      await settle(host, engine.set(utf8(`k${i}`), utf8(values.get(`k${i}`)!)));
      i++;
    } while (recordsEnd(disk, path) < SEGMENT_BYTES - 3000);
    expect(fileSize(disk, path)).toBe(SEGMENT_BYTES);
    const failing = engine.set(utf8("lost"), utf8("x".repeat(1000)));
    disk.injectFault(failNext("write", path, "EIO"));
    host.step();
    await expect(failing).rejects.toBeInstanceOf(UnavailableError);
    disk.clearFaults();
    values.set("big", "y".repeat(4000)); // does not fit what is left: the segment rotates
    await settle(host, engine.set(utf8("big"), utf8(values.get("big")!)));
    expect(segments(disk).length).toBe(2);
    disk.powerCut();
    const reopened = await openSim({}, disk);
    for (const [key, value] of values) expect(text(reopened.engine.get(utf8(key))), key).toBe(value);
    expect(reopened.engine.get(utf8("lost"))).toBeUndefined();
  });

  test("a failed segment creation rejects the writes and a later write creates it", async () => {
    const { host, engine, disk } = await openSim();
    const pending = engine.set(utf8("k"), utf8("v"));
    disk.injectFault(failNext("syncDir", WAL_DIR, "EIO"));
    host.step();
    await expect(pending).rejects.toBeInstanceOf(UnavailableError);
    expect(engine.get(utf8("k"))).toBeUndefined();
    disk.clearFaults();
    expect(await settle(host, engine.set(utf8("k"), utf8("again")))).toBe(1);
    expect(text(engine.get(utf8("k")))).toBe("again");
  });

  test("a failed fdatasync stops the log for good; reads go on", async () => {
    const { host, engine, disk, log } = await openSim();
    await settle(host, engine.set(utf8("k"), utf8("v1")));
    const path = `${WAL_DIR}/${segmentName(1)}`;
    const pending = [engine.set(utf8("k"), utf8("v2")), engine.set(utf8("new"), utf8("n"))];
    const outcomes = Promise.allSettled(pending);
    disk.injectFault(failNext("sync", path, "EIO"));
    host.step();
    for (const outcome of await outcomes) {
      expect(outcome.status).toBe("rejected");
      expect((outcome as PromiseRejectedResult).reason).toBeInstanceOf(UnavailableError);
    }
    const stats = engine.stats();
    expect(stats.wal.state).toBe("stopped");
    expect(stats.wal.error).toContain("fdatasync");
    expect(log.some((line) => line.includes("fdatasync") && line.includes("EIO"))).toBe(true);
    expect(text(engine.get(utf8("k")))).toBe("v1");
    expect(engine.get(utf8("new"))).toBeUndefined();
    expect(engine.mget([utf8("k"), utf8("new")]).map(text)).toEqual(["v1", undefined]);
    // Later writes are refused at once, without the writer.
    disk.clearFaults();
    const writes = disk.stats.writes;
    await expect(engine.set(utf8("k"), utf8("v3"))).rejects.toBeInstanceOf(UnavailableError);
    await expect(engine.del(utf8("k"))).rejects.toBeInstanceOf(UnavailableError);
    expect(host.step()).toBe(false);
    expect(disk.stats.writes).toBe(writes);
    expect(text(engine.get(utf8("k")))).toBe("v1");
    // Nothing the failed fdatasync covered is durable: after a power cut only v1 remains.
    disk.powerCut();
    const reopened = await openSim({}, disk);
    expect(text(reopened.engine.get(utf8("k")))).toBe("v1");
    expect(reopened.engine.get(utf8("new"))).toBeUndefined();
    expect(reopened.host.recovery.next_lsn).toBe(2);
  });
});

describe("size-triggered checkpoints", () => {
  test("WAL replayed at start counts toward the next checkpoint request", async () => {
    const MiB = 1 << 20;
    const overrides = { checkpoint_wal_bytes: MiB, wal_segment_bytes: 4 * MiB, max_batch_bytes: 64 << 10 };
    const first = await openSim(overrides);
    const value = new Uint8Array(3000).fill(7);
    for (let i = 0; i < 200; i++) await settle(first.host, first.engine.set(utf8(`k${i}`), value)); // ≈ 0.6 MiB
    expect(first.engine.wal.checkpointSeq()).toBe(0);
    first.disk.crash(); // kill -9: no final checkpoint
    const second = await openSim(overrides, first.disk);
    expect(second.host.recovery.wal_bytes).toBeGreaterThan(MiB / 2);
    const before = second.engine.wal.checkpointSeq();
    for (let i = 0; i < 200; i++) await settle(second.host, second.engine.set(utf8(`k${i}`), value)); // ≈ 0.6 MiB more
    expect(second.engine.wal.checkpointSeq()).toBeGreaterThan(before);
  });
});
