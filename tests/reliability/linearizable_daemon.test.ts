/**
 * Linearizability of the real daemon (`walkv serve`, in each of {@link ARRANGEMENTS}: I/O workers
 * and fsync mode), checked with linearizability.ts on recorded histories.
 *
 * - 8 clients, each with its own connection (src/client `connect`, no reconnect) and one operation
 *   in flight at a time, run random get/set/del/mset/mget. Every written value is unique
 *   (`c<client>.<n>`; an mset writes one value to all its keys).
 * - Keys come in epochs of 5 (`e<epoch>.k<i>`): every {@link OPS_PER_EPOCH} operations (up to
 *   {@link OPS_AFTER_RESTART} more around a kill) move to fresh keys, so each key, and each epoch's
 *   key group, stays under the checker's bound.
 * - Times are one logical clock shared by the clients (one process, one thread): the invoke tick
 *   is taken before the request is sent, the complete tick after its response arrived, so each
 *   interval contains the moment the daemon executed the operation.
 * - The crash test SIGKILLs the daemon after a seeded number of completed operations; operations
 *   in flight become indeterminate, settled by the restart (the daemon that received them is gone:
 *   recovery kept each or not, and nothing later may apply it); the daemon restarts on the same data
 *   directory and the clients go on with new connections, on the same epoch's keys. With fsync
 *   always, a write acknowledged before the kill that is lost, an mset half recovered, or a write
 *   lost at the kill that shows up later (after new writes to its keys) makes the history
 *   non-linearizable.
 * - At the end one more client mgets every epoch's keys (also after the crash: every epoch is read
 *   back after recovery).
 * Env: WALKV_SEED (default 20240621), WALKV_LIN_MS (client run time, default 1500).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type Client, ConnectionError, connect } from "../../src/client/index.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { Daemon, type StartOptions, stopAllDaemons, tempDir } from "../server/daemon.ts";
import { testSeed } from "../server/raw_client.ts";
import { checkHistory, keysOf, MAX_OPS_PER_SEARCH, type Operation, type Value } from "./linearizability.ts";

const SEED = testSeed(20240621);
const RUN_MS = Number(process.env.WALKV_LIN_MS ?? 1500);
const CLIENTS = 8;
const KEYS_PER_EPOCH = 5;
/** Operations per epoch; +1 for the final read of each key stays within the checker's bound. */
const OPS_PER_EPOCH = 150;
/**
 * The daemon's arrangements, each tested: with two I/O workers (node:net sockets, a WAL writer
 * thread); with one (Bun's own sockets), as on a 2-core machine by default; and with one that writes
 * the WAL itself (fsync everysec: a kill -9 keeps what was written, so nothing acknowledged may go).
 */
const ARRANGEMENTS: ReadonlyArray<{ readonly name: string; readonly start: StartOptions }> = [
  { name: "2 I/O workers, fsync always", start: { workers: 2, args: ["--fsync", "always"] } },
  { name: "1 I/O worker, fsync always", start: { workers: 1, args: ["--fsync", "always"] } },
  {
    name: "1 I/O worker writing the WAL, fsync everysec",
    start: { workers: 1, args: ["--fsync", "everysec"] },
  },
];
/** SIGKILLs in the crash test. */
const CRASHES = 2;
/**
 * After a restart the epoch of the kill goes on for at least this many operations (so its epoch may
 * hold up to OPS_PER_EPOCH + this): the clients' new operations meet the keys that writes lost in
 * flight touched, and a write that recovery dropped must stay dropped under them.
 */
const OPS_AFTER_RESTART = 40;
const TEST_TIMEOUT_MS = 30_000 + 2 * RUN_MS;

afterAll(stopAllDaemons);

type Call =
  | { readonly f: "get"; readonly key: string }
  | { readonly f: "set"; readonly key: string; readonly value: string }
  | { readonly f: "del"; readonly key: string }
  | { readonly f: "mset"; readonly pairs: Array<[string, string]> }
  | { readonly f: "mget"; readonly keys: string[] };

type Result = Value | boolean | Value[] | undefined;

/** One history: a logical clock, the operations, and epochs of fresh keys. */
class Recorder {
  readonly ops: Operation[] = [];
  private clock = 0;
  private issued = 0;
  private epoch = 0;
  private epoch_start = 0;
  /** The number of operations issued at which the current epoch ends. */
  private epoch_end = OPS_PER_EPOCH;

  tick(): number {
    return ++this.clock;
  }

  /** The epoch of the next operation: every OPS_PER_EPOCH operations use fresh keys. */
  nextEpoch(): number {
    if (this.issued >= this.epoch_end) {
      this.epoch++;
      this.epoch_start = this.issued;
      this.epoch_end = this.issued + OPS_PER_EPOCH;
    }
    this.issued++;
    return this.epoch;
  }

  /** Makes the current epoch go on for `ops` more operations, within OPS_PER_EPOCH + OPS_AFTER_RESTART. */
  extendEpoch(ops: number): void {
    const limit = this.epoch_start + OPS_PER_EPOCH + OPS_AFTER_RESTART;
    this.epoch_end = Math.max(this.epoch_end, Math.min(this.issued + ops, limit));
  }

  get epochs(): number {
    return this.issued === 0 ? 0 : this.epoch + 1;
  }

  /** `settled_by`: for an operation in flight at a kill, the tick of the restart that followed. */
  record(
    call: Call,
    client: number,
    invoke: number,
    complete: number | null,
    result: Result,
    settled_by?: number,
  ): void {
    const t =
      settled_by === undefined ? { client, invoke, complete } : { client, invoke, complete, settled_by };
    switch (call.f) {
      case "get":
        this.ops.push({ ...t, ...call, result: result as Value | undefined });
        break;
      case "del":
        this.ops.push({ ...t, ...call, result: result as boolean | undefined });
        break;
      case "mget":
        this.ops.push({ ...t, ...call, result: result as Value[] | undefined });
        break;
      default:
        this.ops.push({ ...t, ...call });
    }
  }
}

function keyOf(epoch: number, i: number): string {
  return `e${epoch}.k${i}`;
}

/** `n` distinct keys of `epoch`, in random order. */
function pickKeys(rng: () => number, epoch: number, n: number): string[] {
  const all = Array.from({ length: KEYS_PER_EPOCH }, (_, i) => keyOf(epoch, i));
  for (let i = all.length - 1; i > 0; i--) {
    const j = randomInt(rng, i + 1);
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, n);
}

/** A random call: get 25%, set 25%, del 10%, mset 15% (2–3 keys), mget 25% (2–5 keys). */
function planCall(rng: () => number, epoch: number, value: string): Call {
  const dice = randomInt(rng, 100);
  const [key] = pickKeys(rng, epoch, 1) as [string];
  if (dice < 25) return { f: "get", key };
  if (dice < 50) return { f: "set", key, value };
  if (dice < 60) return { f: "del", key };
  if (dice < 75)
    return { f: "mset", pairs: pickKeys(rng, epoch, 2 + randomInt(rng, 2)).map((k) => [k, value]) };
  return { f: "mget", keys: pickKeys(rng, epoch, 2 + randomInt(rng, KEYS_PER_EPOCH - 1)) };
}

async function perform(client: Client, call: Call): Promise<Result> {
  switch (call.f) {
    case "get":
      return (await client.get<string>(call.key)) ?? null;
    case "set":
      await client.set(call.key, call.value);
      return undefined;
    case "del":
      return await client.del(call.key);
    case "mset":
      await client.mset(call.pairs);
      return undefined;
    case "mget":
      return (await client.mget<string>(call.keys)).map((v) => v ?? null);
  }
}

/** A run of the clients against one daemon, with SIGKILL + restart after each seeded number of ops. */
class Run {
  readonly recorder = new Recorder();
  daemon: Daemon;
  /** Set when a crash starts; resolves once the daemon is ready again. */
  restarted: Promise<void> | undefined;
  /** Clock ticks of the kills and of the restarts. */
  readonly kill_ticks: number[] = [];
  readonly restart_ticks: number[] = [];
  private completed_since_start = 0;
  private crashing = false;
  private deadline_ms: number;

  /**
   * `crash_after_ops[i]`: completed operations from the (re)start to the i-th kill; `start`: how
   * the daemon is restarted (its arrangement).
   */
  constructor(
    daemon: Daemon,
    private readonly crash_after_ops: readonly number[],
    private readonly start: StartOptions,
  ) {
    this.daemon = daemon;
    this.deadline_ms = crash_after_ops.length === 0 ? performance.now() + RUN_MS : Number.POSITIVE_INFINITY;
  }

  connect(): Promise<Client> {
    return connect({ path: this.daemon.socket_path, reconnect: false });
  }

  get stopped(): boolean {
    return performance.now() >= this.deadline_ms;
  }

  completedOne(): void {
    if (this.crashing) return; // a response that arrived as the daemon died
    this.completed_since_start++;
    if (this.completed_since_start === this.crash_after_ops[this.kill_ticks.length]) {
      this.crashing = true;
      this.restarted = this.crashAndRestart();
    }
  }

  private async crashAndRestart(): Promise<void> {
    this.kill_ticks.push(this.recorder.tick());
    // Now, not at the restart: the epoch must not roll over between the two.
    this.recorder.extendEpoch(OPS_AFTER_RESTART);
    const dir = this.daemon.dir;
    expect(await this.daemon.stop("SIGKILL")).not.toBe(0);
    this.daemon = await Daemon.start({ ...this.start, dir });
    this.restart_ticks.push(this.recorder.tick());
    this.completed_since_start = 0;
    this.crashing = false;
    if (this.kill_ticks.length === this.crash_after_ops.length) this.deadline_ms = performance.now() + RUN_MS;
  }
}

/** One client: one operation at a time until the deadline; after a crash, a new connection. */
async function runClient(run: Run, id: number): Promise<void> {
  const rng = prng((SEED ^ Math.imul(id + 1, 0x9e3779b9)) >>> 0);
  const { recorder } = run;
  /** Kills before this client's connection was opened: the next one cuts it. */
  let kills_at_connect = run.kill_ticks.length;
  let client = await run.connect();
  for (let n = 0; !run.stopped; n++) {
    const call = planCall(rng, recorder.nextEpoch(), `c${id}.${n}`);
    const invoke = recorder.tick();
    try {
      const result = await perform(client, call);
      recorder.record(call, id, invoke, recorder.tick(), result);
      run.completedOne();
    } catch (error) {
      // Only a kill since this connection opened may cut it: any other loss fails the test.
      if (!(error instanceof ConnectionError) || run.kill_ticks.length === kills_at_connect) throw error;
      await run.restarted;
      // May or may not have taken effect, but if it did, then before the restart of that kill.
      recorder.record(call, id, invoke, null, undefined, run.restart_ticks[kills_at_connect]);
      kills_at_connect = run.kill_ticks.length;
      client = await run.connect();
    }
  }
  await client.close();
}

/** Runs the clients to the end, reads every epoch back, stops the daemon (exit 0): the history. */
async function runToEnd(run: Run): Promise<{ ops: readonly Operation[]; run_ms: number }> {
  const started_ms = performance.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, id) => runClient(run, id)));
  const run_ms = performance.now() - started_ms;
  await readBack(run);
  expect(await run.daemon.stop()).toBe(0);
  return { ops: run.recorder.ops, run_ms };
}

/** Reads back every epoch's keys with one more client (an mget per epoch). */
async function readBack(run: Run): Promise<void> {
  const client = await run.connect();
  const { recorder } = run;
  for (let epoch = 0; epoch < recorder.epochs; epoch++) {
    const call: Call = { f: "mget", keys: Array.from({ length: KEYS_PER_EPOCH }, (_, i) => keyOf(epoch, i)) };
    const invoke = recorder.tick();
    recorder.record(call, CLIENTS, invoke, recorder.tick(), await perform(client, call));
  }
  await client.close();
}

/** Checks the history; fails with the seed and the counter-example. Returns the check time. */
function expectLinearizable(ops: readonly Operation[]): number {
  const started_ms = performance.now();
  const verdict = checkHistory(ops);
  const check_ms = performance.now() - started_ms;
  if (!verdict.ok)
    throw new Error(`seed ${SEED}: not linearizable on ${verdict.key}\n${verdict.explanation}`);
  return check_ms;
}

/** The same history with one completed read turned into a read of a value never written. */
function corruptOneRead(ops: readonly Operation[], rng: () => number): Operation[] {
  const reads = ops.flatMap((op, i) => (op.f === "get" && op.complete !== null ? [i] : []));
  expect(reads.length).toBeGreaterThan(0);
  const victim = reads[randomInt(rng, reads.length)]!;
  return ops.map((op, i) => (i === victim && op.f === "get" ? { ...op, result: "never-written" } : op));
}

/** What a write leaves on each key it writes: its value, or nil for a del; nothing for a read. */
function writes(op: Operation): ReadonlyArray<readonly [string, Value]> {
  if (op.f === "set") return [[op.key, op.value]];
  if (op.f === "mset") return op.pairs;
  if (op.f === "del") return [[op.key, null]];
  return [];
}

/**
 * Keys with a write acknowledged before some kill and a completed read invoked after that kill's
 * restart: the keys on which the check proves that acknowledged writes survived.
 */
function keysReadBackAfterCrash(ops: readonly Operation[], run: Run): number {
  const keys = new Set<string>();
  run.kill_ticks.forEach((kill_tick, i) => {
    const restart_tick = run.restart_ticks[i]!;
    const written = new Set<string>();
    for (const op of ops) {
      if (op.complete !== null && op.complete <= kill_tick) for (const [k] of writes(op)) written.add(k);
    }
    for (const op of ops) {
      if (op.complete === null || op.invoke < restart_tick || (op.f !== "get" && op.f !== "mget")) continue;
      for (const k of keysOf(op)) if (written.has(k)) keys.add(k);
    }
  });
  return keys.size;
}

/**
 * Completed operations invoked after a restart on a key that a write in flight at its kill touched
 * (settled by that restart): the ones on which the check proves that a write recovery dropped stays
 * dropped, and one it kept stays under later writes.
 */
function opsAfterRestartOnLostKeys(ops: readonly Operation[], run: Run): number {
  let count = 0;
  for (const restart_tick of run.restart_ticks) {
    const lost = new Set<string>();
    for (const op of ops) if (op.settled_by === restart_tick) for (const [k] of writes(op)) lost.add(k);
    for (const op of ops) {
      // Not the final read-back (client CLIENTS), which reads every key of every epoch.
      if (op.complete === null || op.invoke < restart_tick || op.client === CLIENTS) continue;
      if (keysOf(op).some((k) => lost.has(k))) count++;
    }
  }
  return count;
}

/**
 * The history with one completed read invoked after `after_tick` changed: the first get, or mget
 * key, for which `wrong(key, read)` gives a value (not undefined) now reads that value. Undefined if
 * no read has one.
 */
function changeOneRead(
  ops: readonly Operation[],
  after_tick: number,
  wrong: (key: string, read: Operation) => Value | undefined,
): Operation[] | undefined {
  for (const [i, op] of ops.entries()) {
    if (op.complete === null || op.invoke < after_tick || (op.f !== "get" && op.f !== "mget")) continue;
    const keys = keysOf(op);
    const slot = keys.findIndex((k) => wrong(k, op) !== undefined);
    if (slot < 0) continue;
    const value = wrong(keys[slot]!, op) as Value;
    const changed: Operation =
      op.f === "get"
        ? { ...op, result: value }
        : { ...op, result: op.result!.map((v, s) => (s === slot ? value : v)) };
    return ops.map((o, j) => (j === i ? changed : o));
  }
  return undefined;
}

/**
 * The same history as if the first kill had lost an acknowledged write: a read after the restart
 * returns the value of a set W on its key although a later set W2 (invoked after W completed) was
 * acknowledged before the kill. Undefined if the history has no such read.
 */
function loseOneWrite(ops: readonly Operation[], run: Run): Operation[] | undefined {
  const [kill_tick, restart_tick] = [run.kill_ticks[0]!, run.restart_ticks[0]!];
  const acked = ops.filter((op) => op.f === "set" && op.complete !== null && op.complete < kill_tick);
  const overwritten = (key: string): string | undefined => {
    const sets = acked.filter((op) => op.f === "set" && op.key === key);
    const w = sets.find((a) => sets.some((b) => a.complete! < b.invoke));
    return w?.f === "set" ? w.value : undefined;
  };
  return changeOneRead(ops, restart_tick, overwritten);
}

/**
 * The same history as if a write in flight at a kill had taken effect late: a read that follows a
 * write completed after the restart (on the same key) returns what the in-flight write would have
 * left, its value (a set or mset) or nil (a del: the read must also follow every del of the key
 * invoked after the restart, or one of those could explain the nil). Undefined if the history has
 * no such read.
 */
function resurrectOneWrite(ops: readonly Operation[], run: Run): Operation[] | undefined {
  for (const restart_tick of run.restart_ticks) {
    const lost = new Map<string, Value>(); // key → what a write in flight at the kill left there
    for (const op of ops) if (op.settled_by === restart_tick) for (const [k, v] of writes(op)) lost.set(k, v);
    const after = ops.filter((w) => w.invoke > restart_tick);
    // A value set on `key` after the restart, completed before `read` was invoked.
    const overwritten = (key: string, read: Operation) =>
      after.some(
        (w) =>
          w.complete !== null &&
          w.complete < read.invoke &&
          writes(w).some(([k, v]) => k === key && v !== null),
      );
    // A del of `key` after the restart (completed or not) that may come before `read` returned.
    const deleted = (key: string, read: Operation) =>
      after.some((w) => w.f === "del" && w.key === key && w.invoke < read.complete!);
    const impossible = (key: string, read: Operation) =>
      lost.has(key) && overwritten(key, read) && (lost.get(key) !== null || !deleted(key, read));
    const changed = changeOneRead(ops, restart_tick, (key, read) =>
      impossible(key, read) ? lost.get(key) : undefined,
    );
    if (changed !== undefined) return changed;
  }
  return undefined;
}

function summary(name: string, run: Run, run_ms: number, check_ms: number): string {
  const ops = run.recorder.ops;
  const indeterminate = ops.filter((op) => op.complete === null).length;
  const keys = run.recorder.epochs * KEYS_PER_EPOCH;
  return (
    `${name} (seed ${SEED}): ${ops.length} ops (${indeterminate} indeterminate) by ${CLIENTS} clients on ` +
    `${keys} keys in ${run.recorder.epochs} epochs, run ${run_ms.toFixed(0)} ms, checked in ${check_ms.toFixed(0)} ms`
  );
}

describe.each(ARRANGEMENTS)(
  `linearizability of the daemon, $name (seed ${SEED}, ${RUN_MS} ms)`,
  ({ start }) => {
    expect(OPS_PER_EPOCH + OPS_AFTER_RESTART + 1).toBeLessThanOrEqual(MAX_OPS_PER_SEARCH);

    test(
      "concurrent clients: every key linearizable, every mset atomic",
      async () => {
        const daemon = await Daemon.start(start);
        const run = new Run(daemon, [], start);
        const { ops, run_ms } = await runToEnd(run);
        expect(ops.every((op) => op.complete !== null)).toBe(true);
        expect(run.recorder.epochs).toBeGreaterThan(1);
        const check_ms = expectLinearizable(ops);
        console.log(summary("no crash", run, run_ms, check_ms));
        expect(checkHistory(corruptOneRead(ops, prng(SEED))).ok).toBe(false);
      },
      TEST_TIMEOUT_MS,
    );

    test(
      `a history across ${CRASHES} SIGKILLs and restarts: acknowledged writes survive, in-flight ones are all or nothing`,
      async () => {
        const rng = prng(SEED);
        const dir = tempDir();
        const daemon = await Daemon.start({ ...start, dir });
        const crash_after_ops = Array.from(
          { length: CRASHES },
          () => OPS_PER_EPOCH + randomInt(rng, 2 * OPS_PER_EPOCH),
        );
        const run = new Run(daemon, crash_after_ops, start);
        const { ops, run_ms } = await runToEnd(run);
        expect(run.restart_ticks.length).toBe(CRASHES);
        const survived = keysReadBackAfterCrash(ops, run);
        expect(survived).toBeGreaterThan(0);
        const over_lost = opsAfterRestartOnLostKeys(ops, run);
        expect(over_lost).toBeGreaterThan(0);
        const check_ms = expectLinearizable(ops);
        console.log(
          `${summary(`${CRASHES} × SIGKILL + restart`, run, run_ms, check_ms)}; kills after ${crash_after_ops.join(", ")} ` +
            `completed ops; ${survived} keys written before a kill and read after its restart; ${over_lost} ops after ` +
            `a restart on keys of writes in flight at its kill`,
        );
        expect(checkHistory(corruptOneRead(ops, rng)).ok).toBe(false);
        const lost = loseOneWrite(ops, run);
        expect(lost).toBeDefined();
        expect(checkHistory(lost!).ok).toBe(false);
        const resurrected = resurrectOneWrite(ops, run);
        expect(resurrected).toBeDefined();
        expect(checkHistory(resurrected!).ok).toBe(false);
      },
      TEST_TIMEOUT_MS,
    );
  },
);
