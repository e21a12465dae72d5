import { describe, expect, test } from "bun:test";
import { UnavailableError } from "../../../src/engine/errors.ts";
import { prng } from "../../../src/engine/io/prng.ts";
import { SimDisk, type SimDiskCall } from "../../../src/engine/io/sim_disk.ts";
import { WalSyncer, WalSyncerService } from "../../../src/engine/wal/wal_syncer.ts";
import { WalWriter, walWriterOptions } from "../../../src/engine/wal/wal_writer.ts";
import { openSim, SEED, SMALL_LIMITS, text, utf8 } from "../sim_host.ts";

const INTERVAL_MS = 1000;

/**
 * An inline engine on a simulated disk whose WAL is written by a writer built here, as a lone I/O
 * worker's is: fsync everysec (or `no`), the fdatasyncs handed to a syncer that this test runs when
 * it chooses (`service.serve`; the writer's own wait for a new segment's adoption serves it inline),
 * and a clock the test moves.
 */
async function openWithSyncer(sim_disk?: SimDisk, fsync: "everysec" | "no" = "everysec") {
  const { host, engine, disk, log } = await openSim({ fsync }, sim_disk);
  const clock = { now_ms: 0 };
  const thread = { io: disk, wal: engine.wal, wal_dir: "/data/wal", log: (l: string) => log.push(l) };
  const service = new WalSyncerService(host.shared.wal_sync, thread);
  const syncer = new WalSyncer(host.shared.wal_sync, service);
  const writer = new WalWriter(
    disk,
    engine.wal,
    engine.table,
    {
      ...walWriterOptions(host.shared.config, (l) => log.push(l)),
      everysec_interval_ms: INTERVAL_MS,
      now_ms: () => clock.now_ms,
      background_sync: syncer,
    },
    { next_lsn: host.recovery.next_lsn },
  );
  /** Writes what is complete and settles the writes it made visible (the host's writer stays idle). */
  const step = () => {
    while (writer.step()) {}
    engine.poll();
  };
  const set = async (key: string, value: string) => {
    const pending = engine.set(utf8(key), utf8(value));
    step();
    return await pending;
  };
  return { engine, disk, log, clock, syncer, service, writer, step, set };
}

describe("WalSyncer: the everysec fdatasync, and the early ones before a rotation, on another thread", () => {
  test("the writer hands the fdatasync to the syncer and publishes durable only once it finished", async () => {
    const { engine, disk, clock, syncer, service, step, set } = await openWithSyncer();
    const ops: string[] = [];
    disk.injectFault((call: SimDiskCall) => {
      if (call.path.endsWith(".wal") && (call.op === "open" || call.op === "write")) ops.push(call.op);
      return undefined;
    });
    const first = await set("k", "v1"); // creates the segment (its header is synced)
    disk.clearFaults();
    // The writer creates the segment and writes its header; the syncer opens its own descriptor
    // (adopts the segment) before the first record is written.
    expect(ops).toEqual(["open", "write", "open", "write"]);
    const syncs = disk.stats.syncs;
    const second = await set("k", "v2");
    expect(engine.wal.lsns()).toMatchObject({ written: second, visible: second, durable: 0 });
    clock.now_ms += INTERVAL_MS;
    step(); // due: a request, not an fdatasync on this thread
    expect(syncer.busy()).toBe(true);
    expect(disk.stats.syncs).toBe(syncs);
    expect(engine.wal.lsns().durable).toBe(0);
    const third = await set("k", "v3"); // written while the fdatasync is in flight
    const segments = () => disk.openPaths().filter((path) => path.endsWith(".wal"));
    expect(segments()).toEqual([segments()[0]!, segments()[0]!]); // the writer's and the syncer's
    expect(service.serve(0)).toBe(true);
    expect(disk.stats.syncs).toBe(syncs + 1);
    // The syncer keeps its descriptor of the segment (it must be open when a writeback error
    // happens to report it), until the next segment is adopted or the thread ends.
    expect(segments()).toEqual([segments()[0]!, segments()[0]!]);
    service.close();
    expect(segments()).toHaveLength(1);
    expect(engine.wal.lsns().durable).toBe(0); // not yet collected by the writer
    step();
    expect(engine.wal.lsns().durable).toBe(second); // what the request covered, not the third
    expect(third).toBe(second + 1);
    expect(first).toBeLessThan(second);
    expect(syncer.busy()).toBe(false);
  });

  test("a background fdatasync failing during the writer's handling of a failed write: the log stays stopped", async () => {
    const { engine, disk, clock, service, step, set } = await openWithSyncer();
    await set("k", "v1");
    clock.now_ms += INTERVAL_MS;
    step(); // asks
    let failed_write = false;
    disk.injectFault((call: SimDiskCall) => {
      if (call.op === "sync") return "EIO";
      if (call.op !== "write" || failed_write) return undefined;
      failed_write = true;
      service.serve(0); // the syncer's fdatasync fails now, on its thread
      return "EIO"; // and so does the writer's write: it halts, rolls back, rewinds
    });
    const second = engine.set(utf8("k"), utf8("v2"));
    step();
    await expect(second).rejects.toBeInstanceOf(UnavailableError);
    expect(failed_write).toBe(true);
    expect(engine.stats().wal.state).toBe("stopped");
    expect(engine.stats().wal.error).toContain("background fdatasync");
    disk.clearFaults();
    await expect(engine.set(utf8("k"), utf8("v3"))).rejects.toBeInstanceOf(UnavailableError);
    expect(engine.wal.lsns().durable).toBe(0);
  });

  test("a failed open of a new segment by the syncer is logged and retried by its next fdatasync, not fatal", async () => {
    const { engine, disk, log, clock, service, step, set } = await openWithSyncer();
    let wal_opens = 0;
    disk.injectFault((call: SimDiskCall) =>
      call.op === "open" && call.path.endsWith(".wal") && ++wal_opens === 2 ? "EMFILE" : undefined,
    );
    const lsn = await set("k", "v1"); // the writer creates the segment; the syncer's open fails
    disk.clearFaults();
    expect(wal_opens).toBe(2);
    expect(log.some((line) => line.includes("background open") && line.includes("EMFILE"))).toBe(true);
    expect(engine.stats().wal.state).toBe("running");
    expect(disk.openPaths().filter((path) => path.endsWith(".wal"))).toHaveLength(1); // the writer's
    clock.now_ms += INTERVAL_MS;
    step(); // asks
    expect(service.serve(0)).toBe(true); // opens the segment, then syncs it
    step();
    expect(engine.wal.lsns().durable).toBe(lsn);
    expect(disk.openPaths().filter((path) => path.endsWith(".wal"))).toHaveLength(2);
  });

  test("a request that finishes between the writer's steps is collected, not asked again", async () => {
    const { engine, clock, syncer, service, writer, set } = await openWithSyncer();
    const lsn = await set("k", "v1");
    clock.now_ms += INTERVAL_MS;
    writer.step(); // asks
    expect(syncer.busy()).toBe(true);
    // The syncer finishes just as the writer next looks (between its collection and its request).
    const busy = syncer.busy.bind(syncer);
    syncer.busy = () => {
      service.serve(0);
      return busy();
    };
    clock.now_ms += INTERVAL_MS;
    expect(() => writer.step()).not.toThrow();
    expect(engine.wal.lsns().durable).toBe(lsn);
    expect(syncer.busy()).toBe(false);
  });

  test("a power cut keeps what a finished fdatasync covered; the rest may be lost", async () => {
    const lost: number[] = [];
    for (let seed = SEED; seed < SEED + 16; seed++) {
      const { disk, clock, service, step, set } = await openWithSyncer(new SimDisk({ rng: prng(seed) }));
      await set("a", "1");
      clock.now_ms += INTERVAL_MS;
      step();
      service.serve(0);
      step();
      await set("b", "2");
      clock.now_ms += INTERVAL_MS;
      step(); // requested, never served
      disk.powerCut();
      const reopened = await openSim({ fsync: "everysec" }, disk);
      expect({ seed, a: text(reopened.engine.get(utf8("a"))) }).toEqual({ seed, a: "1" });
      if (reopened.engine.get(utf8("b")) === undefined) lost.push(seed);
    }
    // Some power cuts drop the unsynced write: the request alone made nothing durable.
    expect(lost.length).toBeGreaterThan(0);
  });

  test("fsync no: a power cut keeps what the early fdatasync of a segment's last eighth covered", async () => {
    const lost: number[] = [];
    const value = "x".repeat(3000);
    for (let seed = SEED; seed < SEED + 8; seed++) {
      const sim = await openWithSyncer(new SimDisk({ rng: prng(seed) }), "no");
      let i = 0;
      while (!sim.syncer.busy()) await sim.set(`big${i++}`, value);
      const covered = i; // every SET so far was written before the request
      sim.service.serve(0);
      sim.step();
      expect(sim.engine.wal.lsns().durable).toBeGreaterThan(0);
      await sim.set("after", "1"); // written, never synced
      sim.disk.powerCut();
      const reopened = await openSim({ fsync: "no" }, sim.disk);
      for (let k = 0; k < covered; k++)
        expect({ seed, k, value: reopened.engine.get(utf8(`big${k}`))?.length }).toEqual({
          seed,
          k,
          value: 3000,
        });
      if (reopened.engine.get(utf8("after")) === undefined) lost.push(seed);
    }
    // Some power cuts drop the unsynced write: only the finished fdatasync made anything durable.
    expect(lost.length).toBeGreaterThan(0);
  });

  test("a failed background fdatasync stops the log for good; reads go on", async () => {
    const { engine, disk, log, clock, syncer, service, writer, step, set } = await openWithSyncer();
    await set("k", "v1");
    clock.now_ms += INTERVAL_MS;
    step();
    disk.injectFault((call: SimDiskCall) => (call.op === "sync" ? "EIO" : undefined));
    service.serve(0);
    expect(engine.stats().wal.state).toBe("stopped");
    expect(engine.stats().wal.error).toContain("background fdatasync of /data/wal/");
    expect(syncer.syncedLsn()).toBe(0); // nothing claimed for the failed one
    expect(log.some((line) => line.includes("background fdatasync") && line.includes("EIO"))).toBe(true);
    expect(engine.wal.lsns().durable).toBe(0);
    disk.clearFaults();
    await expect(engine.set(utf8("k"), utf8("v2"))).rejects.toBeInstanceOf(UnavailableError);
    expect(writer.step()).toBe(false);
    expect(writer.syncNow()).toBe(false); // no fdatasync on this thread claims it durable after all
    expect(engine.wal.lsns().durable).toBe(0);
    expect(text(engine.get(utf8("k")))).toBe("v1");
  });

  test.each(["everysec", "no"] as const)(
    "%s: in a segment's last eighth the writer asks before any interval, so rotation has little to flush",
    async (fsync) => {
      const { engine, disk, clock, syncer, service, step, set } = await openWithSyncer(undefined, fsync);
      const value = "x".repeat(3000);
      const segment_bytes = SMALL_LIMITS.wal_segment_bytes;
      let i = 0;
      // everysec: the clock never moves, so no interval is due. no: the clock moves, and no interval
      // ever makes it ask. Below 7/8 of the segment, nothing is asked.
      while (disk.stats.bytes_written < (segment_bytes * 7) / 8 - 4000) {
        await set(`big${i++}`, value);
        if (fsync === "no") clock.now_ms += INTERVAL_MS;
        expect(syncer.busy()).toBe(false);
      }
      while (!syncer.busy()) await set(`big${i++}`, value);
      expect(disk.stats.bytes_written).toBeGreaterThanOrEqual((segment_bytes * 7) / 8);
      expect(engine.wal.lsns().durable).toBe(0);
      service.serve(0);
      step();
      expect(engine.wal.lsns().durable).toBeGreaterThan(0);
    },
  );

  test.each(["everysec", "no"] as const)(
    "%s: in a segment's last eighth the syncer is asked at most once per 1/64 of the segment",
    async (fsync) => {
      const { disk, syncer, service, set } = await openWithSyncer(undefined, fsync);
      const segment_bytes = SMALL_LIMITS.wal_segment_bytes;
      const value = "x".repeat(100); // records far smaller than 1/64 of the segment
      const asked_at_bytes: number[] = [];
      // The syncer finishes each request at once, so it is idle at every step: only the spacing
      // limits how often the writer asks.
      for (let i = 0; disk.stats.bytes_written < segment_bytes - 400; i++) {
        await set(`k${i}`, value);
        if (!syncer.busy()) continue;
        asked_at_bytes.push(disk.stats.bytes_written);
        service.serve(0);
      }
      expect(asked_at_bytes.length).toBeGreaterThanOrEqual(6);
      expect(asked_at_bytes.length).toBeLessThanOrEqual(8);
      expect(asked_at_bytes[0]!).toBeGreaterThanOrEqual((segment_bytes * 7) / 8);
      for (let i = 1; i < asked_at_bytes.length; i++)
        expect(asked_at_bytes[i]! - asked_at_bytes[i - 1]!).toBeGreaterThanOrEqual(segment_bytes / 64);
    },
  );

  test("rotation and close wait for the fdatasync in flight before they sync and close the segment", async () => {
    const { engine, disk, clock, syncer, writer, step, set } = await openWithSyncer();
    await set("k", "v1");
    clock.now_ms += INTERVAL_MS;
    step();
    expect(syncer.busy()).toBe(true);
    const order: string[] = [];
    disk.injectFault((call: SimDiskCall) => {
      if (call.op === "sync" || call.op === "close")
        order.push(`${call.op}${syncer.busy() ? " (busy)" : ""}`);
      return undefined;
    });
    // Fill the 64 KiB segment: the writer rotates; the syncer's request runs first (inline here).
    const value = "x".repeat(3000);
    for (let i = 0; i < 30; i++) await set(`big${i}`, value);
    // The syncer's fdatasync (while busy) came first; then the writer synced and closed the full
    // segment, and synced the new one's header; then the syncer, adopting the new segment, let go of
    // its descriptor of the old one.
    expect(order.slice(0, 5)).toEqual(["sync (busy)", "sync", "close", "sync", "close (busy)"]);
    disk.clearFaults();
    const open = disk.openPaths().filter((path) => path.endsWith(".wal"));
    expect(open).toHaveLength(2); // the writer's and the syncer's
    expect(new Set(open).size).toBe(1); // both of the new segment
    writer.close();
    expect(syncer.busy()).toBe(false);
    expect(engine.wal.lsns().durable).toBe(engine.wal.lsns().written);
  });
});
