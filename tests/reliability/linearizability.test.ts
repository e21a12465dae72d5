/**
 * Tests of the linearizability checker itself: hand-written histories it must accept and ones it
 * must reject (stale read, lost write, read of a value never written, a wrong `del` result,
 * indeterminate writes, half-observed `mset`), the size limit, and seeded random histories that are
 * linearizable by construction (accepted) and then corrupted (rejected).
 * Env: WALKV_SEED (default 20240620).
 */
import { describe, expect, test } from "bun:test";
import { InvalidError } from "../../src/engine/errors.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import {
  type CheckResult,
  checkAtomicity,
  checkHistory,
  checkPerKey,
  MAX_OPS_PER_SEARCH,
  type Operation,
  type Value,
} from "./linearizability.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240620);

/**
 * Interval: [invoke, complete]; complete null = indeterminate, optionally with a third element, its
 * settled_by (the time by which it took effect if it ever did).
 */
type At = readonly [number, number | null] | readonly [number, null, number];

/** An operation's timing fields from `at`. */
function timing(client: number, at: At) {
  const [invoke, complete, settled_by] = at;
  return settled_by === undefined ? { client, invoke, complete } : { client, invoke, complete, settled_by };
}
function get(client: number, at: At, key: string, result?: Value): Operation {
  return { ...timing(client, at), f: "get", key, result };
}
function set(client: number, at: At, key: string, value: string): Operation {
  return { ...timing(client, at), f: "set", key, value };
}
function del(client: number, at: At, key: string, result?: boolean): Operation {
  return { ...timing(client, at), f: "del", key, result };
}
function mset(client: number, at: At, pairs: Array<[string, string]>): Operation {
  return { ...timing(client, at), f: "mset", pairs };
}
function mget(client: number, at: At, keys: string[], result?: Value[]): Operation {
  return { ...timing(client, at), f: "mget", keys, result };
}

function expectRejected(verdict: CheckResult, key: string, pattern: RegExp): void {
  if (verdict.ok) throw new Error(`expected a violation on ${key}, got ok`);
  expect(verdict.key).toBe(key);
  expect(verdict.explanation).toMatch(pattern);
}

describe("linearizable histories are accepted", () => {
  test("sequential set, get, del, get, del", () => {
    const h = [
      set(0, [0, 1], "k", "a"),
      get(0, [2, 3], "k", "a"),
      del(0, [4, 5], "k", true),
      get(0, [6, 7], "k", null),
      del(0, [8, 9], "k", false),
    ];
    expect(checkHistory(h)).toEqual({ ok: true });
  });

  test("a read concurrent with a write may see the old or the new value", () => {
    for (const seen of [null, "a"]) {
      const h = [set(0, [0, 10], "k", "a"), get(1, [2, 5], "k", seen), get(1, [11, 12], "k", "a")];
      expect(checkHistory(h)).toEqual({ ok: true });
    }
  });

  test("concurrent writes may take effect in either order, if reads agree on one", () => {
    const h = [
      set(0, [0, 10], "k", "a"),
      set(1, [1, 9], "k", "b"),
      get(2, [11, 12], "k", "a"),
      get(3, [13, 14], "k", "a"),
    ];
    expect(checkHistory(h)).toEqual({ ok: true });
  });

  test("an indeterminate write may never take effect", () => {
    const h = [set(0, [0, null], "k", "x"), get(1, [5, 6], "k", null), get(1, [20, 21], "k", null)];
    expect(checkHistory(h)).toEqual({ ok: true });
  });

  test("many writes lost in flight, as at a crash, check at once (unobserved ones are dropped)", () => {
    // 20 msets over a 5-key group that never completed and that no read saw, around 150 completed
    // operations: each could be placed after any of them, far more (linearized set, state) pairs
    // than a search may hold (the daemon's crash test once ran out of them this way).
    const keys = ["a", "b", "c", "d", "e"];
    const h: Operation[] = [];
    for (let i = 0; i < 20; i++)
      h.push(
        mset(
          10 + i,
          [i, null],
          [
            [keys[i % 5]!, `lost${i}`],
            [keys[(i + 1) % 5]!, `lost${i}`],
          ],
        ),
      );
    let t = 100;
    for (let i = 0; i < 75; i++) {
      const key = keys[i % 5]!;
      h.push(
        set(0, [t, t + 1], key, `v${i}`),
        mget(0, [t + 2, t + 3], [key, keys[(i + 2) % 5]!], [`v${i}`, i >= 3 ? `v${i - 3}` : null]),
      );
      t += 4;
    }
    expect(checkHistory(h)).toEqual({ ok: true });
    // One of them seen by a read is kept, and must then fit: seen on one key but not the other
    // (b was last set to v71), half of it, it fails.
    const seen = [...h, mget(0, [t, t + 1], ["a", "b"], ["lost0", "v71"])];
    expect(checkHistory(seen).ok).toBe(false);
  });

  test("an indeterminate write may take effect long after its invoke", () => {
    const h = [set(0, [0, null], "k", "x"), get(1, [5, 6], "k", null), get(1, [100, 101], "k", "x")];
    expect(checkHistory(h)).toEqual({ ok: true });
  });

  test("an indeterminate write with a settle time took effect by then, or never", () => {
    // In flight at a kill (invoke 0), the restart at 10: seen before it, after it, or never.
    for (const [early, late] of [
      ["x", "x"],
      [null, "x"],
      [null, null],
    ] as const) {
      const h = [
        set(0, [0, null, 10], "k", "x"),
        get(1, [5, 6], "k", early),
        get(1, [11, 12], "k", late),
        get(1, [13, 14], "k", late),
      ];
      expect(checkHistory(h)).toEqual({ ok: true });
    }
    // Skipped, a later completed write wins, as it must.
    const h = [set(0, [0, null, 10], "k", "x"), set(1, [11, 12], "k", "y"), get(1, [13, 14], "k", "y")];
    expect(checkHistory(h)).toEqual({ ok: true });
    // Both skipped: "apply the first, skip the second" is reached first, so "skip both" is found by
    // skipping the second where applying it meets a configuration seen before.
    const both = [set(0, [0, null, 2], "k", "w"), set(1, [3, null, 4], "k", "w"), del(2, [5, 6], "k", false)];
    expect(checkHistory(both)).toEqual({ ok: true });
  });

  test("an indeterminate del may return either; an indeterminate read constrains nothing", () => {
    const h = [
      set(0, [0, 1], "k", "a"),
      del(1, [2, null], "k"),
      get(2, [3, null], "k"),
      get(3, [4, 5], "k", "a"),
      get(3, [6, 7], "k", null),
    ];
    expect(checkHistory(h)).toEqual({ ok: true });
  });

  test("an mget concurrent with an mset sees all of it or none of it", () => {
    for (const seen of [
      [null, null],
      ["m", "m"],
    ]) {
      const h = [
        mset(
          0,
          [0, 10],
          [
            ["a", "m"],
            ["b", "m"],
          ],
        ),
        mget(1, [1, 9], ["a", "b"], seen),
      ];
      expect(checkHistory(h)).toEqual({ ok: true });
    }
  });

  test("an mset partly overwritten later is read consistently", () => {
    const h = [
      mset(
        0,
        [0, 1],
        [
          ["a", "m"],
          ["b", "m"],
        ],
      ),
      set(1, [2, 10], "b", "s"),
      mget(2, [3, 4], ["a", "b"], ["m", "s"]), // the set took effect before this mget
      mget(2, [5, 6], ["a", "b"], ["m", "s"]),
    ];
    expect(checkHistory(h)).toEqual({ ok: true });
  });
});

describe("non-linearizable histories are rejected", () => {
  test("stale read after a completed write", () => {
    const h = [set(0, [0, 1], "k", "a"), set(0, [2, 3], "k", "b"), get(1, [4, 5], "k", "a")];
    expectRejected(checkPerKey(h), "k", /#2 c1 get\(k\) → "a" \[4\.\.5\]: k holds "b", read "a"/);
  });

  test("lost write: a completed write then nil with no del", () => {
    const h = [set(0, [0, 1], "k", "a"), get(1, [2, 3], "k", null)];
    expectRejected(checkHistory(h), "k", /k holds "a", read nil/);
  });

  test("lost update: reads disagree on the order of two writes", () => {
    const h = [
      set(0, [0, 10], "k", "a"),
      set(1, [0, 10], "k", "b"),
      get(2, [11, 12], "k", "a"),
      get(2, [13, 14], "k", "b"),
    ];
    expectRejected(checkHistory(h), "k", /no linearization of 4 operations on key k/);
  });

  test("read of a value never written", () => {
    const h = [set(0, [0, 1], "k", "a"), get(1, [0, 5], "k", "zzz")];
    expectRejected(checkHistory(h), "k", /read "zzz"/);
  });

  test("a del reporting false while the key surely existed", () => {
    const h = [set(0, [0, 1], "k", "a"), del(1, [2, 3], "k", false)];
    expectRejected(checkHistory(h), "k", /del returned false/);
  });

  test("a del reporting true on a key that never held a value", () => {
    expectRejected(checkHistory([del(0, [0, 1], "k", true)]), "k", /k holds nil, del returned true/);
  });

  test("a read that sees a write before it was invoked", () => {
    const h = [get(0, [0, 1], "k", "a"), set(1, [2, 3], "k", "a")];
    expectRejected(checkHistory(h), "k", /read "a"/);
  });

  test("an indeterminate write that appears after its settle time (a write resurrected)", () => {
    // Absent after the restart at 10, then present: no point by 10 explains both reads.
    const late = [set(0, [0, null, 10], "k", "x"), get(1, [11, 12], "k", null), get(1, [20, 21], "k", "x")];
    expectRejected(checkHistory(late), "k", /k holds nil, read "x"/);
    // The counter-example says which placed operation took no effect.
    expectRejected(
      checkHistory(late),
      "k",
      /set\(k, "x"\) \[0\.\.\? settled by 10\] \(placed with no effect\)/,
    );
    // Over a completed write after the restart: it must come after the lost one.
    const over = [set(0, [0, null, 10], "k", "x"), set(1, [11, 12], "k", "y"), get(1, [13, 14], "k", "x")];
    expectRejected(checkHistory(over), "k", /k holds "y", read "x"/);
    // Without a settle time the same histories are linearizable (it may take effect at any time).
    const unbounded = (h: Operation[]) =>
      h.map((op) => (op.complete === null ? { ...op, settled_by: undefined } : op));
    expect(checkHistory(unbounded(late))).toEqual({ ok: true });
    expect(checkHistory(unbounded(over))).toEqual({ ok: true });
  });

  test("an indeterminate del with a settle time: done by then, or never", () => {
    const h = (after: Value, later: Value) => [
      set(0, [0, 1], "k", "a"),
      del(1, [2, null, 10], "k"),
      get(2, [11, 12], "k", after),
      get(2, [13, 14], "k", later),
    ];
    expect(checkHistory(h("a", "a"))).toEqual({ ok: true });
    expect(checkHistory(h(null, null))).toEqual({ ok: true });
    expect(checkHistory(h(null, "a")).ok).toBe(false);
  });

  test("an indeterminate mset with a settle time is all or nothing", () => {
    const lost = mset(
      0,
      [0, null, 10],
      [
        ["a", "x"],
        ["b", "x"],
      ],
    );
    expect(checkHistory([lost, mget(1, [11, 12], ["a", "b"], ["x", "x"])])).toEqual({ ok: true });
    expect(checkHistory([lost, mget(1, [11, 12], ["a", "b"], [null, null])])).toEqual({ ok: true });
    expect(checkHistory([lost, mget(1, [11, 12], ["a", "b"], ["x", null])]).ok).toBe(false);
  });

  test("an indeterminate write that appears, then vanishes with no del", () => {
    const h = [set(0, [0, null], "k", "x"), get(1, [5, 6], "k", "x"), get(1, [7, 8], "k", null)];
    expectRejected(checkHistory(h), "k", /no linearization/);
  });

  test("a read of an indeterminate write's value before its invoke", () => {
    const h = [get(1, [0, 1], "k", "x"), set(0, [2, null], "k", "x")];
    expectRejected(checkHistory(h), "k", /read "x"/);
  });

  test("the first failing key is reported, keys checked independently", () => {
    const h = [
      set(0, [0, 1], "a", "1"),
      get(0, [2, 3], "a", "1"),
      set(1, [0, 1], "b", "2"),
      get(1, [2, 3], "b", null),
    ];
    expectRejected(checkHistory(h), "b", /b holds "2", read nil/);
  });
});

describe("mset atomicity", () => {
  test("an mget seeing half an mset passes per key and fails atomicity", () => {
    const h = [
      set(0, [0, 1], "b", "old"),
      mset(
        1,
        [2, 20],
        [
          ["a", "m"],
          ["b", "m"],
        ],
      ),
      mget(2, [3, 4], ["a", "b"], ["m", "old"]),
    ];
    expect(checkPerKey(h)).toEqual({ ok: true });
    expectRejected(checkAtomicity(h), "a b", /mget\(a, b\) → \["m", "old"\]/);
  });

  test("two sequential gets seeing half an mset fail atomicity", () => {
    const h = [
      mset(
        0,
        [0, 20],
        [
          ["a", "m"],
          ["b", "m"],
        ],
      ),
      get(1, [1, 2], "a", "m"),
      get(1, [3, 4], "b", null), // the mset took effect before the first get ended
    ];
    expect(checkPerKey(h)).toEqual({ ok: true });
    expectRejected(checkHistory(h), "a b", /no linearization/);
  });

  test("an mget that is no snapshot fails atomicity", () => {
    const h = [
      set(0, [0, 10], "a", "1"),
      set(1, [0, 10], "b", "2"),
      mget(2, [0, 10], ["a", "b"], ["1", null]),
      mget(3, [0, 10], ["a", "b"], [null, "2"]),
    ];
    expect(checkPerKey(h)).toEqual({ ok: true });
    expectRejected(checkAtomicity(h), "a b", /no linearization/);
  });

  test("an indeterminate mset is all or nothing", () => {
    const pairs: Array<[string, string]> = [
      ["a", "m"],
      ["b", "m"],
    ];
    const all = [
      mset(0, [0, null], pairs),
      mget(1, [5, 6], ["a", "b"], [null, null]),
      mget(1, [7, 8], ["a", "b"], ["m", "m"]),
    ];
    expect(checkHistory(all)).toEqual({ ok: true });
    const half = [mset(0, [0, null], pairs), get(1, [5, 6], "a", "m"), get(1, [7, 8], "b", null)];
    expect(checkPerKey(half)).toEqual({ ok: true });
    expectRejected(checkHistory(half), "a b", /no linearization/);
  });

  test("unrelated key groups are checked apart", () => {
    const h = [
      mset(
        0,
        [0, 1],
        [
          ["a", "1"],
          ["b", "1"],
        ],
      ),
      mset(
        0,
        [2, 3],
        [
          ["c", "2"],
          ["d", "2"],
        ],
      ),
    ];
    h.push(mget(1, [4, 5], ["c", "d"], ["2", null]));
    expectRejected(checkAtomicity(h), "c d", /d holds "2", read nil/);
  });
});

describe("limits and malformed histories", () => {
  test(`a key with more than ${MAX_OPS_PER_SEARCH} operations is refused with a clear error`, () => {
    const h: Operation[] = [];
    for (let i = 0; i <= MAX_OPS_PER_SEARCH; i++) h.push(set(0, [2 * i, 2 * i + 1], "k", `v${i}`));
    expect(() => checkPerKey(h)).toThrow(InvalidError);
    expect(() => checkPerKey(h)).toThrow(
      /key k has 201 operations; the checker takes at most 200 per search/,
    );
    expect(checkPerKey(h.slice(1))).toEqual({ ok: true });
  });

  test("malformed operations are refused", () => {
    expect(() => checkHistory([get(0, [0, 1], "k")])).toThrow(/completed without result/);
    expect(() => checkHistory([get(0, [0, null], "k", "a")])).toThrow(/indeterminate with a result/);
    expect(() => checkHistory([set(0, [5, null, 4], "k", "a")])).toThrow(
      /settled_by must be a finite time ≥ invoke/,
    );
    expect(() => checkHistory([set(0, [5, null, Number.POSITIVE_INFINITY], "k", "a")])).toThrow(
      /finite time/,
    );
    expect(() => checkHistory([{ ...set(0, [5, 6], "k", "a"), settled_by: 7 }])).toThrow(
      /settled_by is for indeterminate operations only/,
    );
    expect(() => checkHistory([set(0, [5, 1], "k", "a")])).toThrow(/complete must be a time ≥ invoke/);
    expect(() => checkHistory([mget(0, [0, 1], ["a", "b"], ["x"])])).toThrow(/one value per key/);
    expect(() =>
      checkHistory([
        mset(
          0,
          [0, 1],
          [
            ["a", "x"],
            ["a", "y"],
          ],
        ),
      ]),
    ).toThrow(/distinct/);
  });
});

/** A random history that is linearizable by construction: each op takes effect at a point in its interval. */
function randomHistory(
  rng: () => number,
  clients: number,
  ops_per_client: number,
  keys: string[],
): Operation[] {
  interface Planned {
    readonly client: number;
    readonly invoke: number;
    readonly point: number;
    readonly complete: number | null;
    /** Indeterminate: undefined, or a time ≥ point (≥ invoke if it never takes effect). */
    readonly settled_by: number | undefined;
    readonly takes_effect: boolean;
    readonly kind: number;
    readonly keys: string[];
    readonly value: string;
  }
  const planned: Planned[] = [];
  let value_id = 0;
  for (let client = 0; client < clients; client++) {
    let t = randomInt(rng, 10);
    for (let i = 0; i < ops_per_client; i++) {
      const invoke = t + randomInt(rng, 5);
      const point = invoke + randomInt(rng, 20);
      const indeterminate = rng() < 0.05;
      const complete = indeterminate ? null : point + randomInt(rng, 20);
      const settled_by = indeterminate && rng() < 0.5 ? point + randomInt(rng, 20) : undefined;
      const shuffled = [...keys].sort(() => rng() - 0.5);
      const kind = randomInt(rng, 5);
      const n = kind >= 3 && keys.length > 1 ? 2 + randomInt(rng, keys.length - 1) : 1;
      planned.push({
        client,
        invoke,
        point,
        complete,
        settled_by,
        takes_effect: !indeterminate || rng() < 0.5,
        kind,
        keys: shuffled.slice(0, n),
        value: `v${value_id++}`,
      });
      t = complete ?? point + 1;
    }
  }
  const state = new Map<string, string>();
  const results = new Map<Planned, Operation>();
  for (const p of [...planned].sort((a, b) => a.point - b.point)) {
    const at: At = p.settled_by === undefined ? [p.invoke, p.complete] : [p.invoke, null, p.settled_by];
    const key = p.keys[0]!;
    const done = p.complete !== null;
    let op: Operation;
    switch (p.kind) {
      case 0:
        op = get(p.client, at, key, done ? (state.get(key) ?? null) : undefined);
        break;
      case 1:
        op = set(p.client, at, key, p.value);
        if (p.takes_effect) state.set(key, p.value);
        break;
      case 2:
        op = del(p.client, at, key, done ? state.has(key) : undefined);
        if (p.takes_effect) state.delete(key);
        break;
      case 3:
        op = mset(
          p.client,
          at,
          p.keys.map((k) => [k, p.value]),
        );
        if (p.takes_effect) for (const k of p.keys) state.set(k, p.value);
        break;
      default:
        op = mget(p.client, at, p.keys, done ? p.keys.map((k) => state.get(k) ?? null) : undefined);
    }
    results.set(p, op);
  }
  return planned.map((p) => results.get(p)!);
}

/** A small history with random intervals and random (mostly wrong) results, values from a tiny pool. */
function randomSmallHistory(rng: () => number, n: number): Operation[] {
  const keys = ["a", "b"];
  const values = ["x", "y"];
  const pick = <T>(list: readonly T[]): T => list[randomInt(rng, list.length)]!;
  const read = (): Value => pick([null, ...values]);
  const h: Operation[] = [];
  for (let i = 0; i < n; i++) {
    const invoke = randomInt(rng, 10);
    const dice = rng();
    const at: At =
      dice < 0.08
        ? [invoke, null]
        : dice < 0.16
          ? [invoke, null, invoke + randomInt(rng, 6)]
          : [invoke, invoke + randomInt(rng, 6)];
    const done = at[1] !== null;
    const key = pick(keys);
    const op = [
      () => get(i, at, key, done ? read() : undefined),
      () => set(i, at, key, pick(values)),
      () => del(i, at, key, done ? rng() < 0.5 : undefined),
      () =>
        mset(i, at, [
          ["a", pick(values)],
          ["b", pick(values)],
        ]),
      () => mget(i, at, keys, done ? [read(), read()] : undefined),
    ][randomInt(rng, 5)]!;
    h.push(op());
  }
  return h;
}

/**
 * Exhaustive reference: some order of all operations respects real time and the sequential model.
 * An indeterminate write ends at its settled_by (or never) and is tried both with its effects and
 * with none.
 */
function bruteForceLinearizable(h: readonly Operation[]): boolean {
  const ops = h.filter((op) => op.complete !== null || op.f === "set" || op.f === "del" || op.f === "mset");
  const end = (op: Operation) => op.complete ?? op.settled_by ?? Number.POSITIVE_INFINITY;
  const step = (state: Map<string, string>, op: Operation): boolean => {
    const known = op.complete !== null;
    switch (op.f) {
      case "get":
        return (state.get(op.key) ?? null) === op.result;
      case "set":
        state.set(op.key, op.value);
        return true;
      case "del": {
        const existed = state.delete(op.key);
        return !known || existed === op.result;
      }
      case "mset":
        for (const [k, v] of op.pairs) state.set(k, v);
        return true;
      case "mget":
        return op.keys.every((k, i) => (state.get(k) ?? null) === op.result![i]);
    }
  };
  const extend = (placed: number[], state: Map<string, string>): boolean => {
    if (placed.length === ops.length) return true;
    for (let i = 0; i < ops.length; i++) {
      if (placed.includes(i)) continue;
      const op = ops[i]!;
      // Every unplaced operation that returned before this one was invoked must come first.
      if (ops.some((other, j) => j !== i && !placed.includes(j) && end(other) < op.invoke)) continue;
      const next = new Map(state);
      if (step(next, op) && extend([...placed, i], next)) return true;
      if (op.complete === null && extend([...placed, i], state)) return true; // took no effect
    }
    return false;
  };
  return extend([], new Map());
}

describe(`random histories (seed ${SEED})`, () => {
  test("linearizable by construction: accepted; one read corrupted: rejected", () => {
    const rng = prng(SEED);
    for (let round = 0; round < 200; round++) {
      const h = randomHistory(rng, 2 + randomInt(rng, 7), 4 + randomInt(rng, 10), ["a", "b", "c"]);
      const verdict = checkHistory(h);
      if (!verdict.ok) throw new Error(`seed ${SEED} round ${round}: ${verdict.key}\n${verdict.explanation}`);
      const reads = h.flatMap((op, i) => (op.complete !== null && op.f === "get" ? [i] : []));
      if (reads.length === 0) continue;
      const victim = reads[randomInt(rng, reads.length)]!;
      const bad = h.map((op, i) =>
        i === victim && op.f === "get" ? { ...op, result: "never-written" } : op,
      );
      const rejected = checkPerKey(bad);
      expect(rejected.ok, `seed ${SEED} round ${round}: corrupted read #${victim} accepted`).toBe(false);
    }
  });

  test("small random histories: the checker agrees with an exhaustive search", () => {
    const rng = prng(SEED ^ 0xa5);
    let accepted = 0;
    for (let round = 0; round < 1500; round++) {
      const h = randomSmallHistory(rng, 1 + randomInt(rng, 6));
      const want = bruteForceLinearizable(h);
      const got = checkHistory(h).ok;
      if (got !== want) {
        throw new Error(
          `seed ${SEED} round ${round}: checker ${got}, exhaustive ${want}\n${JSON.stringify(h)}`,
        );
      }
      if (got) accepted++;
    }
    expect(accepted).toBeGreaterThan(100); // both verdicts were exercised
    expect(accepted).toBeLessThan(1400);
  });

  test(`${MAX_OPS_PER_SEARCH} operations of 8 clients on one key check quickly`, () => {
    const rng = prng(SEED ^ 0x55);
    const h = randomHistory(rng, 8, MAX_OPS_PER_SEARCH / 8, ["k"]);
    const started_ms = performance.now();
    expect(checkHistory(h)).toEqual({ ok: true });
    expect(performance.now() - started_ms).toBeLessThan(5_000);
  });
});
