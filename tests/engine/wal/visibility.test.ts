import { afterEach, describe, expect, test } from "bun:test";
import { Visibility } from "../../../src/engine/wal/visibility.ts";
import { createWalBufferShared, WalBuffer } from "../../../src/engine/wal/wal_buffer.ts";

/** A WAL buffer with `count` records reserved and completed, none published yet. */
function bufferWithRecords(count: number): { buffer: WalBuffer; lsns: number[] } {
  const buffer = new WalBuffer(createWalBufferShared({ ring_bytes: 1 << 16 }));
  const lsns = Array.from({ length: count }, () => {
    const lsn = buffer.reserve(64);
    buffer.complete(lsn);
    return lsn;
  });
  return { buffer, lsns };
}

/** The writer's side: `lsn` and everything before it written, durable and visible. */
function publishUpTo(buffer: WalBuffer, lsn: number): void {
  buffer.publish({
    written: lsn,
    durable: lsn,
    visible: lsn,
    flushed_pos: lsn * 64,
    flushed_lsn: lsn,
    wal_bytes_added: 64,
    fsyncs_added: 1,
    group_records: 1,
    segment_first_lsn: 1,
  });
}

const realWaitAsync = Atomics.waitAsync;
let wait_async_calls = 0;

/** Counts the Atomics.waitAsync calls from here on: a Visibility that sleeps makes one. */
function countWaitAsync(): void {
  wait_async_calls = 0;
  Atomics.waitAsync = ((...args: Parameters<typeof Atomics.waitAsync>) => {
    wait_async_calls++;
    return realWaitAsync(...args);
  }) as typeof Atomics.waitAsync;
}

afterEach(() => {
  Atomics.waitAsync = realWaitAsync;
});

describe("Visibility", () => {
  test("a write settles once its LSN is published, in order, with or without a spin", async () => {
    for (const spin_us of [0, 300]) {
      const { buffer, lsns } = bufferWithRecords(3);
      const visibility = new Visibility(buffer, { spin_us });
      const settled: number[] = [];
      const waits = lsns.map((lsn) => visibility.wait(lsn, buffer.epoch()).then(() => settled.push(lsn)));
      expect(visibility.pending()).toBe(3);
      setTimeout(() => publishUpTo(buffer, lsns[1]!), 5);
      await waits[1];
      expect(settled).toEqual([lsns[0]!, lsns[1]!]);
      expect(visibility.pending()).toBe(1);
      setTimeout(() => publishUpTo(buffer, lsns[2]!), 5);
      await waits[2];
      expect(settled).toEqual(lsns);
      expect(visibility.pending()).toBe(0);
    }
  });

  test("while spinning it polls each event-loop turn and never sleeps in waitAsync", async () => {
    const { buffer, lsns } = bufferWithRecords(1);
    countWaitAsync();
    const visibility = new Visibility(buffer, { spin_us: 10_000 });
    const wait = visibility.wait(lsns[0]!, buffer.epoch());
    setImmediate(() => publishUpTo(buffer, lsns[0]!));
    await wait;
    expect(wait_async_calls).toBe(0);
  });

  test("with spin_us 0 it sleeps in waitAsync at once", async () => {
    const { buffer, lsns } = bufferWithRecords(1);
    countWaitAsync();
    const visibility = new Visibility(buffer, { spin_us: 0 });
    const wait = visibility.wait(lsns[0]!, buffer.epoch());
    expect(wait_async_calls).toBe(1);
    setImmediate(() => publishUpTo(buffer, lsns[0]!));
    await wait;
    expect(wait_async_calls).toBe(1);
  });

  test("the spin ends spin_us after the last settled write: then it sleeps, once, and still settles", async () => {
    const { buffer, lsns } = bufferWithRecords(1);
    countWaitAsync();
    const visibility = new Visibility(buffer, { spin_us: 1000 });
    const wait = visibility.wait(lsns[0]!, buffer.epoch());
    const calls_at_publish = await new Promise<number>((resolve) =>
      setTimeout(() => {
        const calls = wait_async_calls;
        publishUpTo(buffer, lsns[0]!);
        resolve(calls);
      }, 30),
    );
    await wait;
    expect(calls_at_publish).toBe(1); // 30 ms ≫ the 1 ms spin: asleep by then, in one waitAsync
    expect(wait_async_calls).toBe(1);
  });

  test("a settled write restarts the spin for the writes still waiting", async () => {
    const { buffer, lsns } = bufferWithRecords(2);
    countWaitAsync();
    const visibility = new Visibility(buffer, { spin_us: 100_000 });
    const first = visibility.wait(lsns[0]!, buffer.epoch());
    const second = visibility.wait(lsns[1]!, buffer.epoch());
    setTimeout(() => publishUpTo(buffer, lsns[0]!), 60);
    await first;
    // 120 ms after the waits began, 60 ms after the first settled: within a spin counted from the
    // last settled write, past one counted from the first wait.
    setTimeout(() => publishUpTo(buffer, lsns[1]!), 60);
    await second;
    expect(wait_async_calls).toBe(0);
  });
});
