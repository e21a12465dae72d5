import { afterEach, describe, expect, test } from "bun:test";
import { Arena, createArenaShared } from "../../src/engine/arena.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { Loader, type ReplaySink } from "../../src/engine/replay_loader.ts";
import { createPipeShared, PipeSink } from "../../src/engine/replay_pipe.ts";
import { createTableShared, Table } from "../../src/engine/table.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20261127);
const SHARD_BITS = 3;
const workers: Worker[] = [];

afterEach(() => {
  for (const worker of workers.splice(0)) worker.terminate();
});

/** A fresh table whose arena holds at most `limit_bytes`. */
function freshTable(limit_bytes = 64 << 20) {
  const shared = createArenaShared({
    buffer_count: 1,
    initial_bytes: Math.min(1 << 20, limit_bytes),
    max_bytes_per_buffer: 64 << 20,
    limit_bytes,
  });
  const arena = new Arena(shared);
  const table_shared = createTableShared(arena, SHARD_BITS);
  return { arena: shared, table_shared, table: new Table(table_shared, arena) };
}

/** A PipeSink whose replay worker links into `target` (ring of `ring_bytes`). */
function pipeInto(target: ReturnType<typeof freshTable>, ring_bytes: number): PipeSink {
  const pipe = createPipeShared(ring_bytes);
  const url = new URL("../../src/engine/replay_worker.ts", import.meta.url).href;
  const worker = new Worker(url, { type: "module" });
  workers.push(worker);
  worker.postMessage({ pipe, table: target.table_shared, arena: target.arena });
  return new PipeSink(pipe, target.table, () => worker.terminate());
}

/** Every key the table holds: key text → value bytes, lsn and expiry. */
function contents(table: Table): Map<string, string> {
  const out = new Map<string, string>();
  for (let shard = 0; shard < table.shard_count; shard++) {
    table.scanShard(
      shard,
      () => Number.MAX_SAFE_INTEGER,
      (bytes, ko, kl, vl, lsn, expiry) => {
        const key = Buffer.from(bytes.subarray(ko, ko + kl)).toString("hex");
        const value = Buffer.from(bytes.subarray(ko + kl, ko + kl + vl)).toString("hex");
        out.set(key, `${value}@${lsn}/${expiry}`);
      },
    );
  }
  return out;
}

/**
 * Puts a seeded mix into `sinks` alike: sets and dels over 300 keys, values up to 900 bytes (some
 * over a 2 KiB ring's quarter, so they take the direct path), some keys in one buffer with their
 * value (as data.db and the WAL hold them), a few expiries, flushes now and then.
 */
function feed(seed: number, sinks: ReplaySink[]): void {
  const random = prng(seed);
  const scratch = new Uint8Array(2048);
  for (let lsn = 1; lsn <= 4000; lsn++) {
    const key_length = 1 + randomInt(random, 24);
    const key_id = randomInt(random, 300);
    for (let i = 0; i < key_length; i++) scratch[i] = (key_id * 31 + i) & 0xff;
    scratch[0] = key_id & 0xff;
    scratch[1] = key_id >>> 8;
    const roll = randomInt(random, 100);
    if (roll < 15) {
      for (const sink of sinks) sink.del(scratch, 0, key_length, lsn);
    } else {
      const value_length = roll < 20 ? 600 + randomInt(random, 300) : randomInt(random, 120);
      const value_offset = roll % 2 === 0 ? key_length : 1024;
      for (let i = 0; i < value_length; i++) scratch[value_offset + i] = randomInt(random, 256);
      const expiry = roll > 95 ? 1_800_000_000_000 + lsn : 0;
      for (const sink of sinks) sink.set(scratch, 0, key_length, value_offset, value_length, lsn, expiry);
    }
    if (randomInt(random, 500) === 0) for (const sink of sinks) sink.flush();
  }
  for (const sink of sinks) sink.flush();
}

describe("replay pipe", () => {
  test("a worker linking through the pipe builds the same table as linking here (seeded)", () => {
    for (const ring_bytes of [2048, 1 << 20]) {
      const seed = SEED + ring_bytes;
      const direct = freshTable();
      const piped = freshTable();
      const sink = pipeInto(piped, ring_bytes);
      try {
        feed(seed, [new Loader(direct.table), sink]);
      } finally {
        sink.close();
      }
      const expected = contents(direct.table);
      expect(expected.size, `seed ${seed}`).toBeGreaterThan(100);
      expect(contents(piped.table), `seed ${seed}, ring ${ring_bytes}`).toEqual(expected);
    }
  });

  test("a failure in the worker is thrown on the recovering thread", () => {
    const target = freshTable(256 << 10);
    const sink = pipeInto(target, 4096);
    const value = new Uint8Array(200);
    try {
      // 4,000 distinct keys of 200-byte values: the 256 KiB arena fills up long before the end.
      expect(() => {
        for (let lsn = 1; lsn <= 4000; lsn++) {
          new DataView(value.buffer).setUint32(0, lsn);
          sink.set(value, 0, 4, 4, 196, lsn, 0);
        }
        sink.flush();
      }).toThrow(/replay worker failed: out of memory/);
    } finally {
      sink.close();
    }
  });

  test("a worker that never starts is replaced: the sink links everything itself (seeded)", () => {
    const direct = freshTable();
    const target = freshTable();
    const lines: string[] = [];
    const sink = new PipeSink(createPipeShared(2048), target.table, () => {}, {
      log: (line) => lines.push(line),
      start_timeout_ms: 100,
    });
    const started_ms = performance.now();
    try {
      feed(SEED, [new Loader(direct.table), sink]); // fills the ring, waits, takes over, goes on
    } finally {
      sink.close();
    }
    expect(performance.now() - started_ms).toBeGreaterThanOrEqual(100);
    expect(lines.some((line) => line.includes("did not start within 100 ms; linking here"))).toBe(true);
    expect(contents(target.table)).toEqual(contents(direct.table));
  });

  test("a worker that dies after it started is reported, not waited for forever", () => {
    const target = freshTable();
    const pipe = createPipeShared(2048);
    const url = new URL("./replay_dying_worker.ts", import.meta.url).href;
    const worker = new Worker(url, { type: "module" });
    workers.push(worker);
    worker.postMessage({ pipe, table: target.table_shared, arena: target.arena, die_after: 20 });
    const sink = new PipeSink(pipe, target.table, () => worker.terminate(), { stall_timeout_ms: 300 });
    const value = new Uint8Array(200);
    try {
      expect(() => {
        for (let lsn = 1; lsn <= 1000; lsn++) sink.set(value, 0, 8, 8, 150, lsn, 0);
        sink.flush();
      }).toThrow(/replay worker stopped \(no progress for 300 ms\)/);
    } finally {
      sink.close();
    }
  });
});
