/**
 * Crash torture: real `walkv serve` processes under concurrent clients (set, del, mset), killed
 * with SIGKILL at seeded moments — some while a requested checkpoint runs, with a 1 MiB checkpoint
 * trigger and 64 KiB WAL segments so that automatic checkpoints and rotations fall between kills —
 * then restarted on the same data directory. After each restart every key is read back and checked
 * (scripts/torture/check.ts): every acknowledged write present with its latest acknowledged value
 * or a later in-flight one, no MSET half applied, each connection's writes applied as a prefix.
 * The run ends with a clean SIGTERM stop and one more restart that must find the same state.
 *
 * `--fsync both` alternates always and everysec per cycle on one data directory; `--fsync no` runs
 * every cycle without fsync. For everysec and no the loss window after kill -9 is reported:
 * acknowledged writes missing after restart (expected 0, the page cache survives a process crash).
 * Exits 1 with a report on any violation.
 *
 * @example
 * node_modules/.bin/bun scripts/torture.ts --seed 42 --cycles 20 --fsync both
 * node_modules/.bin/bun scripts/torture.ts --minutes 30 --fsync everysec
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { connect } from "../src/client/index.ts";
import { assert } from "../src/engine/errors.ts";
import { prng, randomInt } from "../src/engine/io/prng.ts";
import { DaemonProcess, describeExit } from "./daemon_process.ts";
import { type ConnectionLog, checkCycle, type KeyState } from "./torture/check.ts";
import {
  type KillPlan,
  keyName,
  mixSeed,
  type OpIds,
  runWorkload,
  type WorkloadRun,
} from "./torture/workload.ts";

const FSYNC_MODES = ["always", "everysec", "no"] as const;
type FsyncMode = (typeof FSYNC_MODES)[number];
export type FsyncChoice = FsyncMode | "both";

/** Zero for every mode. */
function perMode(): Record<FsyncMode, number> {
  return { always: 0, everysec: 0, no: 0 };
}

/** "always 3, everysec 4, no 0". */
function formatPerMode(counts: Record<FsyncMode, number>): string {
  return FSYNC_MODES.map((mode) => `${mode} ${counts[mode]}`).join(", ");
}

/**
 * Settings of a torture run.
 *
 * @example
 * const options: TortureOptions = { ...DEFAULT_TORTURE_OPTIONS, seed: 7, cycles: 50 };
 */
export interface TortureOptions {
  readonly seed: number;
  /** Kill/restart cycles (ignored when `minutes` is set). */
  readonly cycles: number;
  readonly fsync: FsyncChoice;
  /** Run cycles until this many minutes have passed. */
  readonly minutes: number | undefined;
  readonly clients: number;
  readonly keys_per_client: number;
  /** Requests each client keeps in flight. */
  readonly pipeline: number;
  /** A cycle kills after a seeded number of acknowledgements in [acks_min, acks_max]. */
  readonly acks_min: number;
  readonly acks_max: number;
  /** I/O workers of the daemon. */
  readonly workers: number;
  /**
   * Some kills follow a requested checkpoint (during or after it). False: none do — for a test of
   * the checker, where a checkpoint that happens to cover the cut-off WAL would hide the loss.
   */
  readonly checkpoint_kills: boolean;
  readonly log: (line: string) => void;
  /** Called after each kill with the data directory, before the restart: lets a test damage it. */
  readonly after_kill: ((data_dir: string) => void) | undefined;
}

export const DEFAULT_TORTURE_OPTIONS: TortureOptions = {
  seed: 1,
  cycles: 20,
  fsync: "both",
  minutes: undefined,
  clients: 4,
  keys_per_client: 32,
  pipeline: 8,
  acks_min: 200,
  acks_max: 2000,
  workers: 2,
  checkpoint_kills: true,
  log: (line) => console.error(line),
  after_kill: undefined,
};

/**
 * What the daemons logged while recovering and checkpointing, summed over the run.
 *
 * @example
 * const { torn_tails, interrupted_checkpoints } = verdict.daemon_log;
 */
export interface DaemonLogFigures {
  /** WAL tails cut by recovery (a record torn by the kill). */
  torn_tails: number;
  torn_bytes: number;
  wal_records_replayed: number;
  /** `data.db.tmp` found and removed by recovery: a checkpoint was cut by the kill. */
  interrupted_checkpoints: number;
  /** Checkpoints completed (requested, automatic, final). */
  checkpoints_completed: number;
}

/**
 * The outcome of a run. `violations` is empty when every check passed.
 *
 * @example
 * const verdict = await runTorture({ seed: 7, cycles: 20 });
 * if (verdict.violations.length > 0) process.exit(1);
 */
export interface TortureVerdict {
  readonly seed: number;
  readonly fsync: FsyncChoice;
  /** Cycles that ran to their kill. */
  readonly kills: number;
  /** Kills sent while a requested checkpoint had not answered. */
  readonly kills_mid_checkpoint: number;
  readonly checkpoints_requested: number;
  /** Kills after a requested checkpoint answered (recovery from a fresh data.db plus WAL tail). */
  readonly kills_after_checkpoint: number;
  readonly kills_by_mode: Record<FsyncMode, number>;
  /** Acknowledged write requests checked after a restart. */
  readonly acked_writes_checked: number;
  readonly acked_by_mode: Record<FsyncMode, number>;
  /** Acknowledged key writes missing after restart (the loss window), per mode of the killed daemon. */
  readonly missing_acked: Record<FsyncMode, number>;
  readonly writes_in_flight: number;
  readonly in_flight_applied: number;
  readonly restarts: number;
  readonly daemon_log: DaemonLogFigures;
  readonly elapsed_ms: number;
  readonly violations: string[];
  /** The data directory, kept when there were violations. */
  readonly data_dir: string | undefined;
}

/** Daemon flags that make checkpoints and WAL rotations frequent. */
const SMALL_DAEMON_FLAGS = [
  "--checkpoint-wal-mb",
  "1",
  "--wal-segment-bytes",
  "65536",
  "--max-key-bytes",
  "64",
  "--max-value-bytes",
  "1024",
  "--max-batch-bytes",
  "16384",
  "--max-memory-bytes",
  String(64 * 1024 * 1024),
];

/** Mutable totals of a run. */
interface Tally {
  kills: number;
  kills_mid_checkpoint: number;
  checkpoints_requested: number;
  kills_after_checkpoint: number;
  kills_by_mode: Record<FsyncMode, number>;
  acked_by_mode: Record<FsyncMode, number>;
  missing_acked: Record<FsyncMode, number>;
  writes_in_flight: number;
  in_flight_applied: number;
  restarts: number;
  daemon_log: DaemonLogFigures;
  violations: string[];
  /** The last daemon started: killed when the run ends, should it still be running. */
  last_daemon: DaemonProcess | undefined;
}

/** The previous cycle's requests, waiting to be checked against the next restart's state. */
interface Pending {
  readonly cycle: number;
  readonly mode: FsyncMode;
  readonly logs: ConnectionLog[];
}

/**
 * Runs the torture (see the module comment) and resolves with its verdict. Never throws for a
 * violation: the verdict lists them.
 *
 * @example
 * const verdict = await runTorture({ seed: 42, cycles: 20, fsync: "both" });
 * console.log(verdict.violations); // []
 */
export async function runTorture(partial: Partial<TortureOptions> = {}): Promise<TortureVerdict> {
  const o: TortureOptions = { ...DEFAULT_TORTURE_OPTIONS, ...partial };
  assert(o.acks_min >= 1 && o.acks_max >= o.acks_min, "acks_min ≤ acks_max");
  assert(o.cycles >= 1 || o.minutes !== undefined, "at least one cycle");
  const started_ms = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "walkv-torture-"));
  const t = newTally();
  o.log(
    `torture: seed ${o.seed}, fsync ${o.fsync}, ${o.minutes === undefined ? `${o.cycles} cycles` : `${o.minutes} minutes`}, dir ${dir}`,
  );
  try {
    await runCycles(o, dir, t, started_ms);
  } catch (error) {
    t.violations.push(`torture run failed: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    await t.last_daemon?.kill9(); // a no-op unless an error left it running
  }
  const failed = t.violations.length > 0;
  if (!failed) fs.rmSync(dir, { recursive: true, force: true });
  return {
    seed: o.seed,
    fsync: o.fsync,
    kills: t.kills,
    kills_mid_checkpoint: t.kills_mid_checkpoint,
    checkpoints_requested: t.checkpoints_requested,
    kills_after_checkpoint: t.kills_after_checkpoint,
    kills_by_mode: t.kills_by_mode,
    acked_writes_checked: FSYNC_MODES.reduce((sum, mode) => sum + t.acked_by_mode[mode], 0),
    acked_by_mode: t.acked_by_mode,
    missing_acked: t.missing_acked,
    writes_in_flight: t.writes_in_flight,
    in_flight_applied: t.in_flight_applied,
    restarts: t.restarts,
    daemon_log: t.daemon_log,
    elapsed_ms: Math.round(performance.now() - started_ms),
    violations: t.violations,
    data_dir: failed ? dir : undefined,
  };
}

function newTally(): Tally {
  return {
    kills: 0,
    kills_mid_checkpoint: 0,
    checkpoints_requested: 0,
    kills_after_checkpoint: 0,
    kills_by_mode: perMode(),
    acked_by_mode: perMode(),
    missing_acked: perMode(),
    writes_in_flight: 0,
    in_flight_applied: 0,
    restarts: 0,
    daemon_log: {
      torn_tails: 0,
      torn_bytes: 0,
      wal_records_replayed: 0,
      interrupted_checkpoints: 0,
      checkpoints_completed: 0,
    },
    violations: [],
    last_daemon: undefined,
  };
}

/** Kill/restart cycles, then a clean stop and a last restart; stops at the first violation. */
async function runCycles(o: TortureOptions, dir: string, t: Tally, started_ms: number): Promise<void> {
  const rng = prng(o.seed);
  const ids: OpIds = { next: 1 };
  const key_count = o.clients * o.keys_per_client;
  let base: KeyState = new Array<string | undefined>(key_count).fill(undefined);
  let pending: Pending | undefined;
  const more = (cycle: number) =>
    o.minutes === undefined ? cycle < o.cycles : performance.now() - started_ms < o.minutes * 60_000;
  for (let cycle = 0; more(cycle); cycle++) {
    const mode = modeOf(o.fsync, cycle);
    const daemon = await startDaemon(o, dir, mode, t);
    base = await checkRestart(o, dir, base, pending, t);
    if (t.violations.length > 0) {
      await daemon.kill9();
      countDaemonLog(daemon.stderr, t.daemon_log);
      return;
    }
    const plan = killPlan(rng, o, cycle);
    const run = await runWorkload(daemon, plan, shapeOf(o, dir), ids);
    countDaemonLog(daemon.stderr, t.daemon_log);
    if (!recordKill(o, t, { cycle, mode, plan, run, log: daemon.stderr })) return;
    pending = { cycle, mode, logs: run.logs };
    o.after_kill?.(path.join(dir, "data"));
  }
  await finalRestarts(o, dir, base, pending, t);
}

/** Counts a cycle's kill, or records why it went wrong (then returns false). */
function recordKill(
  o: TortureOptions,
  t: Tally,
  c: { cycle: number; mode: FsyncMode; plan: KillPlan; run: WorkloadRun; log: string },
): boolean {
  const where = `cycle ${c.cycle} (${c.mode})`;
  if (c.run.failure !== undefined) t.violations.push(`${where}: ${c.run.failure}\n${c.log}`);
  else if (c.run.exit.signal !== "SIGKILL")
    t.violations.push(`${where}: the daemon ended with ${describeExit(c.run.exit)}, not SIGKILL\n${c.log}`);
  if (t.violations.length > 0) return false;
  t.kills++;
  t.kills_by_mode[c.mode]++;
  if (c.plan.checkpoint !== "none") t.checkpoints_requested++;
  if (c.run.mid_checkpoint) t.kills_mid_checkpoint++;
  if (c.run.checkpoint_done) t.kills_after_checkpoint++;
  const checkpoint = c.run.mid_checkpoint
    ? ", checkpoint in progress"
    : c.run.checkpoint_done
      ? ", after a checkpoint"
      : "";
  o.log(`${where}: killed after ${c.run.acks} acks${checkpoint}`);
  return true;
}

/** Shares of cycles that request a checkpoint before the kill, and what they wait for then. */
const CHECKPOINT_DURING_SHARE = 0.4;
const CHECKPOINT_AFTER_SHARE = 0.3;
/** Acknowledgements between a checkpoint request and the kill (a checkpoint takes 10–150 ms). */
const DURING_EXTRA_ACKS_MAX = 8;
/** Acknowledgements between a checkpoint's response and the kill. */
const AFTER_EXTRA_ACKS_MAX = 400;

/** Where cycle `cycle` kills, drawn from the run's generator. */
function killPlan(rng: () => number, o: TortureOptions, cycle: number): KillPlan {
  const kill_after_acks = o.acks_min + randomInt(rng, o.acks_max - o.acks_min + 1);
  const r = rng();
  const checkpoint = !o.checkpoint_kills
    ? "none"
    : r < CHECKPOINT_DURING_SHARE
      ? "during"
      : r < CHECKPOINT_DURING_SHARE + CHECKPOINT_AFTER_SHARE
        ? "after"
        : "none";
  const extra_acks = randomInt(
    rng,
    (checkpoint === "during" ? DURING_EXTRA_ACKS_MAX : AFTER_EXTRA_ACKS_MAX) + 1,
  );
  return { seed: mixSeed(o.seed, cycle), kill_after_acks, checkpoint, extra_acks };
}

/** The last check: restart, check, SIGTERM (exit 0), restart, same state, SIGTERM. */
async function finalRestarts(
  o: TortureOptions,
  dir: string,
  base: KeyState,
  pending: Pending | undefined,
  t: Tally,
): Promise<void> {
  const mode = modeOf(o.fsync, 0);
  const first = await startDaemon(o, dir, mode, t);
  const checked = await checkRestart(o, dir, base, pending, t);
  await stopCleanly(first, "after the last kill", t);
  const second = await startDaemon(o, dir, mode, t);
  const again = await readAll(o, dir);
  await stopCleanly(second, "after a clean stop", t);
  const changed = again.findIndex((value, key) => value !== checked[key]);
  if (changed >= 0) t.violations.push(`after a clean stop and restart, key ${changed} changed`);
}

async function stopCleanly(daemon: DaemonProcess, when: string, t: Tally): Promise<void> {
  const exit = await daemon.stop();
  countDaemonLog(daemon.stderr, t.daemon_log);
  if (exit.code !== 0)
    t.violations.push(`SIGTERM ${when}: the daemon ended with ${describeExit(exit)}\n${daemon.stderr}`);
}

/** Reads the recovered state and checks the previous cycle against it; returns the new base. */
async function checkRestart(
  o: TortureOptions,
  dir: string,
  base: KeyState,
  pending: Pending | undefined,
  t: Tally,
): Promise<KeyState> {
  const observed = await readAll(o, dir);
  if (pending === undefined) {
    const present = observed.findIndex((value) => value !== undefined);
    if (present >= 0) t.violations.push(`fresh data directory holds key ${present}`);
    return observed;
  }
  const result = checkCycle({ base, connections: pending.logs, observed });
  t.acked_by_mode[pending.mode] += result.acked_checked;
  t.missing_acked[pending.mode] += result.missing_acked;
  t.writes_in_flight += result.in_flight;
  t.in_flight_applied += result.in_flight_applied;
  for (const v of result.violations)
    t.violations.push(`after the kill of cycle ${pending.cycle} (${pending.mode}): ${v}`);
  return observed;
}

/** Every key's value, read with mget in chunks. */
async function readAll(o: TortureOptions, dir: string): Promise<Array<string | undefined>> {
  const client = await connect({ path: socketPath(dir), reconnect: false });
  const CHUNK_KEYS = 256;
  const out: Array<string | undefined> = [];
  const key_count = o.clients * o.keys_per_client;
  for (let first = 0; first < key_count; first += CHUNK_KEYS) {
    const keys = Array.from({ length: Math.min(CHUNK_KEYS, key_count - first) }, (_, i) =>
      keyName(first + i),
    );
    out.push(...(await client.mget<string>(keys)));
  }
  await client.close();
  return out;
}

async function startDaemon(
  o: TortureOptions,
  dir: string,
  mode: FsyncMode,
  t: Tally,
): Promise<DaemonProcess> {
  const daemon = await DaemonProcess.start([
    "--data",
    path.join(dir, "data"),
    "--socket",
    socketPath(dir),
    "--workers",
    String(o.workers),
    "--fsync",
    mode,
    ...SMALL_DAEMON_FLAGS,
  ]);
  t.restarts++;
  t.last_daemon = daemon;
  return daemon;
}

/** Adds what one daemon's log says about recovery and checkpoints. */
function countDaemonLog(log: string, figures: DaemonLogFigures): void {
  for (const m of log.matchAll(/torn tail of .* (\d+) bytes dropped/g)) {
    figures.torn_tails++;
    figures.torn_bytes += Number(m[1]);
  }
  for (const m of log.matchAll(/replayed (\d+) WAL records/g)) figures.wal_records_replayed += Number(m[1]);
  figures.interrupted_checkpoints +=
    log.match(/removed data\.db\.tmp left by an interrupted checkpoint/g)?.length ?? 0;
  figures.checkpoints_completed += log.match(/checkpoint: redo LSN/g)?.length ?? 0;
}

function modeOf(fsync: FsyncChoice, cycle: number): FsyncMode {
  if (fsync !== "both") return fsync;
  return cycle % 2 === 0 ? "always" : "everysec";
}

function shapeOf(o: TortureOptions, dir: string) {
  return {
    socket_path: socketPath(dir),
    clients: o.clients,
    keys_per_client: o.keys_per_client,
    pipeline: o.pipeline,
  };
}

function socketPath(dir: string): string {
  return path.join(dir, "walkv.sock");
}

/**
 * The verdict as a human report: figures, then each violation.
 *
 * @example
 * console.log(formatVerdict(verdict));
 */
export function formatVerdict(v: TortureVerdict): string {
  const lines = [
    `torture ${v.violations.length === 0 ? "PASSED" : "FAILED"}: seed ${v.seed}, fsync ${v.fsync}, ${(v.elapsed_ms / 1000).toFixed(1)} s`,
    `  kills: ${v.kills} (${formatPerMode(v.kills_by_mode)}), ${v.kills_mid_checkpoint} with a requested checkpoint in progress, ${v.kills_after_checkpoint} after one answered (${v.checkpoints_requested} requested)`,
    `  acknowledged writes checked: ${v.acked_writes_checked} (${formatPerMode(v.acked_by_mode)})`,
    `  acknowledged key writes missing after kill -9: ${formatPerMode(v.missing_acked)}`,
    `  writes in flight at the kills: ${v.writes_in_flight}, of which at least ${v.in_flight_applied} applied`,
    `  restarts: ${v.restarts}; daemon logs: ${v.daemon_log.torn_tails} torn WAL tails (${v.daemon_log.torn_bytes} bytes), ` +
      `${v.daemon_log.wal_records_replayed} WAL records replayed, ${v.daemon_log.interrupted_checkpoints} interrupted checkpoints cleaned up, ` +
      `${v.daemon_log.checkpoints_completed} checkpoints completed`,
  ];
  if (v.violations.length > 0) {
    lines.push(`  ${v.violations.length} violation(s) (seed ${v.seed}; data kept in ${v.data_dir}):`);
    for (const violation of v.violations) lines.push(`  - ${violation}`);
  }
  return lines.join("\n");
}

/** Parses the command line (see the module comment). */
function cliOptions(argv: string[]): Partial<TortureOptions> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: "string" },
      cycles: { type: "string" },
      fsync: { type: "string" },
      minutes: { type: "string" },
      clients: { type: "string" },
      workers: { type: "string" },
    },
  });
  const integer = (name: string, text: string | undefined, min: number): number | undefined => {
    if (text === undefined) return undefined;
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min)
      throw new Error(`--${name}: "${text}" is not an integer ≥ ${min}`);
    return n;
  };
  const fsync = values.fsync ?? "both";
  if (fsync !== "both" && !(FSYNC_MODES as readonly string[]).includes(fsync))
    throw new Error(`--fsync: "${fsync}" is not ${FSYNC_MODES.join(", ")} or both`);
  const minutes = values.minutes === undefined ? undefined : Number(values.minutes);
  if (minutes !== undefined && !(minutes > 0))
    throw new Error(`--minutes: "${values.minutes}" is not a positive number`);
  const defined = <T>(entries: Record<string, T | undefined>) =>
    Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined));
  return defined({
    seed: integer("seed", values.seed ?? process.env.WALKV_SEED, 0) ?? Math.floor(Math.random() * 2 ** 31),
    cycles: integer("cycles", values.cycles, 1),
    fsync: fsync as FsyncChoice,
    minutes,
    clients: integer("clients", values.clients, 1),
    workers: integer("workers", values.workers, 1),
  }) as Partial<TortureOptions>;
}

if (import.meta.main) {
  let options: Partial<TortureOptions>;
  try {
    options = cliOptions(process.argv.slice(2));
  } catch (error) {
    console.error(
      `usage: bun scripts/torture.ts [--seed N] [--cycles N] [--fsync always|everysec|no|both] [--minutes M] [--clients N] [--workers N]\n${(error as Error).message}`,
    );
    process.exit(2);
  }
  const verdict = await runTorture(options);
  console.log(formatVerdict(verdict));
  process.exit(verdict.violations.length === 0 ? 0 : 1);
}
