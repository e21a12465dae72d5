/**
 * Fault points (src/engine/crash_points.ts), end to end. For each point a daemon runs with
 * `WALKV_CRASH_AT=<point>` while one client writes (set / del / 3-key mset, each awaited, every
 * acknowledgement recorded) and, for checkpoint points, a second client asks for a checkpoint. The
 * daemon must die by SIGKILL — the point was reached — leaving files that show where it stopped
 * (e.g. `data.db.tmp` but no `data.db`); `verifyDataDir` must find that directory healthy. Then a
 * daemon without the switch must start on it and hold every acknowledged write with its latest
 * acknowledged value (or the one write in flight at the kill), every mset whole, and after a clean
 * stop the directory must verify again. Env: WALKV_SEED (default 4242).
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Subprocess } from "bun";
import {
  CRASH_POINTS,
  type CrashPointName,
  crashSettingFromEnv,
  NOT_KILL_POINTS,
} from "../../src/engine/crash_points.ts";
import { InvalidError } from "../../src/engine/errors.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { RealIo } from "../../src/engine/io/real_io.ts";
import { type VerifyReport, verifyDataDir } from "../../src/engine/verify.ts";
import { Daemon, stopAllDaemons, tempDir } from "../server/daemon.ts";
import { RawClient } from "../server/raw_client.ts";

const SEED = Number(process.env.WALKV_SEED ?? 4242);
const BUN = "node_modules/.bin/bun";
/** Values of about 1 KiB: a 64 KiB segment holds ~60 records, so rotation comes quickly. */
const VALUE_BYTES = 1000;
const SEGMENT_BYTES = 65536;
const SINGLE_KEYS = 12;
const GROUPS = 4;
const GROUP_KEYS = 3;
/** A point not reached within this many writes fails the test instead of writing forever. */
const OPS_MAX = 5000;
/** Acknowledged writes before a checkpoint is requested (spans 2–3 WAL segments). */
const ACKS_BEFORE_CHECKPOINT = 150;
const WAL_CRASH_AFTER = 60;
const ROTATION_CRASH_AFTER = 2;
const START_TIMEOUT_MS = 20_000;

const crashing = new Set<Subprocess>();
afterAll(async () => {
  for (const proc of crashing) proc.kill("SIGKILL");
  await Promise.all([...crashing].map((p) => p.exited));
  await stopAllDaemons();
});

/** What a run at one point needs: the env count, and what triggers the point. */
interface PointPlan {
  readonly after: number;
  readonly checkpoint: boolean;
}

function planOf(point: CrashPointName): PointPlan {
  if (point === "wal-after-write-before-fsync") return { after: WAL_CRASH_AFTER, checkpoint: false };
  if (point === "wal-mid-rotation") return { after: ROTATION_CRASH_AFTER, checkpoint: false };
  return { after: 1, checkpoint: true };
}

function serveArgs(): string[] {
  return [
    ...["--fsync", "always", "--wal-segment-bytes", String(SEGMENT_BYTES), "--checkpoint-interval", "0"],
    ...["--max-key-bytes", "64", "--max-value-bytes", "4096", "--max-batch-bytes", "16384"],
    ...["--max-memory-bytes", String(64 << 20)],
  ];
}

/** Spawns `walkv serve` on `dir` with the fault point armed; resolves once it is ready. */
async function spawnArmed(dir: string, point: CrashPointName, after: number) {
  const env = { ...process.env, WALKV_CRASH_AT: point, WALKV_CRASH_AFTER: String(after) };
  const argv = [BUN, "src/cli/main.ts", "serve", "--data", path.join(dir, "data")];
  argv.push("--socket", path.join(dir, "walkv.sock"), "--workers", "1", ...serveArgs());
  const proc = Bun.spawn(argv, { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  crashing.add(proc);
  const stderr = new Response(proc.stderr).text();
  const reader = proc.stdout.getReader();
  const decoder = new TextDecoder();
  let stdout = "";
  const timer = setTimeout(() => proc.kill("SIGKILL"), START_TIMEOUT_MS);
  while (!stdout.includes("ready")) {
    const { done, value } = await reader.read();
    if (done) throw new Error(`armed daemon exited before ready:\n${stdout}\n${await stderr}`);
    stdout += decoder.decode(value, { stream: true });
  }
  clearTimeout(timer);
  reader.releaseLock();
  void proc.stdout.cancel();
  return { proc, stderr };
}

/** A slot is one single key or one mset group; its value is the id of the op that wrote it. */
type SlotValue = string | null;

class Model {
  readonly acked = new Map<string, SlotValue>();
  in_flight: { slot: string; value: SlotValue } | undefined;
  acks = 0;

  /**
   * Values the slot may hold after the crash. `written_in_flight`: the op in flight at the kill
   * reached the file (the kill came after its write), so it must be replayed.
   */
  allowed(slot: string, written_in_flight: boolean): SlotValue[] {
    if (this.in_flight?.slot !== slot) return [this.acked.get(slot) ?? null];
    if (written_in_flight) return [this.in_flight.value];
    return [this.acked.get(slot) ?? null, this.in_flight.value];
  }
}

function pad(id: string): string {
  return id.padEnd(VALUE_BYTES, ".");
}

function groupKeys(group: number): string[] {
  return Array.from({ length: GROUP_KEYS }, (_, j) => `g${group}.${j}`);
}

/** One random op: its request arguments, the slot it writes and the value the slot then holds. */
function nextOp(rand: () => number, index: number): { args: unknown[]; slot: string; value: SlotValue } {
  const id = `op${index}`;
  const roll = randomInt(rand, 10);
  if (roll < 3) {
    const group = randomInt(rand, GROUPS);
    return { args: ["mset", groupKeys(group).flatMap((k) => [k, pad(id)])], slot: `g${group}`, value: id };
  }
  const key = `k${randomInt(rand, SINGLE_KEYS)}`;
  if (roll < 4) return { args: ["del", key], slot: key, value: null };
  return { args: ["set", key, pad(id)], slot: key, value: id };
}

/** Writes one op at a time until the connection dies; `onAck` runs after each acknowledgement. */
async function writeUntilDeath(client: RawClient, model: Model, seed: number, onAck: () => void) {
  const rand = prng(seed);
  for (let index = 0; index < OPS_MAX; index++) {
    const op = nextOp(rand, index);
    model.in_flight = { slot: op.slot, value: op.value };
    let response: unknown[];
    try {
      response = await client.call(...(op.args as [string, ...unknown[]]));
    } catch {
      return; // the daemon died with this op in flight
    }
    if (response[1] !== 0) throw new Error(`op ${index} answered ${JSON.stringify(response)} (seed ${seed})`);
    model.acked.set(op.slot, op.value);
    model.in_flight = undefined;
    model.acks++;
    onAck();
  }
  throw new Error(`the fault point was not reached within ${OPS_MAX} writes (seed ${seed})`);
}

/** Checks the restarted daemon's contents against the model; returns the number of keys checked. */
async function checkContents(
  daemon: Daemon,
  model: Model,
  written_in_flight: boolean,
  seed: number,
): Promise<number> {
  const client = await daemon.client();
  const singles = Array.from({ length: SINGLE_KEYS }, (_, i) => `k${i}`);
  const groups = Array.from({ length: GROUPS }, (_, g) => groupKeys(g));
  const [, code, values] = await client.call("mget", [...singles, ...groups.flat()]);
  client.close();
  expect(code).toBe(0);
  const got = (values as Array<string | null>).map((v) => (v === null ? null : v.replace(/\.+$/, "")));
  singles.forEach((key, i) => {
    const allowed = model.allowed(key, written_in_flight);
    if (!allowed.includes(got[i] ?? null))
      throw new Error(`${key} = ${got[i]}, expected one of ${allowed.join(" | ")} (seed ${seed})`);
  });
  for (let g = 0; g < GROUPS; g++) {
    const at = SINGLE_KEYS + g * GROUP_KEYS;
    const slot_values = got.slice(at, at + GROUP_KEYS);
    if (new Set(slot_values).size !== 1)
      throw new Error(`half mset in g${g}: ${slot_values.join(", ")} (seed ${seed})`);
    const allowed = model.allowed(`g${g}`, written_in_flight);
    if (!allowed.includes(slot_values[0] ?? null))
      throw new Error(`g${g} = ${slot_values[0]}, expected one of ${allowed.join(" | ")} (seed ${seed})`);
  }
  return got.length;
}

/** Asserts what the files left by the kill show about where the process stopped. */
function checkCrashState(point: CrashPointName, report: VerifyReport, model: Model, data_dir: string): void {
  const tmp_left = fs.existsSync(path.join(data_dir, "data.db.tmp"));
  const segments = report.segments;
  switch (point) {
    case "wal-after-write-before-fsync":
      // One record per batch (each write awaits its ack; a del of an absent key logs nothing):
      // batch N was written, not synced, and its writer was never answered.
      expect(report.totals.records).toBe(WAL_CRASH_AFTER);
      expect(model.in_flight).toBeDefined();
      break;
    case "wal-mid-rotation":
      // The first segment, one finished rotation, and the new segment holding no record yet.
      expect(segments.length).toBe(1 + ROTATION_CRASH_AFTER);
      expect(segments[segments.length - 1]!.records).toBe(0);
      break;
    case "checkpoint-after-tmp-write":
    case "checkpoint-after-tmp-fsync":
      expect(tmp_left).toBe(true);
      expect(report.data_db).toBeUndefined();
      break;
    case "checkpoint-after-rename":
      expect(tmp_left).toBe(false);
      expect(report.data_db).toBeDefined();
      break;
    case "checkpoint-before-wal-deletion":
      expect(report.data_db).toBeDefined();
      expect(segments.some((s) => s.covered)).toBe(true);
      break;
  }
}

describe("WALKV_CRASH_AT parsing", () => {
  test("unset arms nothing; a name and a count are read", () => {
    expect(crashSettingFromEnv({})).toBeUndefined();
    expect(crashSettingFromEnv({ WALKV_CRASH_AT: "" })).toBeUndefined();
    expect(crashSettingFromEnv({ WALKV_CRASH_AT: "wal-mid-rotation" })).toEqual({
      point: "wal-mid-rotation",
      after: 1,
    });
    expect(
      crashSettingFromEnv({ WALKV_CRASH_AT: "checkpoint-after-rename", WALKV_CRASH_AFTER: "7" }),
    ).toEqual({ point: "checkpoint-after-rename", after: 7 });
  });

  test("an unknown name, a bad count or a count alone is an InvalidError", () => {
    expect(() => crashSettingFromEnv({ WALKV_CRASH_AT: "nowhere" })).toThrow(InvalidError);
    for (const after of ["0", "-1", "1.5", "x", "99999999999"]) {
      expect(() =>
        crashSettingFromEnv({ WALKV_CRASH_AT: "wal-mid-rotation", WALKV_CRASH_AFTER: after }),
      ).toThrow(InvalidError);
    }
    expect(() => crashSettingFromEnv({ WALKV_CRASH_AFTER: "3" })).toThrow(InvalidError);
  });

  test("the daemon refuses to start with an unknown point and names the valid ones", async () => {
    const dir = tempDir();
    const argv = [BUN, "src/cli/main.ts", "serve", "--data", path.join(dir, "data")];
    argv.push("--socket", path.join(dir, "walkv.sock"), "--workers", "1");
    const env = { ...process.env, WALKV_CRASH_AT: "wal-nowhere" };
    const proc = Bun.spawn(argv, { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    crashing.add(proc);
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    expect(proc.signalCode).toBeNull();
    expect(code).not.toBe(0);
    for (const point of CRASH_POINTS) expect(stderr).toContain(point);
    expect(fs.existsSync(path.join(dir, "data"))).toBe(false);
  });
});

describe("fault points: kill -9 at the point, then recovery", () => {
  CRASH_POINTS.filter((point) => !NOT_KILL_POINTS.includes(point)).forEach((point, index) => {
    test(point, async () => {
      const seed = SEED + index;
      const dir = tempDir();
      const data_dir = path.join(dir, "data");
      const plan = planOf(point);
      const { proc, stderr } = await spawnArmed(dir, point, plan.after);
      const model = new Model();
      const writer = await RawClient.connect(path.join(dir, "walkv.sock"));
      const trigger = plan.checkpoint ? await RawClient.connect(path.join(dir, "walkv.sock")) : undefined;
      await writeUntilDeath(writer, model, seed, () => {
        if (model.acks === ACKS_BEFORE_CHECKPOINT) trigger?.send([1, "checkpoint"]);
      });
      trigger?.close();
      await proc.exited;
      crashing.delete(proc);
      const context = `seed ${seed}, ${model.acks} acks\n${await stderr}`;
      expect(proc.signalCode, context).toBe("SIGKILL");
      if (plan.checkpoint) expect(model.acks).toBeGreaterThanOrEqual(ACKS_BEFORE_CHECKPOINT);

      const crashed = verifyDataDir(new RealIo(), data_dir);
      expect(crashed.error?.message).toBeUndefined();
      checkCrashState(point, crashed, model, data_dir);

      const daemon = await Daemon.start({ dir, workers: 1, args: serveArgs() });
      const written_in_flight = point === "wal-after-write-before-fsync";
      expect(await checkContents(daemon, model, written_in_flight, seed)).toBe(
        SINGLE_KEYS + GROUPS * GROUP_KEYS,
      );
      expect(await daemon.stop()).toBe(0);
      const after = verifyDataDir(new RealIo(), data_dir);
      expect(after.error?.message).toBeUndefined();
      expect(after.warnings).toEqual([]);
    });
  });
});
