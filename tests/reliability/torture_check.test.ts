/**
 * The crash-torture checker (scripts/torture/check.ts) on hand-made histories: it accepts every
 * state a correct crash can leave, and names each kind of violation — a lost acknowledged write, a
 * value no request produced, a half-applied MSET, writes applied out of order.
 */
import { describe, expect, test } from "bun:test";
import { type ConnectionLog, checkCycle, type LoggedOp, writtenValue } from "../../scripts/torture/check.ts";

const set = (id: number, key: number, status: LoggedOp["status"]): LoggedOp => ({
  id,
  kind: "set",
  keys: [key],
  status,
});
const del = (id: number, key: number, status: LoggedOp["status"]): LoggedOp => ({
  id,
  kind: "del",
  keys: [key],
  status,
});
const mset = (id: number, keys: number[], status: LoggedOp["status"]): LoggedOp => ({
  id,
  kind: "mset",
  keys,
  status,
});

/** Keys 0..2, all absent before; one connection. */
function check(ops: LoggedOp[], observed: Array<string | undefined>) {
  const log: ConnectionLog = { ops };
  return checkCycle({ base: [undefined, undefined, undefined], connections: [log], observed });
}

describe("torture checker", () => {
  test("values are unique per write and key, and of varied length", () => {
    expect(writtenValue(1, 0)).not.toBe(writtenValue(1, 1));
    expect(writtenValue(1, 0)).not.toBe(writtenValue(2, 0));
    const lengths = new Set(Array.from({ length: 50 }, (_, i) => writtenValue(i + 1, 0).length));
    expect(lengths.size).toBeGreaterThan(20);
  });

  test("accepts every prefix that holds the acknowledged writes", () => {
    const ops = [set(1, 0, "acked"), mset(2, [0, 1], "pending"), del(3, 1, "pending")];
    const states: Array<Array<string | undefined>> = [
      [writtenValue(1, 0), undefined, undefined],
      [writtenValue(2, 0), writtenValue(2, 1), undefined],
      [writtenValue(2, 0), undefined, undefined],
    ];
    for (const observed of states) {
      const result = check(ops, observed);
      expect(result.violations).toEqual([]);
      expect(result.acked_checked).toBe(1);
      expect(result.in_flight).toBe(2);
    }
    expect(check(ops, states[1]!).in_flight_applied).toBe(1);
  });

  test("a lost acknowledged write is reported and counted", () => {
    const result = check(
      [set(1, 0, "acked"), set(2, 0, "acked")],
      [writtenValue(1, 0), undefined, undefined],
    );
    expect(result.missing_acked).toBe(1);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]).toContain("acknowledged and lost: set #2");
  });

  test("an acknowledged delete undone is a lost write", () => {
    const result = check(
      [set(1, 0, "acked"), del(2, 0, "acked")],
      [writtenValue(1, 0), undefined, undefined],
    );
    expect(result.missing_acked).toBe(1);
  });

  test("a value no request produced is reported", () => {
    const wrong_key = check([set(1, 0, "acked")], [writtenValue(1, 1), undefined, undefined]);
    expect(wrong_key.violations[0]).toContain("which no request of this key produced");
    const refused = check([set(1, 0, "refused")], [writtenValue(1, 0), undefined, undefined]);
    expect(refused.violations.some((v) => v.includes("no request of this key produced"))).toBe(true);
    expect(refused.violations.some((v) => v.includes("was refused"))).toBe(true);
  });

  test("a half-applied MSET is reported", () => {
    const result = check([mset(1, [0, 1], "pending")], [writtenValue(1, 0), undefined, undefined]);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]).toContain("mset #1 [0,1] (pending) half applied");
  });

  test("writes applied out of order are reported", () => {
    const result = check(
      [set(1, 0, "pending"), set(2, 1, "pending")],
      [undefined, writtenValue(2, 1), undefined],
    );
    expect(result.violations).toEqual([
      "client 0: the recovered keys are not the state after any prefix of its requests",
    ]);
  });

  test("the state before the cycle counts as the starting point", () => {
    const before = [writtenValue(9, 0), undefined, undefined];
    const log: ConnectionLog = { ops: [set(10, 0, "pending")] };
    expect(checkCycle({ base: before, connections: [log], observed: before }).violations).toEqual([]);
    const lost = checkCycle({
      base: before,
      connections: [{ ops: [] }],
      observed: [undefined, undefined, undefined],
    });
    expect(lost.violations).toEqual([
      `key 0: no request wrote it, it held "w9/k0|…" (${writtenValue(9, 0).length} chars) and recovered absent`,
    ]);
    expect(lost.missing_acked).toBe(1);
  });
});
