import { describe, expect, test } from "bun:test";
import { TurnEnd, turn_end } from "../../src/engine/turn_end.ts";

/** A TurnEnd whose end of turn the test runs by hand: `ends` holds the drains scheduled. */
function manual() {
  const ends: Array<() => void> = [];
  return { turn: new TurnEnd((callback) => ends.push(callback)), ends };
}

describe("TurnEnd", () => {
  test("tasks run at the end of the turn, in order, from one scheduled drain", () => {
    const { turn, ends } = manual();
    const ran: string[] = [];
    turn.run(() => ran.push("a"));
    turn.run(() => ran.push("b"));
    expect(ran).toEqual([]);
    expect(ends.length).toBe(1);
    ends.shift()!();
    expect(ran).toEqual(["a", "b"]);
    expect(ends.length).toBe(0);
  });

  test("a task queued by a task joins the same pass; last tasks run after every other, whenever queued", () => {
    const { turn, ends } = manual();
    const ran: string[] = [];
    turn.last(() => {
      ran.push("last");
      turn.run(() => ran.push("queued by last"));
    });
    turn.run(() => {
      ran.push("a");
      turn.run(() => ran.push("queued by a"));
    });
    ends.shift()!();
    expect(ran).toEqual(["a", "queued by a", "last", "queued by last"]);
    expect(ends.length).toBe(0);
  });

  test("a task that keeps queuing itself yields to the event loop after 1000 passes", () => {
    const { turn, ends } = manual();
    let runs = 0;
    const again = () => {
      runs++;
      turn.run(again);
    };
    turn.run(again);
    ends.shift()!();
    expect(runs).toBe(1000);
    expect(ends.length).toBe(1);
  });

  test("a task that throws ends the pass: the error surfaces and the rest run at the next end of turn", () => {
    const { turn, ends } = manual();
    const ran: string[] = [];
    turn.run(() => ran.push("a"));
    turn.run(() => {
      throw new Error("boom");
    });
    turn.run(() => ran.push("c"));
    turn.last(() => ran.push("last"));
    expect(() => ends.shift()!()).toThrow("boom");
    expect(ran).toEqual(["a"]);
    expect(ends.length).toBe(1);
    ends.shift()!();
    expect(ran).toEqual(["a", "c", "last"]);
  });

  test("the thread's TurnEnd runs its tasks before an immediate queued after them, and a task queued meanwhile before the next turn's", async () => {
    const ran: string[] = [];
    const done = new Promise<void>((resolve) => {
      turn_end.run(() => {
        ran.push("task");
        setImmediate(() => {
          ran.push("next turn");
          resolve();
        });
        turn_end.last(() => ran.push("last, same pass"));
      });
      setImmediate(() => ran.push("immediate queued after"));
    });
    await done;
    expect(ran).toEqual(["task", "last, same pass", "immediate queued after", "next turn"]);
  });
});
