import { afterEach, describe, expect, test } from "bun:test";
import { UnavailableError } from "../../../src/engine/errors.ts";
import { Visibility } from "../../../src/engine/wal/visibility.ts";
import { createWalBufferShared, WAL_STOPPED, WalBuffer } from "../../../src/engine/wal/wal_buffer.ts";

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

/** Lets `n` event-loop turns pass: a spinning Visibility polls at least once in each. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A clock the test moves by hand, in milliseconds. */
function manualClock(): { now_ms: () => number; set: (ms: number) => void } {
  let ms = 0;
  return { now_ms: () => ms, set: (to) => (ms = to) };
}

/** `count` records waiting on a Visibility that spins for `spin_us` on a manual clock; waitAsync counted. */
function spinningOn(count: number, spin_us: number) {
  const { buffer, lsns } = bufferWithRecords(count);
  const clock = manualClock();
  countWaitAsync();
  const visibility = new Visibility(buffer, { spin_us, now_ms: clock.now_ms });
  const waits = lsns.map((lsn) => visibility.wait(lsn, buffer.epoch()));
  return { buffer, lsns, clock, waits };
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

  test("while its window lasts it polls each event-loop turn and never sleeps in waitAsync", async () => {
    const { buffer, lsns, waits } = spinningOn(1, 300);
    await turns(20);
    expect(wait_async_calls).toBe(0);
    publishUpTo(buffer, lsns[0]!); // no poll() here: the spin must find it by itself
    await waits[0];
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

  test("spin_us after its window began with no write settled, it sleeps, once, and still settles", async () => {
    const { buffer, lsns, clock, waits } = spinningOn(1, 300);
    clock.set(0.299);
    await turns(5);
    expect(wait_async_calls).toBe(0);
    clock.set(0.3);
    await turns(5);
    expect(wait_async_calls).toBe(1);
    publishUpTo(buffer, lsns[0]!);
    await waits[0];
    expect(wait_async_calls).toBe(1);
  });

  test("a settled write starts a new window for the writes still waiting", async () => {
    const { buffer, lsns, clock, waits } = spinningOn(2, 300);
    const [first, second] = waits;
    clock.set(0.2);
    publishUpTo(buffer, lsns[0]!);
    await first;
    clock.set(0.45); // past 0.3 ms from the first wait, within 0.3 ms from the settled write
    await turns(5);
    expect(wait_async_calls).toBe(0);
    clock.set(0.5);
    await turns(5);
    expect(wait_async_calls).toBe(1);
    publishUpTo(buffer, lsns[1]!);
    await second;
  });

  test("a stopped log rejects the waiting writes, whether it is polling or asleep", async () => {
    for (const asleep of [false, true]) {
      const { buffer, clock, waits } = spinningOn(1, 300);
      if (asleep) clock.set(1);
      await turns(3);
      expect(wait_async_calls).toBe(asleep ? 1 : 0);
      buffer.setState(WAL_STOPPED, "disk on fire");
      const error = await waits[0]!.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UnavailableError);
      expect((error as Error).message).toMatch(/disk on fire/);
    }
  });

  test("inline, nothing polls or sleeps: a write settles only when the caller polls", async () => {
    const { buffer, lsns } = bufferWithRecords(1);
    countWaitAsync();
    const visibility = new Visibility(buffer, { inline: true, spin_us: 300 });
    let settled = false;
    const wait = visibility.wait(lsns[0]!, buffer.epoch()).then(() => {
      settled = true;
    });
    publishUpTo(buffer, lsns[0]!);
    await turns(5);
    expect(settled).toBe(false);
    expect(wait_async_calls).toBe(0);
    visibility.poll();
    await wait;
    expect(settled).toBe(true);
  });
});
