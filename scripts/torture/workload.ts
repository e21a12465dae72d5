/**
 * One torture cycle's load on a live daemon: `clients` connections, each keeping `pipeline`
 * requests in flight (set, del, mset over its own keys), every request logged as sent and as
 * answered. Once a seeded number of writes was acknowledged, the daemon is SIGKILLed. Some cycles
 * first request a checkpoint there: "during" kills after a few more acknowledgements, so that the
 * kill lands while the checkpoint runs (its response has not arrived); "after" waits for the
 * checkpoint's response and a seeded number of acknowledgements more, so that recovery starts from
 * a fresh data.db and a WAL tail.
 *
 * @example
 * const run = await runWorkload(daemon, plan, { socket_path, clients: 4, keys_per_client: 32, pipeline: 8 }, ids);
 * run.logs; // the requests of each connection, for checkCycle
 */
import { type Client, ConnectionError, connect } from "../../src/client/index.ts";
import { assert } from "../../src/engine/errors.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import type { DaemonExit, DaemonProcess } from "../daemon_process.ts";
import { type ConnectionLog, type LoggedOp, writtenValue } from "./check.ts";

/** A cycle that has not reached its kill point within this time has hung: that is a violation. */
const PROGRESS_TIMEOUT_MS = 60_000;
/** An MSET writes 2 to this many keys. */
const MSET_KEYS_MAX = 6;

/**
 * The shape of the load.
 *
 * @example
 * const shape: LoadShape = { socket_path: "/tmp/x/walkv.sock", clients: 4, keys_per_client: 32, pipeline: 8 };
 */
export interface LoadShape {
  readonly socket_path: string;
  readonly clients: number;
  readonly keys_per_client: number;
  readonly pipeline: number;
}

/**
 * Where one cycle kills: after `kill_after_acks` acknowledgements; with a checkpoint request at
 * that point, `extra_acks` more (counted from the request, or from its response for "after").
 *
 * @example
 * const plan: KillPlan = { seed: 42, kill_after_acks: 800, checkpoint: "during", extra_acks: 5 };
 */
export interface KillPlan {
  /** Seeds the clients' request streams. */
  readonly seed: number;
  readonly kill_after_acks: number;
  readonly checkpoint: "none" | "during" | "after";
  readonly extra_acks: number;
}

/**
 * What a cycle did before its kill.
 *
 * @example
 * const { logs, mid_checkpoint, exit } = run;
 */
export interface WorkloadRun {
  readonly logs: ConnectionLog[];
  readonly acks: number;
  /** A checkpoint was requested and its response had not arrived when the kill was sent. */
  readonly mid_checkpoint: boolean;
  /** A checkpoint was requested and answered before the kill. */
  readonly checkpoint_done: boolean;
  readonly exit: DaemonExit;
  /** Set when the cycle went wrong before its kill: the daemon died by itself or hung. */
  readonly failure: string | undefined;
}

/** Op ids, unique over a whole run so that every value is. */
export interface OpIds {
  next: number;
}

/** Counts acknowledgements and wakes whoever waits for a count. */
class AckCounter {
  count = 0;
  private readonly waiters: Array<{ target: number; resolve: () => void }> = [];

  add(): void {
    this.count++;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (this.count >= w.target) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  reach(target: number): Promise<void> {
    if (this.count >= target) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ target, resolve }));
  }
}

/**
 * Runs the load of one cycle on `daemon` until it kills it (see the module comment).
 *
 * @example
 * const run = await runWorkload(daemon, plan, shape, { next: 1 });
 */
export async function runWorkload(
  daemon: DaemonProcess,
  plan: KillPlan,
  shape: LoadShape,
  ids: OpIds,
): Promise<WorkloadRun> {
  assert(shape.clients >= 1 && shape.keys_per_client >= 2 && shape.pipeline >= 1, "bad load shape");
  const clients = await Promise.all(
    Array.from({ length: shape.clients }, () => connect({ path: shape.socket_path, reconnect: false })),
  );
  const control = await connect({ path: shape.socket_path, reconnect: false });
  const logs: ConnectionLog[] = clients.map(() => ({ ops: [] }));
  const acks = new AckCounter();
  const stop = { stopped: false };
  const lanes = clients.flatMap((client, c) => {
    const stream = requestStream(
      prng(mixSeed(plan.seed, c)),
      c * shape.keys_per_client,
      shape.keys_per_client,
    );
    return Array.from({ length: shape.pipeline }, () => lane(client, stream, logs[c]!, acks, ids, stop));
  });
  const checkpoint: CheckpointState = { requested: false, answered: false };
  const failure = await untilKillPoint(daemon, acks, plan, checkpoint, control);
  stop.stopped = true;
  const mid_checkpoint = checkpoint.requested && !checkpoint.answered;
  const exit = await daemon.kill9();
  await Promise.all(lanes);
  return { logs, acks: acks.count, mid_checkpoint, checkpoint_done: checkpoint.answered, exit, failure };
}

interface CheckpointState {
  requested: boolean;
  answered: boolean;
}

/** Waits for the kill point; resolves with a failure message if the daemon died or hung first. */
async function untilKillPoint(
  daemon: DaemonProcess,
  acks: AckCounter,
  plan: KillPlan,
  checkpoint: CheckpointState,
  control: Client,
): Promise<string | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<string>((resolve) => {
    timer = setTimeout(
      () => resolve(`no kill point after ${PROGRESS_TIMEOUT_MS} ms (${acks.count} acks)`),
      PROGRESS_TIMEOUT_MS,
    );
  });
  const died = daemon.exited.then(
    (exit) => `the daemon exited by itself before the kill: ${JSON.stringify(exit)}`,
  );
  const reached = (async () => {
    await acks.reach(plan.kill_after_acks);
    if (plan.checkpoint === "none") return undefined;
    checkpoint.requested = true;
    const answer = control.checkpoint().then(
      () => {
        checkpoint.answered = true;
        return undefined;
      },
      (error: Error) =>
        error instanceof ConnectionError ? undefined : `checkpoint failed: ${error.message}`,
    );
    if (plan.checkpoint === "after") {
      const failed = await answer;
      if (failed !== undefined) return failed;
    }
    await acks.reach(acks.count + plan.extra_acks);
    return undefined;
  })();
  const outcome = await Promise.race([reached, died, hung]);
  clearTimeout(timer);
  return outcome;
}

/** A client's next write requests, drawn from its own generator (deterministic per seed). */
type RequestStream = (id: number) => LoggedOp;

function requestStream(rng: () => number, first_key: number, key_count: number): RequestStream {
  const pick = () => first_key + randomInt(rng, key_count);
  return (id) => {
    const r = rng();
    if (r < 0.55) return { id, kind: "set", keys: [pick()], status: "pending" };
    if (r < 0.7) return { id, kind: "del", keys: [pick()], status: "pending" };
    const want = 2 + randomInt(rng, Math.min(MSET_KEYS_MAX, key_count) - 1);
    const keys = new Set<number>();
    while (keys.size < want) keys.add(pick());
    return { id, kind: "mset", keys: [...keys], status: "pending" };
  };
}

/** One pipeline slot of a client: sends a request, waits for its answer, again until stopped. */
async function lane(
  client: Client,
  stream: RequestStream,
  log: ConnectionLog,
  acks: AckCounter,
  ids: OpIds,
  stop: { stopped: boolean },
): Promise<void> {
  while (!stop.stopped) {
    const op = stream(ids.next++);
    log.ops.push(op); // before sending: the log is in send order
    try {
      await send(client, op);
      op.status = "acked";
      acks.add();
    } catch (error) {
      if (error instanceof ConnectionError) return; // the kill: the request stays pending
      op.status = "refused";
      op.error = error instanceof Error ? error.message : String(error);
    }
  }
}

function send(client: Client, op: LoggedOp): Promise<unknown> {
  const key = op.keys[0]!;
  if (op.kind === "set") return client.set(keyName(key), writtenValue(op.id, key));
  if (op.kind === "del") return client.del(keyName(key));
  return client.mset(op.keys.map((k) => [keyName(k), writtenValue(op.id, k)] as const));
}

/**
 * The wire key of key number `key`.
 *
 * @example
 * keyName(7); // "t:7"
 */
export function keyName(key: number): string {
  return `t:${key}`;
}

/**
 * A per-stream seed from a run seed and small integers.
 *
 * @example
 * prng(mixSeed(seed, cycle, client));
 */
export function mixSeed(seed: number, ...parts: number[]): number {
  let h = seed >>> 0;
  for (const part of parts) h = Math.imul(h ^ (part + 0x9e3779b9), 0x85ebca6b) >>> 0;
  return h;
}
