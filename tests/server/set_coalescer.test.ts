/**
 * SetCoalescer (src/server/ops.ts) with a fake engine: the SETs of one turn are one write, each
 * waiter hears once and only after that write settles, a failed write fails every SET of its batch,
 * a batch is cut at its entry limit and when another write flushes it, and a group of SETs with one
 * waiter (addGroup) is never split across batches.
 */
import { describe, expect, test } from "bun:test";
import type { Engine, WriteResult } from "../../src/engine/engine.ts";
import { entrySizeBytes, setEntry, type WalEntry } from "../../src/engine/wal/record.ts";
import { SetCoalescer, type SetWaiter } from "../../src/server/ops.ts";

/** An engine whose writes settle when the test says. */
class FakeEngine {
  readonly config = { max_batch_bytes: 1 << 20 };
  readonly writes: Array<{ entries: readonly WalEntry[]; settle: (error?: Error) => void }> = [];

  write(entries: readonly WalEntry[]): Promise<WriteResult> {
    return new Promise((resolve, reject) => {
      const settle = (error?: Error) =>
        error ? reject(error) : resolve({ lsn: 1, existed: true, removed: 0 });
      this.writes.push({ entries, settle });
    });
  }
}

function setup() {
  const engine = new FakeEngine();
  let scheduled: Array<() => void> = [];
  const sets = new SetCoalescer(engine as unknown as Engine, (flush) => scheduled.push(flush));
  const endTurn = () => {
    const due = scheduled;
    scheduled = [];
    for (const flush of due) flush();
  };
  const heard: Array<[number, unknown]> = [];
  const waiter = (n: number): SetWaiter => ({ setDone: (failure) => heard.push([n, failure]) });
  const entry = (key: string): WalEntry => setEntry(new TextEncoder().encode(key), new Uint8Array([0xc0]));
  return { engine, sets, endTurn, heard, waiter, entry, pending: () => scheduled.length };
}

const settled = () => new Promise((resolve) => setTimeout(resolve, 0)); // promise callbacks have run

describe("SetCoalescer", () => {
  test("the SETs of one turn are one write, in arrival order; waiters hear after it settles, in order", async () => {
    const t = setup();
    for (let i = 0; i < 5; i++) t.sets.add(t.entry(`k${i}`), t.waiter(i));
    expect(t.pending()).toBe(1); // one flush scheduled for the whole turn
    expect(t.engine.writes.length).toBe(0);
    t.endTurn();
    expect(t.engine.writes.length).toBe(1);
    expect(t.engine.writes[0]!.entries.map((e) => new TextDecoder().decode(e.key))).toEqual([
      "k0",
      "k1",
      "k2",
      "k3",
      "k4",
    ]);
    await settled();
    expect(t.heard).toEqual([]); // not visible yet: nobody answered
    t.engine.writes[0]!.settle();
    await settled();
    expect(t.heard).toEqual([0, 1, 2, 3, 4].map((n) => [n, undefined]));
  });

  test("a failed write fails every SET of its batch with its error, and only that batch", async () => {
    const t = setup();
    t.sets.add(t.entry("a"), t.waiter(1));
    t.sets.add(t.entry("b"), t.waiter(2));
    t.endTurn();
    t.sets.add(t.entry("c"), t.waiter(3));
    t.endTurn();
    const error = new Error("disk full");
    t.engine.writes[0]!.settle(error);
    t.engine.writes[1]!.settle();
    await settled();
    expect(t.heard).toEqual([
      [1, error],
      [2, error],
      [3, undefined],
    ]);
  });

  test("a batch is cut at 1024 SETs, and by flush() (another write must follow the SETs before it)", async () => {
    const t = setup();
    for (let i = 0; i < 1030; i++) t.sets.add(t.entry(`k${i}`), t.waiter(i));
    expect(t.engine.writes.map((w) => w.entries.length)).toEqual([1024]);
    t.sets.flush();
    expect(t.engine.writes.map((w) => w.entries.length)).toEqual([1024, 6]);
    t.endTurn(); // the scheduled flush finds nothing left
    expect(t.engine.writes.length).toBe(2);
    for (const w of t.engine.writes) w.settle();
    await settled();
    expect(t.heard.length).toBe(1030);
    expect(t.heard.every(([n, failure], i) => n === i && failure === undefined)).toBe(true);
  });

  test("a group is one waiter in one batch: the open batch is flushed first when the group would not fit", async () => {
    const t = setup();
    for (let i = 0; i < 1000; i++) t.sets.add(t.entry(`k${i}`), t.waiter(i));
    const group = Array.from({ length: 30 }, (_, i) => t.entry(`g${i}`));
    const size_bytes = group.reduce((sum, e) => sum + entrySizeBytes(e), 0);
    expect(t.sets.fits(group.length, size_bytes)).toBe(true);
    t.sets.addGroup(group, size_bytes, t.waiter(-1));
    // 1000 + 30 would pass 1024 entries: the 1000 went alone, the group opens the next batch.
    expect(t.engine.writes.map((w) => w.entries.length)).toEqual([1000]);
    t.endTurn();
    expect(t.engine.writes.map((w) => w.entries.length)).toEqual([1000, 30]);
    t.engine.writes[0]!.settle();
    t.engine.writes[1]!.settle(new Error("disk full"));
    await settled();
    expect(t.heard.length).toBe(1001); // one answer for the group's 30 SETs
    expect(t.heard.at(-1)).toEqual([-1, new Error("disk full")]);
  });

  test("fits bounds a group by the entry limit and by the record limit; addGroup refuses more", () => {
    const t = setup();
    const entry_bytes = entrySizeBytes(t.entry("k"));
    expect(t.sets.fits(1024, 1024 * entry_bytes)).toBe(true);
    expect(t.sets.fits(1025, 1025 * entry_bytes)).toBe(false);
    expect(t.sets.fits(1, t.engine.config.max_batch_bytes)).toBe(false); // the record header too
    const group = Array.from({ length: 1025 }, (_, i) => t.entry(`g${i}`));
    expect(() => t.sets.addGroup(group, 1025 * entry_bytes, t.waiter(0))).toThrow("larger than one batch");
    expect(t.engine.writes.length).toBe(0);
  });
});
