/**
 * A real crash: a child process (kill9_child.ts) writes with fsync always and concurrent writers; the
 * parent SIGKILLs it after a seeded number of acknowledged writes, and the next child — a new process —
 * recovers the same directory, dumps every key, and goes on writing, to be killed in turn. Each dump is
 * checked against what the killed child acknowledged: every acknowledged write is there with the key's
 * latest acknowledged value or a later one that was in flight at the kill; no MSET is half applied;
 * recovery succeeds, also of data that was itself recovered. A last child only recovers and dumps.
 * Env: WALKV_SEED (default 7311).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { prng, randomInt } from "../../src/engine/io/prng.ts";

const SEED = Number(process.env.WALKV_SEED ?? 7311);
const CYCLES = 6;
const ACKS_MIN = 200;
const ACKS_MAX = 3000;
const BUN = join(import.meta.dir, "../../node_modules/.bin/bun");
const CHILD = join(import.meta.dir, "kill9_child.ts");

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A key's recovered state: the op that wrote it and its version, or null if absent. */
type Dump = Array<{ readonly id: string; readonly lsn: number } | null>;

interface Op {
  readonly op: "set" | "del" | "mset";
  readonly keys: number[];
}

/** What one child did before it died. */
interface CycleLog {
  readonly started: Map<string, Op>;
  readonly acked: Map<string, { readonly lsn: number; readonly existed: boolean }>;
  readonly failed: string[];
}

interface ChildRun {
  readonly recovery: { wal_segments: number; redo_lsn: number; snapshot_entries: number; torn_bytes: number };
  readonly dump: Dump;
  readonly log: CycleLog;
  readonly signal: NodeJS.Signals | null;
  readonly code: number | null;
  readonly stderr: string;
}

/**
 * Runs one child on `dir`. Unless `dump_only`, SIGKILLs it once `kill_after_acks` writes were
 * acknowledged, then still reads every line it printed.
 */
async function runChild(
  dir: string,
  seed: number,
  kill_after_acks: number,
  dump_only: boolean,
): Promise<ChildRun> {
  const child: ChildProcess = spawn(BUN, [CHILD, dir, String(seed), ...(dump_only ? ["dump"] : [])], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.on("exit", (code, signal) => resolve([code, signal])),
  );
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const log: CycleLog = { started: new Map(), acked: new Map(), failed: [] };
  const dump: Dump = [];
  let recovery: ChildRun["recovery"] | undefined;
  for await (const line of createInterface({ input: child.stdout! })) {
    const [tag, a = "", b = "", c = ""] = line.split(" ");
    if (tag === "R") recovery = JSON.parse(line.slice(2));
    else if (tag === "D")
      dump[Number(a)] = b === "-" ? null : { id: b === "BAD" ? `BAD ${c}` : b, lsn: Number(c) };
    else if (tag === "S") log.started.set(a, { op: b as Op["op"], keys: c.split(",").map(Number) });
    else if (tag === "A") {
      log.acked.set(a, { lsn: Number(b), existed: c === "1" });
      if (log.acked.size === kill_after_acks) child.kill("SIGKILL");
    } else if (tag === "F") log.failed.push(line);
  }
  const [code, signal] = await exited;
  if (recovery === undefined)
    throw new Error(`child (seed ${seed}) did not recover: code ${code}, ${stderr}`);
  return { recovery, dump, log, signal, code, stderr };
}

/** Does `op` write `key` with a value (not a delete)? */
const setsKey = (op: Op | undefined, key: number) =>
  op !== undefined && op.op !== "del" && op.keys.includes(key);

/** The acknowledged write of `key` with the highest LSN that changed it (a DEL of an absent key did not). */
function latestAcked(log: CycleLog, key: number): { id: string; lsn: number; op: Op } | undefined {
  let latest: { id: string; lsn: number; op: Op } | undefined;
  for (const [id, ack] of log.acked) {
    const op = log.started.get(id)!;
    if (!op.keys.includes(key) || (op.op === "del" && !ack.existed)) continue;
    if (latest === undefined || ack.lsn > latest.lsn) latest = { id, lsn: ack.lsn, op };
  }
  return latest;
}

/** A DEL of `key` in flight at the kill (started, never acknowledged). */
function delInFlight(log: CycleLog, key: number): boolean {
  for (const [id, op] of log.started)
    if (op.op === "del" && op.keys.includes(key) && !log.acked.has(id)) return true;
  return false;
}

/** One key of the recovered state against the baseline and what the killed child did. */
function checkKey(key: number, before: Dump, log: CycleLog, after: Dump): string | undefined {
  const latest = latestAcked(log, key);
  const got = after[key] ?? null;
  const was = before[key] ?? null;
  const where = `key ${key}: recovered ${got === null ? "absent" : `${got.id}@${got.lsn}`}`;
  if (got === null) {
    if (latest === undefined ? was === null : latest.op.op === "del") return;
    if (delInFlight(log, key)) return;
    return `${where}, but ${latest === undefined ? `${was!.id}@${was!.lsn} (before)` : `${latest.id}@${latest.lsn}`} was acknowledged`;
  }
  if (latest === undefined && was !== null && got.id === was.id && got.lsn === was.lsn) return;
  const op = log.started.get(got.id);
  if (!setsKey(op, key)) return `${where}: not a value any write of this key started`;
  const ack = log.acked.get(got.id);
  if (ack !== undefined && ack.lsn !== got.lsn) return `${where}: acknowledged with LSN ${ack.lsn}`;
  if (ack !== undefined && got.id !== latest!.id) return `${where}: older than ${latest!.id}@${latest!.lsn}`;
  if (ack === undefined && latest !== undefined && got.lsn <= latest.lsn)
    return `${where}: an unacknowledged write older than ${latest.id}@${latest.lsn}`;
}

/** No half MSET: every key of an MSET seen in the dump holds it, a later value, or a later delete. */
function checkMsets(log: CycleLog, after: Dump): string[] {
  const problems: string[] = [];
  for (let key = 0; key < after.length; key++) {
    const got = after[key];
    const mset = got === null || got === undefined ? undefined : log.started.get(got.id);
    if (mset?.op !== "mset") continue;
    for (const other of mset.keys) {
      const o = after[other] ?? null;
      const ok =
        o === null
          ? deletedAfter(log, other, got!.lsn)
          : o.lsn > got!.lsn || (o.id === got!.id && o.lsn === got!.lsn);
      if (!ok)
        problems.push(
          `MSET ${got!.id}@${got!.lsn} half applied: key ${key} has it, key ${other} holds ${o?.id}`,
        );
    }
  }
  return problems;
}

/** A DEL of `key` acknowledged with an LSN above `lsn`, or in flight at the kill. */
function deletedAfter(log: CycleLog, key: number, lsn: number): boolean {
  for (const [id, op] of log.started) {
    if (op.op !== "del" || !op.keys.includes(key)) continue;
    const ack = log.acked.get(id);
    if (ack === undefined || (ack.existed && ack.lsn > lsn)) return true;
  }
  return false;
}

function checkRecovery(before: Dump, log: CycleLog, after: Dump, key_count: number): string[] {
  const problems = log.failed.map((line) => `a write failed: ${line}`);
  const lsns = new Map<number, string>();
  for (const [id, ack] of log.acked) {
    const op = log.started.get(id);
    if (op === undefined) problems.push(`${id} acknowledged but never started`);
    if (op?.op === "del" && !ack.existed) continue;
    if (lsns.has(ack.lsn)) problems.push(`LSN ${ack.lsn} acknowledged to ${lsns.get(ack.lsn)} and ${id}`);
    lsns.set(ack.lsn, id);
  }
  for (let key = 0; key < key_count; key++) {
    const problem = checkKey(key, before, log, after);
    if (problem !== undefined) problems.push(problem);
  }
  return [...problems, ...checkMsets(log, after)];
}

describe("kill -9 and recovery", () => {
  test(`${CYCLES} cycles of write, SIGKILL, recover on one data directory`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "walkv-kill9-"));
    dirs.push(dir);
    const rng = prng(SEED);
    let before: Dump = [];
    let previous: CycleLog = { started: new Map(), acked: new Map(), failed: [] };
    const figures: string[] = [];
    const recoveries: Array<ChildRun["recovery"] & { unacked_values: number }> = [];
    for (let cycle = 0; cycle <= CYCLES; cycle++) {
      const seed = SEED * 100 + cycle;
      const kill_after_acks = ACKS_MIN + randomInt(rng, ACKS_MAX - ACKS_MIN + 1);
      const run = await runChild(dir, seed, kill_after_acks, cycle === CYCLES);
      const context = { seed: SEED, cycle, stderr: run.stderr.slice(0, 2000) };
      const key_count = run.dump.length;
      expect({ ...context, key_count }).toEqual({ ...context, key_count: 16 });
      const problems = checkRecovery(before, previous, run.dump, key_count);
      expect({ ...context, problems }).toEqual({ ...context, problems: [] });
      if (cycle === CYCLES) {
        expect({ ...context, code: run.code }).toEqual({ ...context, code: 0 });
      } else {
        expect({ ...context, signal: run.signal }).toEqual({ ...context, signal: "SIGKILL" });
        const in_flight = run.log.started.size - run.log.acked.size - run.log.failed.length;
        figures.push(
          `cycle ${cycle}: kill at ${kill_after_acks} acks, ${run.log.acked.size} acked, ${in_flight} in flight`,
        );
      }
      const unacked = run.dump.filter((d) => d && previous.started.has(d.id) && !previous.acked.has(d.id));
      recoveries.push({ ...run.recovery, unacked_values: unacked.length });
      before = run.dump;
      previous = run.log;
    }
    console.log(
      `kill9 seed=${SEED}:\n  ${figures.join("\n  ")}\n  recoveries: ${recoveries
        .map(
          (r) =>
            `redo ${r.redo_lsn}, ${r.snapshot_entries} snapshot entries, ${r.wal_segments} segments, ${r.torn_bytes} torn bytes, ${r.unacked_values} keys hold an in-flight write`,
        )
        .join("; ")}`,
    );
    // The runs must have covered what the test claims: checkpoints were taken and recovered from.
    expect(recoveries.some((r) => r.redo_lsn > 0 && r.snapshot_entries > 0)).toBe(true);
  }, 120_000);
});
