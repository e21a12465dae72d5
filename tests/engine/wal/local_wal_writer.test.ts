import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EngineConfig, engineConfig } from "../../../src/engine/config.ts";
import { openEngine, walStart } from "../../../src/engine/host.ts";
import type { FileId } from "../../../src/engine/io/io.ts";
import { RealIo } from "../../../src/engine/io/real_io.ts";
import { LOCAL_TICK_MS, LocalWalWriter } from "../../../src/engine/wal/local_wal_writer.ts";
import { delEntry, setEntry } from "../../../src/engine/wal/record.ts";
import { WalSyncer } from "../../../src/engine/wal/wal_syncer.ts";
import type { FsyncMode } from "../../../src/engine/wal/wal_writer.ts";
import { SetCoalescer } from "../../../src/server/ops.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const text = (bytes: Uint8Array | undefined) =>
  bytes === undefined ? undefined : new TextDecoder().decode(bytes);

let dir = "";
afterEach(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
  dir = "";
});

/** A threaded host whose WAL this thread writes (as a lone I/O worker does). */
async function openLocal(
  fsync: FsyncMode,
  io = new RealIo(),
  shard_bits = 12,
  overrides: Partial<EngineConfig> = {},
) {
  dir = mkdtempSync(join(tmpdir(), "walkv-local-wal-"));
  const config = engineConfig({ data_dir: dir, fsync, checkpoint_interval_ms: 0, shard_bits, ...overrides });
  const host = await openEngine(config, { log: () => {}, local_wal_writer: true });
  const local = new LocalWalWriter(host.shared, walStart(host.recovery), () => {}, io);
  return { config, host, local };
}

/** The file system, whose next `fail_writes` writes (`fail_syncs` fdatasyncs) throw EIO; it counts both. */
class FailingIo extends RealIo {
  fail_writes = 0;
  fail_syncs = 0;
  writes = 0;
  syncs = 0;

  override write(file: FileId, data: Uint8Array, position_bytes: number): void {
    this.writes++;
    if (this.fail_writes > 0) {
      this.fail_writes--;
      throw Object.assign(new Error("EIO: injected"), { code: "EIO" });
    }
    super.write(file, data, position_bytes);
  }

  override sync(file: FileId): void {
    this.syncs++;
    if (this.fail_syncs > 0) {
      this.fail_syncs--;
      throw Object.assign(new Error("EIO: injected"), { code: "EIO" });
    }
    super.sync(file);
  }
}

/** Resolves once `condition` holds, checking every tick; fails after `deadline_ms`. */
async function until(condition: () => boolean, deadline_ms: number): Promise<void> {
  const started_ms = performance.now();
  while (!condition()) {
    if (performance.now() - started_ms > deadline_ms) throw new Error(`not within ${deadline_ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, LOCAL_TICK_MS));
  }
}

describe("LocalWalWriter", () => {
  test("a write is written (visible) before it resolves; everysec syncs within a second", async () => {
    const { host, local } = await openLocal("everysec");
    const wal = local.engine.wal;
    const lsn = await local.engine.set(utf8("k"), utf8("v1"));
    expect(wal.lsns().written).toBe(lsn);
    expect(wal.lsns().visible).toBe(lsn);
    expect(text(host.engine.get(utf8("k")))).toBe("v1"); // another thread's engine sees it
    await until(() => wal.lsns().durable >= lsn, 2000);
    // The fdatasync that made it durable ran on the syncer's thread (the host's syncer worker).
    expect(new WalSyncer(host.shared.wal_sync).syncedLsn()).toBeGreaterThanOrEqual(lsn);
    local.close();
    await host.close();
  });

  test("writes survive a close and reopen, and the final checkpoint leaves no WAL", async () => {
    const { config, host, local } = await openLocal("no");
    const writes = [];
    for (let i = 0; i < 200; i++) writes.push(local.engine.set(utf8(`k${i}`), utf8(`v${i}`)));
    await Promise.all(writes);
    expect(await local.engine.del(utf8("k7"))).toBe(true);
    local.close();
    await host.close();
    expect(readdirSync(join(dir, "wal")).filter((name) => name.endsWith(".wal"))).toEqual([]);
    const again = await openEngine(config, { log: () => {} });
    try {
      expect(again.engine.stats().keys).toBe(199);
      expect(text(again.engine.get(utf8("k199")))).toBe("v199");
      expect(again.engine.get(utf8("k7"))).toBeUndefined();
    } finally {
      await again.close();
    }
  });

  test.each(["always", "everysec", "no"] as const)(
    "%s: a LocalWalWriter on a host that runs its own WAL writer is refused (two writers of one log)",
    async (fsync) => {
      dir = mkdtempSync(join(tmpdir(), "walkv-local-wal-"));
      const config = engineConfig({ data_dir: dir, fsync, checkpoint_interval_ms: 0 });
      const host = await openEngine(config, { log: () => {} }); // its own WAL writer worker
      try {
        expect(() => new LocalWalWriter(host.shared, walStart(host.recovery), () => {})).toThrow(
          /runs no WAL writer/,
        );
      } finally {
        await host.close();
      }
    },
  );

  test.each(["no", "always"] as const)(
    "%s: a failed write(2) rejects its write with nothing of it applied (no: while its shard mutexes are held); the next write goes on",
    async (fsync) => {
      const io = new FailingIo();
      const { config, host, local } = await openLocal(fsync, io);
      const keys = Array.from({ length: 40 }, (_, i) => utf8(`k${i}`)); // many shards, all held at once
      await local.engine.mset(keys.slice(0, 20).map((key) => [key, utf8("old")] as const));
      io.fail_writes = 1;
      const failed = local.engine.mset(keys.map((key) => [key, utf8("new")] as const));
      await expect(failed).rejects.toThrow(/write not applied/);
      for (const [i, key] of keys.entries()) {
        const expected = i < 20 ? "old" : undefined;
        expect(text(local.engine.get(key)), `k${i}`).toBe(expected);
        expect(text(host.engine.get(key)), `k${i} from another thread`).toBe(expected);
      }
      expect(host.engine.stats().keys).toBe(20);
      await local.engine.set(keys[0]!, utf8("after")); // the log goes on; no mutex was left held
      expect(text(host.engine.get(keys[0]!))).toBe("after");
      local.close();
      await host.close();
      const again = await openEngine(config, { log: () => {} }); // the failed record is not replayed
      try {
        expect(again.engine.stats().keys).toBe(20);
        expect(text(again.engine.get(keys[0]!))).toBe("after");
        expect(text(again.engine.get(keys[1]!))).toBe("old");
        expect(again.engine.get(keys[30]!)).toBeUndefined();
      } finally {
        await again.close();
      }
    },
  );

  test("a value of the same length is written in place: no memory taken or freed, reads see the new value", async () => {
    const { host, local } = await openLocal("no");
    const e = local.engine;
    await e.set(utf8("k"), utf8("v0000"));
    const live = e.arena.stats();
    for (let i = 1; i <= 200; i++) {
      const lsn = await e.set(utf8("k"), utf8(`v${String(i).padStart(4, "0")}`));
      expect(text(host.engine.get(utf8("k"))), `round ${i}`).toBe(`v${String(i).padStart(4, "0")}`);
      expect(host.engine.wal.visibleLsn()).toBeGreaterThanOrEqual(lsn);
    }
    expect(e.arena.stats().chunks_live).toBe(live.chunks_live);
    await e.set(utf8("k"), utf8("longer value")); // another length: a new version, the old one freed
    expect(text(host.engine.get(utf8("k")))).toBe("longer value");
    expect(e.arena.stats().chunks_live).toBe(live.chunks_live);
    local.close();
    await host.close();
  });

  test("writes that mix new keys and values in place grow full shards first (their slots are reserved)", async () => {
    // 4 shards of 16 slots at first: new keys outgrow them within a write, next to values in place.
    const { host, local } = await openLocal("no", new RealIo(), 2);
    const e = local.engine;
    // A value whose length depends on the key only: from the second round on, k<i> is written in place.
    const value = (i: number, round: number) => utf8(`${round}`.padEnd(4 + (i % 5), "."));
    for (let round = 0; round < 4; round++) {
      for (let b = 0; b < 20; b++) {
        const held = Array.from({ length: 50 }, (_, j) =>
          setEntry(utf8(`k${b * 50 + j}`), value(b * 50 + j, round)),
        );
        const fresh = Array.from({ length: 50 }, (_, j) =>
          setEntry(utf8(`n${round}-${b * 50 + j}`), utf8("new")),
        );
        await e.write([...held, ...fresh]);
      }
    }
    for (const i of [0, 499, 999])
      expect(text(host.engine.get(utf8(`k${i}`))), `k${i}`).toBe(text(value(i, 3)));
    for (const name of ["n0-0", "n3-999"]) expect(text(host.engine.get(utf8(name))), name).toBe("new");
    expect(host.engine.table.slotsUsed()).toBe(1000 + 4 * 1000);
    local.close();
    await host.close();
  });

  test("a key named twice in one write: each entry applies in order, whatever goes in place", async () => {
    const { config, host, local } = await openLocal("no");
    const e = local.engine;
    const k = utf8("k");
    const cases: Array<[Parameters<typeof e.write>[0], string | undefined]> = [
      [[setEntry(k, utf8("aaa")), setEntry(k, utf8("bbb"))], "bbb"], // both the current length
      [[setEntry(k, utf8("cc")), setEntry(k, utf8("ddd"))], "ddd"], // a new version, then the old length
      [[setEntry(k, utf8("eee")), setEntry(k, utf8("ff"))], "ff"], // in place, then a new version over it
      [[delEntry(k), setEntry(k, utf8("gg"))], "gg"], // a delete, then the same length
      [[setEntry(k, utf8("hh")), delEntry(k)], undefined],
      [[setEntry(k, utf8("ii")), setEntry(k, utf8("jj")), setEntry(k, utf8("kk"))], "kk"],
    ];
    const chunks_before = e.arena.stats().chunks_live;
    for (const [entries, expected] of cases) {
      await e.write(entries);
      expect(text(e.get(k)), JSON.stringify(expected)).toBe(expected);
      expect(text(host.engine.get(k)), JSON.stringify(expected)).toBe(expected);
    }
    expect(e.arena.stats().chunks_live).toBe(chunks_before + 1); // "kk" and nothing left behind
    local.close();
    await host.close();
    const again = await openEngine(config, { log: () => {} });
    try {
      expect(text(again.engine.get(k))).toBe("kk");
    } finally {
      await again.close();
    }
  });

  test("a write after close is refused before it takes an LSN; the store is unchanged", async () => {
    const { host, local } = await openLocal("no");
    await local.engine.set(utf8("k"), utf8("v1"));
    local.close();
    const reserved = local.engine.wal.reservedLsn();
    await expect(local.engine.set(utf8("k"), utf8("v2"))).rejects.toThrow(/write-ahead log is closed/);
    await expect(local.engine.set(utf8("new"), utf8("v"))).rejects.toThrow(/write-ahead log is closed/);
    expect(local.engine.wal.reservedLsn()).toBe(reserved);
    expect(text(host.engine.get(utf8("k")))).toBe("v1");
    expect(host.engine.get(utf8("new"))).toBeUndefined();
    await host.close();
  });

  test("always: the writes of one turn share one write(2) and one fdatasync, and each resolves only once it is durable", async () => {
    const io = new FailingIo();
    const { host, local } = await openLocal("always", io);
    const e = local.engine;
    await e.set(utf8("k0"), utf8("v0")); // creates the segment
    const [writes_before, syncs_before] = [io.writes, io.syncs];
    const synced_at_resolve: number[] = [];
    const noted = <T>(write: Promise<T>) =>
      write.then((result) => {
        synced_at_resolve.push(io.syncs - syncs_before);
        return result;
      });
    const turn = [
      noted(e.set(utf8("k1"), utf8("v1"))),
      noted(e.del(utf8("k0"))),
      noted(
        e.mset([
          [utf8("k2"), utf8("v2")],
          [utf8("k3"), utf8("v3")],
        ]),
      ),
      noted(e.set(utf8("k1"), utf8("v1b"))),
    ];
    expect(e.get(utf8("k1"))).toBeUndefined(); // not durable yet: not visible
    expect(text(e.get(utf8("k0")))).toBe("v0");
    await Promise.all(turn);
    expect(synced_at_resolve).toEqual([1, 1, 1, 1]);
    expect([io.writes - writes_before, io.syncs - syncs_before]).toEqual([1, 1]);
    expect(e.wal.lsns().durable).toBe(e.wal.lsns().written);
    expect(text(host.engine.get(utf8("k1")))).toBe("v1b");
    expect(host.engine.get(utf8("k0"))).toBeUndefined();
    expect(host.engine.stats().keys).toBe(3);
    local.close();
    await host.close();
  });

  test("always: a DEL, then SETs the SetCoalescer batches, in one turn share one fdatasync (the WAL step runs after the batch's flush)", async () => {
    const io = new FailingIo();
    const { host, local } = await openLocal("always", io);
    await local.engine.set(utf8("gone"), utf8("v"));
    const syncs_before = io.syncs;
    const del = local.engine.del(utf8("gone"));
    const sets = new SetCoalescer(local.engine);
    const set_outcomes = Array.from(
      { length: 5 },
      (_, i) =>
        new Promise<void>((resolve, reject) =>
          sets.add(setEntry(utf8(`k${i}`), utf8(`v${i}`)), {
            setDone: (failure) => (failure === undefined ? resolve() : reject(failure)),
          }),
        ),
    );
    expect(await del).toBe(true);
    await Promise.all(set_outcomes);
    expect(io.syncs - syncs_before).toBe(1);
    expect(host.engine.get(utf8("gone"))).toBeUndefined();
    expect(text(host.engine.get(utf8("k4")))).toBe("v4");
    local.close();
    await host.close();
  });

  test("always: a turn whose records outgrow the ring is written while it appends (shard mutexes held); a failed write there fails only the records it held", async () => {
    const limits = { max_key_bytes: 1024, max_value_bytes: 30_000, max_batch_bytes: 64 << 10 };
    const small_ring = { ...limits, wal_buffer_bytes: 64 << 10, wal_segment_bytes: 1 << 20 };
    for (const fail_first_write of [false, true]) {
      const io = new FailingIo();
      const { config, host, local } = await openLocal("always", io, 12, small_ring);
      const syncs_before = io.syncs;
      io.fail_writes = fail_first_write ? 1 : 0; // the first write(2) comes from a full ring, mid-turn
      const value = (i: number) => utf8(`${i}:`.padEnd(20_000, "x"));
      const turn = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => local.engine.set(utf8(`big${i}`), value(i))),
      );
      const acknowledged = turn.flatMap((outcome, i) => (outcome.status === "fulfilled" ? [i] : []));
      expect(io.syncs - syncs_before).toBeGreaterThan(1); // synced mid-turn, not only at its end
      if (fail_first_write) {
        expect(acknowledged.length).toBeGreaterThan(0);
        expect(acknowledged.length).toBeLessThan(10);
      } else expect(acknowledged.length).toBe(10);
      for (let i = 0; i < 10; i++) {
        const expected = acknowledged.includes(i) ? value(i) : undefined;
        expect(host.engine.get(utf8(`big${i}`)), `big${i}`).toEqual(expected);
      }
      local.close();
      await host.close();
      const again = await openEngine(config, { log: () => {} });
      try {
        expect(again.engine.stats().keys).toBe(acknowledged.length);
      } finally {
        await again.close();
      }
    }
  });

  test("always: a failed fdatasync rejects the turn's writes, applies none of them, and stops writes; reads go on", async () => {
    const io = new FailingIo();
    const { host, local } = await openLocal("always", io);
    const e = local.engine;
    await e.set(utf8("k"), utf8("old"));
    io.fail_syncs = 1;
    const turn = await Promise.allSettled([e.set(utf8("k"), utf8("new")), e.set(utf8("other"), utf8("v"))]);
    for (const outcome of turn) {
      expect(outcome.status).toBe("rejected");
      expect(String((outcome as PromiseRejectedResult).reason)).toMatch(/write not applied.*fdatasync/);
    }
    expect(text(host.engine.get(utf8("k")))).toBe("old");
    expect(host.engine.get(utf8("other"))).toBeUndefined();
    await expect(e.set(utf8("later"), utf8("v"))).rejects.toThrow(/fdatasync/);
    expect(text(e.get(utf8("k")))).toBe("old");
    local.close();
    await host.close();
  });

  test("always: the host starts no syncer worker (its fdatasyncs run on this thread)", async () => {
    const { host, local } = await openLocal("always");
    await local.engine.set(utf8("k"), utf8("v"));
    expect(new WalSyncer(host.shared.wal_sync).running()).toBe(false);
    local.close();
    await host.close();
  });
});
