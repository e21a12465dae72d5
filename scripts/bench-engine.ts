/**
 * Engine benchmark (a script, not a test): prints machine facts, then per section a markdown table.
 *
 * Sections (`--only gets,sets,recovery,redis`; default all):
 * - `gets`: `engine.get` of random preloaded keys in a tight loop, 1..N Web Workers each attached to
 *   `host.shared` (`--workers 1,2,4`).
 * - `sets`: `engine.set` of random keys with `--inflight` writes outstanding per worker, for every fsync
 *   mode; fsyncs and records per group commit from `engine.stats().wal`.
 * - `recovery`: `--keys` keys loaded (mset batches) in a child process: memory per key (arena + index,
 *   and RSS growth), checkpoint MB/s, then restart time from data.db; a second child loads the same
 *   keys as single-key sets with checkpoints off and is SIGKILLed, then restart time from the WAL.
 * - `redis`: the same key set in `redis-server` (if installed): used_memory per key, RDB load and AOF
 *   replay time, as ratios beside walkv's figures.
 *
 * Keys are 16 bytes (`key:` + 12 digits), values 100 bytes. Data lives under `--dir` (default the OS
 * temp dir) and is removed afterwards.
 *
 * @example
 * bun scripts/bench-engine.ts                                  # everything, 1M keys
 * bun scripts/bench-engine.ts --only sets --duration-ms 5000 --workers 1,2
 * bun scripts/bench-engine.ts --only recovery --keys 200000
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { type EngineConfig, engineConfig } from "../src/engine/config.ts";
import type { Engine, EngineStats } from "../src/engine/engine.ts";
import { type EngineHost, openEngine } from "../src/engine/host.ts";
import type { FsyncMode } from "../src/engine/wal/wal_writer.ts";
import type { BenchWorkerJob, BenchWorkerResult } from "./bench-engine-worker.ts";
import { positiveFlag, usageError } from "./flags.ts";

// ------------------------------------------------------------------------------------------ data set

/** Every key of the benchmark is this long: `key:` and 12 decimal digits. */
export const KEY_BYTES = 16;
/** Every value of the benchmark is this long. */
export const VALUE_BYTES = 100;
const KEY_DIGITS = KEY_BYTES - 4;
const VALUE_POOL_BYTES = 1 << 16;
const VALUE_POOL = printableBytes(0x5eed, VALUE_POOL_BYTES);

/**
 * The `i`-th key: `key:000000000042` (16 ASCII bytes).
 *
 * @example
 * new TextDecoder().decode(benchKey(42)) === "key:000000000042"
 */
export function benchKey(i: number): Uint8Array {
  const key = new Uint8Array(KEY_BYTES);
  key.set([0x6b, 0x65, 0x79, 0x3a]);
  let n = i;
  for (let p = KEY_BYTES - 1; p >= KEY_BYTES - KEY_DIGITS; p--) {
    key[p] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
  return key;
}

/**
 * A value of `length` printable ASCII bytes chosen by `i` (a view into a fixed random pool, so Redis
 * gets the very same bytes through its text protocol).
 *
 * @example
 * benchValue(7, 100).length === 100
 */
export function benchValue(i: number, length: number = VALUE_BYTES): Uint8Array {
  const offset = (i * 97) % (VALUE_POOL_BYTES - length);
  return VALUE_POOL.subarray(offset, offset + length);
}

function printableBytes(seed: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    bytes[i] = 0x21 + ((state >>> 24) % 94);
  }
  return bytes;
}

// ------------------------------------------------------------------------------------------ options

type Section = "gets" | "sets" | "recovery" | "redis";
const SECTIONS: readonly Section[] = ["gets", "sets", "recovery", "redis"];
const FSYNC_MODES: readonly FsyncMode[] = ["always", "everysec", "no"];

interface Options {
  readonly keys: number;
  readonly ops_keys: number;
  readonly duration_ms: number;
  readonly workers: readonly number[];
  readonly inflight: number;
  readonly only: readonly Section[];
  readonly dir: string;
  /** Internal: run one phase in this (child) process. */
  readonly phase: string | undefined;
  readonly data: string;
}

const USAGE = `usage: bun scripts/bench-engine.ts [--keys N] [--ops-keys N] [--duration-ms MS]
       [--workers 1,2,4] [--inflight N] [--only gets,sets,recovery,redis] [--dir PATH]`;

function parseOptions(argv: readonly string[]): Options {
  const raw = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!flag.startsWith("--") || value === undefined) usageError(`bad argument ${flag}\n${USAGE}`);
    raw.set(flag.slice(2), value);
  }
  const known = ["keys", "ops-keys", "duration-ms", "workers", "inflight", "only", "dir", "phase", "data"];
  for (const name of raw.keys()) if (!known.includes(name)) usageError(`unknown flag --${name}\n${USAGE}`);
  const only = (raw.get("only") ?? SECTIONS.join(",")).split(",") as Section[];
  for (const s of only)
    if (!SECTIONS.includes(s)) usageError(`--only: ${s} is not one of ${SECTIONS.join(", ")}`);
  return {
    keys: positiveFlag("keys", raw.get("keys") ?? "1000000"),
    ops_keys: positiveFlag("ops-keys", raw.get("ops-keys") ?? "100000"),
    duration_ms: positiveFlag("duration-ms", raw.get("duration-ms") ?? "2000"),
    workers: (raw.get("workers") ?? "1,2,4").split(",").map((w) => positiveFlag("workers", w)),
    inflight: positiveFlag("inflight", raw.get("inflight") ?? "64"),
    only,
    dir: raw.get("dir") ?? os.tmpdir(),
    phase: raw.get("phase"),
    data: raw.get("data") ?? "",
  };
}

// ------------------------------------------------------------------------------------------ helpers

const MiB = 1 << 20;
/** Writes per mset when loading. */
const LOAD_BATCH_KEYS = 1000;
/** msets in flight while loading. */
const LOAD_BATCHES_IN_FLIGHT = 4;
/** Single-key sets in flight while loading the WAL-only data set. */
const LOAD_SETS_IN_FLIGHT = 256;
/** How often the main thread samples `last_group_records` during a set run. */
const GROUP_SAMPLE_MS = 2;

/** Engine settings of every run: checkpoints only on request (so they never land inside a timing). */
function benchConfig(data_dir: string, fsync: FsyncMode): EngineConfig {
  return engineConfig({
    data_dir,
    fsync,
    checkpoint_interval_ms: 0,
    checkpoint_wal_bytes: 1024 * 1024 * MiB,
  });
}

function freshDir(base: string, name: string): string {
  const dir = fs.mkdtempSync(path.join(base, `walkv-bench-${name}-`));
  return dir;
}

function rssBytes(): number {
  if (typeof Bun !== "undefined") Bun.gc(true);
  return process.memoryUsage().rss;
}

function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function fmt(n: number, digits = 0): string {
  return round(n, digits).toLocaleString("en-US", { maximumFractionDigits: digits });
}

/** Loads keys [0, count) as msets of {@link LOAD_BATCH_KEYS}, a few in flight. */
async function loadBatches(engine: Engine, count: number): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const first = next;
      next = Math.min(count, next + LOAD_BATCH_KEYS);
      const pairs: Array<[Uint8Array, Uint8Array]> = [];
      for (let i = first; i < next; i++) pairs.push([benchKey(i), benchValue(i)]);
      await engine.mset(pairs);
    }
  };
  await Promise.all(Array.from({ length: LOAD_BATCHES_IN_FLIGHT }, lane));
}

/** Loads keys [0, count) as single-key sets, {@link LOAD_SETS_IN_FLIGHT} in flight. */
async function loadSingles(engine: Engine, count: number): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) {
      const i = next++;
      await engine.set(benchKey(i), benchValue(i));
    }
  };
  await Promise.all(Array.from({ length: LOAD_SETS_IN_FLIGHT }, lane));
}

// ------------------------------------------------------------------------------------------ gets, sets

interface OpsRun {
  readonly kind: "get" | "set";
  readonly fsync: FsyncMode | "-";
  readonly workers: number;
  readonly ops: number;
  readonly ops_per_s: number;
  readonly fsyncs: number;
  readonly records_per_fsync: number;
  readonly mean_last_group_records: number;
  readonly misses: number;
  readonly latency_ms: { readonly p50: number; readonly p99: number; readonly max: number };
}

/** Runs `kind` on `workers` Web Workers attached to `host.shared`; all start together. */
async function runWorkers(
  host: EngineHost,
  options: Options,
  kind: "get" | "set",
  workers: number,
): Promise<{ ops: number; elapsed_ms: number; misses: number; latencies_ms: Float64Array }> {
  const url = new URL("./bench-engine-worker.ts", import.meta.url).href;
  const pool = Array.from({ length: workers }, () => new Worker(url, { type: "module" }));
  try {
    const ask = (worker: Worker, message: unknown) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent) => resolve(event.data as Record<string, unknown>);
        worker.onerror = (event: ErrorEvent) => reject(new Error(event.message));
        worker.postMessage(message);
      });
    await Promise.all(
      pool.map((worker, w) => {
        const job: BenchWorkerJob = {
          shared: host.shared,
          kind,
          key_count: options.ops_keys,
          value_bytes: VALUE_BYTES,
          duration_ms: options.duration_ms,
          inflight: options.inflight,
          seed: 1000 + w,
        };
        return ask(worker, { job });
      }),
    );
    const answers = await Promise.all(pool.map((worker) => ask(worker, { go: true })));
    const results = answers.map((a) => {
      if (a.error !== undefined) throw new Error(`bench worker: ${String(a.error)}`);
      return a as unknown as BenchWorkerResult;
    });
    return {
      ops: results.reduce((sum, r) => sum + r.ops, 0),
      elapsed_ms: Math.max(...results.map((r) => r.elapsed_ms)),
      misses: results.reduce((sum, r) => sum + r.misses, 0),
      latencies_ms: Float64Array.from(results.flatMap((r) => Array.from(r.latencies_ms))),
    };
  } finally {
    for (const worker of pool) worker.terminate();
  }
}

async function measureGets(host: EngineHost, options: Options, workers: number): Promise<OpsRun> {
  const run = await runWorkers(host, options, "get", workers);
  const ops_per_s = run.ops / (run.elapsed_ms / 1000);
  return {
    kind: "get",
    fsync: "-",
    workers,
    ops: run.ops,
    ops_per_s,
    fsyncs: 0,
    records_per_fsync: 0,
    mean_last_group_records: 0,
    misses: run.misses,
    latency_ms: { p50: 0, p99: 0, max: 0 },
  };
}

async function measureSets(
  host: EngineHost,
  options: Options,
  fsync: FsyncMode,
  workers: number,
): Promise<OpsRun> {
  const before = host.engine.stats();
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(host.engine.stats().wal.last_group_records), GROUP_SAMPLE_MS);
  const run = await runWorkers(host, options, "set", workers).finally(() => clearInterval(timer));
  const after = host.engine.stats();
  const fsyncs = after.wal.fsyncs - before.wal.fsyncs;
  const records = after.lsn.visible - before.lsn.visible;
  return {
    kind: "set",
    fsync,
    workers,
    ops: run.ops,
    ops_per_s: run.ops / (run.elapsed_ms / 1000),
    fsyncs,
    records_per_fsync: fsyncs === 0 ? 0 : records / fsyncs,
    mean_last_group_records: samples.length === 0 ? 0 : samples.reduce((a, b) => a + b, 0) / samples.length,
    misses: 0,
    latency_ms: percentiles(run.latencies_ms),
  };
}

function percentiles(latencies_ms: Float64Array): OpsRun["latency_ms"] {
  const sorted = latencies_ms.toSorted();
  const at = (q: number) => sorted[Math.floor(q * (sorted.length - 1))] ?? 0;
  return { p50: at(0.5), p99: at(0.99), max: at(1) };
}

/** One engine per fsync mode (gets run on the first), preloaded with `--ops-keys` keys. */
async function benchOps(options: Options): Promise<OpsRun[]> {
  const runs: OpsRun[] = [];
  const want_gets = options.only.includes("gets");
  const modes = options.only.includes("sets") ? FSYNC_MODES : FSYNC_MODES.slice(0, 1);
  for (const [index, fsync] of modes.entries()) {
    const dir = freshDir(options.dir, `ops-${fsync}`);
    const host = await openEngine(benchConfig(dir, fsync), { log: () => {} });
    try {
      await loadBatches(host.engine, options.ops_keys);
      if (want_gets && index === 0) {
        for (const w of options.workers) runs.push(report(await measureGets(host, options, w)));
      }
      if (options.only.includes("sets")) {
        for (const w of options.workers) runs.push(report(await measureSets(host, options, fsync, w)));
      }
    } finally {
      await host.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  return runs;
}

function report(run: OpsRun): OpsRun {
  const group =
    run.kind === "set"
      ? `, ${run.fsyncs} fsyncs, ${fmt(run.records_per_fsync, 1)} records/fsync, ` +
        `latency p50 ${fmt(run.latency_ms.p50, 2)} p99 ${fmt(run.latency_ms.p99, 2)} max ${fmt(run.latency_ms.max, 1)} ms`
      : "";
  console.error(
    `  ${run.kind} fsync=${run.fsync} workers=${run.workers}: ${fmt(run.ops_per_s)} ops/s${group}`,
  );
  return run;
}

// ------------------------------------------------------------------------------------------ child phases

interface LoadResult {
  readonly keys: number;
  readonly load_ms: number;
  readonly rss_before_bytes: number;
  readonly rss_after_bytes: number;
  readonly stats: EngineStats;
  readonly checkpoint_wall_ms: number;
  readonly data_db_bytes: number;
  readonly wal_bytes_on_disk: number;
  readonly close_ms: number;
}

interface RecoverResult {
  readonly open_wall_ms: number;
  readonly recovery: EngineHost["recovery"];
  readonly keys: number;
  readonly rss_before_bytes: number;
  readonly rss_after_bytes: number;
  readonly verified: boolean;
}

function walBytesOnDisk(dir: string): number {
  const wal = path.join(dir, "wal");
  return fs.readdirSync(wal).reduce((sum, name) => sum + fs.statSync(path.join(wal, name)).size, 0);
}

/** Child: loads `keys` by mset batches, measures memory, checkpoints, closes (final checkpoint). */
async function phaseLoadSnapshot(options: Options): Promise<LoadResult> {
  const host = await openEngine(benchConfig(options.data, "no"), { log: () => {} });
  const rss_before_bytes = rssBytes();
  const started_ms = performance.now();
  await loadBatches(host.engine, options.keys);
  const load_ms = performance.now() - started_ms;
  const rss_after_bytes = rssBytes();
  const checkpoint_started_ms = performance.now();
  await host.checkpoint();
  const checkpoint_wall_ms = performance.now() - checkpoint_started_ms;
  const stats = host.engine.stats();
  const close_started_ms = performance.now();
  await host.close();
  return {
    keys: options.keys,
    load_ms,
    rss_before_bytes,
    rss_after_bytes,
    stats,
    checkpoint_wall_ms,
    data_db_bytes: fs.statSync(path.join(options.data, "data.db")).size,
    wal_bytes_on_disk: walBytesOnDisk(options.data),
    close_ms: performance.now() - close_started_ms,
  };
}

/** Child: loads `keys` single-key sets, checkpoints off; the caller SIGKILLs it (no close). */
async function phaseLoadWal(options: Options): Promise<LoadResult> {
  const host = await openEngine(benchConfig(options.data, "no"), { log: () => {} });
  const rss_before_bytes = rssBytes();
  const started_ms = performance.now();
  await loadSingles(host.engine, options.keys);
  const load_ms = performance.now() - started_ms;
  const stats = host.engine.stats();
  return {
    keys: options.keys,
    load_ms,
    rss_before_bytes,
    rss_after_bytes: rssBytes(),
    stats,
    checkpoint_wall_ms: 0,
    data_db_bytes: 0,
    wal_bytes_on_disk: walBytesOnDisk(options.data),
    close_ms: 0,
  };
}

/** Child: times `openEngine` (recovery + workers), checks a few keys; the caller SIGKILLs it. */
async function phaseRecover(options: Options): Promise<RecoverResult> {
  const rss_before_bytes = rssBytes();
  const started_ms = performance.now();
  const host = await openEngine(benchConfig(options.data, "no"), {
    log: (line) => console.error(`    [engine] ${line}`),
  });
  const open_wall_ms = performance.now() - started_ms;
  const rss_after_bytes = rssBytes();
  const probes = [0, Math.floor(options.keys / 2), options.keys - 1];
  const verified = probes.every((i) => {
    const value = host.engine.get(benchKey(i));
    return value !== undefined && Buffer.from(value).equals(benchValue(i));
  });
  return {
    open_wall_ms,
    recovery: host.recovery,
    keys: host.engine.stats().keys,
    rss_before_bytes,
    rss_after_bytes,
    verified,
  };
}

const PHASES: Record<string, (options: Options) => Promise<unknown>> = {
  "load-snapshot": phaseLoadSnapshot,
  "load-wal": phaseLoadWal,
  recover: phaseRecover,
};

/** Child entry: prints `RESULT <json>`; phases that must not close end with SIGKILL. */
async function runPhase(options: Options): Promise<void> {
  const phase = PHASES[options.phase!];
  if (phase === undefined) usageError(`unknown phase ${options.phase}`);
  const result = await phase(options);
  fs.writeSync(1, `RESULT ${JSON.stringify(result)}\n`);
  if (options.phase === "load-snapshot") process.exit(0);
  process.kill(process.pid, "SIGKILL");
}

/** Runs a phase in a child `bun` process; resolves with its result and the wall time to it. */
function child<T>(phase: string, data: string, keys: number): Promise<{ result: T; wall_ms: number }> {
  const script = new URL(import.meta.url).pathname;
  const args = [script, "--phase", phase, "--data", data, "--keys", String(keys)];
  const started_ms = performance.now();
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  let stdout = "";
  let result_ms = 0;
  proc.stdout!.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (result_ms === 0 && stdout.includes("RESULT ")) result_ms = performance.now() - started_ms;
  });
  return new Promise((resolve, reject) => {
    proc.on("exit", (code, signal) => {
      const line = stdout.split("\n").find((l) => l.startsWith("RESULT "));
      if (line === undefined) {
        reject(new Error(`phase ${phase} failed (code ${code}, signal ${signal})`));
        return;
      }
      resolve({ result: JSON.parse(line.slice(7)) as T, wall_ms: result_ms });
    });
  });
}

// ------------------------------------------------------------------------------------------ recovery

interface RecoveryBench {
  readonly load: LoadResult;
  readonly restart: RecoverResult;
  readonly restart_process_ms: number;
  readonly restart_db_only: RecoverResult;
  readonly wal_load: LoadResult;
  readonly wal_restart: RecoverResult;
  readonly wal_restart_process_ms: number;
}

async function benchRecovery(options: Options): Promise<RecoveryBench> {
  const snap_dir = freshDir(options.dir, "snapshot");
  const wal_dir = freshDir(options.dir, "wal");
  try {
    console.error(`  loading ${fmt(options.keys)} keys (mset × ${LOAD_BATCH_KEYS}), checkpoint, close`);
    const load = await child<LoadResult>("load-snapshot", snap_dir, options.keys);
    console.error("  restart (data.db + the WAL left by close)");
    const restart = await child<RecoverResult>("recover", snap_dir, options.keys);
    for (const name of fs.readdirSync(path.join(snap_dir, "wal")))
      fs.rmSync(path.join(snap_dir, "wal", name));
    console.error("  restart (data.db only: wal/ emptied)");
    const restart_db_only = await child<RecoverResult>("recover", snap_dir, options.keys);
    console.error(`  loading ${fmt(options.keys)} single-key sets, no checkpoint, SIGKILL`);
    const wal_load = await child<LoadResult>("load-wal", wal_dir, options.keys);
    if (fs.existsSync(path.join(wal_dir, "data.db"))) throw new Error("WAL-only run has a data.db");
    console.error("  restart (WAL only)");
    const wal_restart = await child<RecoverResult>("recover", wal_dir, options.keys);
    return {
      load: load.result,
      restart: restart.result,
      restart_process_ms: restart.wall_ms,
      restart_db_only: restart_db_only.result,
      wal_load: wal_load.result,
      wal_restart: wal_restart.result,
      wal_restart_process_ms: wal_restart.wall_ms,
    };
  } finally {
    fs.rmSync(snap_dir, { recursive: true, force: true });
    fs.rmSync(wal_dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------ redis

interface RedisBench {
  readonly version: string;
  readonly used_memory_per_key: number;
  readonly rss_per_key: number;
  readonly load_ms: number;
  readonly rdb_bytes: number;
  readonly rdb_load_ms: number;
  readonly rdb_first_pong_ms: number;
  readonly aof_bytes: number;
  readonly aof_load_ms: number;
  readonly aof_first_pong_ms: number;
}

const REDIS_POLL_MS = 5;
const CRLF = new Uint8Array([0x0d, 0x0a]);
const REDIS_START_TIMEOUT_MS = 120_000;

function haveRedis(): boolean {
  const which = (name: string) => spawnSync("which", [name]).status === 0;
  return which("redis-server") && which("redis-cli");
}

function cli(port: number, ...args: string[]): string {
  const out = spawnSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8" });
  return (out.stdout ?? "").trim();
}

function info(port: number, section: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of cli(port, "INFO", section).split(/\r?\n/)) {
    const at = line.indexOf(":");
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 1));
  }
  return fields;
}

function infoNumber(port: number, section: string, name: string): number {
  const value = Number(info(port, section).get(name));
  if (!Number.isFinite(value)) throw new Error(`redis INFO ${section}: no ${name}`);
  return value;
}

interface RedisServer {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly dir: string;
  /** Wall time from spawn to the first PONG (after loading the data set). */
  readonly first_pong_ms: number;
}

async function startRedis(dir: string, port: number, extra: readonly string[]): Promise<RedisServer> {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""];
  args.push("--logfile", path.join(dir, "redis.log"), "--daemonize", "no", ...extra);
  const started_ms = performance.now();
  const proc = spawn("redis-server", args, { stdio: "ignore" });
  while (cli(port, "PING") !== "PONG") {
    if (proc.exitCode !== null) throw new Error(`redis-server exited: see ${dir}/redis.log`);
    if (performance.now() - started_ms > REDIS_START_TIMEOUT_MS)
      throw new Error("redis-server start timed out");
    await Bun.sleep(REDIS_POLL_MS);
  }
  return { proc, port, dir, first_pong_ms: performance.now() - started_ms };
}

async function stopRedis(server: RedisServer): Promise<void> {
  const exited = new Promise<void>((resolve) => server.proc.once("exit", () => resolve()));
  if (server.proc.exitCode === null) cli(server.port, "SHUTDOWN", "NOSAVE");
  await exited;
}

/** The last "DB loaded from …: X seconds" line of the server log, in ms. */
function loadedMs(dir: string, what: "disk" | "append only file"): number {
  const log = fs.readFileSync(path.join(dir, "redis.log"), "utf8");
  const matches = [...log.matchAll(new RegExp(`DB loaded from ${what}: ([0-9.]+) seconds`, "g"))];
  const last = matches[matches.length - 1];
  if (last === undefined) throw new Error(`redis.log has no "DB loaded from ${what}" line`);
  return Number(last[1]) * 1000;
}

/** Writes `count` SET commands in the RESP protocol (for `redis-cli --pipe`). */
function writeProtocol(file: string, count: number): void {
  const encoder = new TextEncoder();
  const head = encoder.encode(`*3\r\n$3\r\nSET\r\n$${KEY_BYTES}\r\n`);
  const middle = encoder.encode(`\r\n$${VALUE_BYTES}\r\n`);
  const command_bytes = head.length + KEY_BYTES + middle.length + VALUE_BYTES + 2;
  const per_chunk = 8192;
  const chunk = new Uint8Array(per_chunk * command_bytes);
  const fd = fs.openSync(file, "w");
  try {
    for (let first = 0; first < count; first += per_chunk) {
      const n = Math.min(per_chunk, count - first);
      for (let j = 0; j < n; j++) {
        const at = j * command_bytes;
        chunk.set(head, at);
        chunk.set(benchKey(first + j), at + head.length);
        chunk.set(middle, at + head.length + KEY_BYTES);
        chunk.set(benchValue(first + j), at + head.length + KEY_BYTES + middle.length);
        chunk.set(CRLF, at + command_bytes - 2);
      }
      fs.writeSync(fd, chunk, 0, n * command_bytes);
    }
  } finally {
    fs.closeSync(fd);
  }
}

function pipeLoad(port: number, file: string, keys: number): number {
  const fd = fs.openSync(file, "r");
  const started_ms = performance.now();
  const out = spawnSync("redis-cli", ["-p", String(port), "--pipe"], { stdio: [fd, "pipe", "pipe"] });
  const load_ms = performance.now() - started_ms;
  fs.closeSync(fd);
  const text = `${out.stdout?.toString() ?? ""}${out.stderr?.toString() ?? ""}`;
  if (out.status !== 0 || !text.includes(`errors: 0, replies: ${keys}`))
    throw new Error(`redis-cli --pipe: ${text}`);
  return load_ms;
}

function dirBytes(dir: string): number {
  let bytes = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return bytes;
}

async function benchRedis(options: Options): Promise<RedisBench | undefined> {
  if (!haveRedis()) {
    console.error("  redis-server/redis-cli not installed: Redis comparison skipped");
    return undefined;
  }
  const dir = freshDir(options.dir, "redis");
  const port = 20000 + Math.floor(Math.random() * 20000);
  const protocol = path.join(dir, "load.resp");
  let server: RedisServer | undefined;
  try {
    writeProtocol(protocol, options.keys);
    const rdb_dir = path.join(dir, "rdb");
    const aof_dir = path.join(dir, "aof");
    fs.mkdirSync(rdb_dir);
    fs.mkdirSync(aof_dir);
    // RDB: load, measure memory, SAVE, restart.
    server = await startRedis(rdb_dir, port, ["--appendonly", "no"]);
    const version = info(port, "server").get("redis_version") ?? "?";
    const mem0 = infoNumber(port, "memory", "used_memory");
    const rss0 = infoNumber(port, "memory", "used_memory_rss");
    console.error(`  redis ${version}: loading ${fmt(options.keys)} keys with redis-cli --pipe`);
    const load_ms = pipeLoad(port, protocol, options.keys);
    const used_memory_per_key = (infoNumber(port, "memory", "used_memory") - mem0) / options.keys;
    const rss_per_key = (infoNumber(port, "memory", "used_memory_rss") - rss0) / options.keys;
    cli(port, "SAVE");
    await stopRedis(server);
    const rdb_bytes = fs.statSync(path.join(rdb_dir, "dump.rdb")).size;
    console.error("  redis: restart from RDB");
    server = await startRedis(rdb_dir, port, ["--appendonly", "no"]);
    const rdb_first_pong_ms = server.first_pong_ms;
    await stopRedis(server);
    const rdb_load_ms = loadedMs(rdb_dir, "disk");
    // AOF: fresh server with appendonly (no rewrite), load, restart.
    const aof_args = ["--appendonly", "yes", "--appendfsync", "no", "--auto-aof-rewrite-percentage", "0"];
    server = await startRedis(aof_dir, port, aof_args);
    pipeLoad(port, protocol, options.keys);
    await stopRedis(server);
    const aof_bytes = dirBytes(path.join(aof_dir, "appendonlydir"));
    console.error("  redis: restart from AOF");
    server = await startRedis(aof_dir, port, aof_args);
    const aof_first_pong_ms = server.first_pong_ms;
    await stopRedis(server);
    server = undefined;
    return {
      version,
      used_memory_per_key,
      rss_per_key,
      load_ms,
      rdb_bytes,
      rdb_load_ms,
      rdb_first_pong_ms,
      aof_bytes,
      aof_load_ms: loadedMs(aof_dir, "append only file"),
      aof_first_pong_ms,
    };
  } finally {
    if (server !== undefined && server.proc.exitCode === null) server.proc.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------------ report

function machine(options: Options): string[] {
  const cpuinfo = fs.existsSync("/proc/cpuinfo") ? fs.readFileSync("/proc/cpuinfo", "utf8") : "";
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "?";
  return [
    `date: ${new Date().toISOString()}`,
    `machine: nproc ${os.availableParallelism()}, CPU ${model}, ${fmt(os.totalmem() / 2 ** 30, 1)} GiB RAM, ${os.type()} ${os.release()}`,
    `load average at start: ${os
      .loadavg()
      .map((l) => fmt(l, 2))
      .join(" ")}`,
    `runtime: Bun ${process.versions.bun ?? "?"} (${process.execPath})`,
    `command: bun scripts/bench-engine.ts ${process.argv.slice(2).join(" ")}`.trimEnd(),
    `data dir: ${options.dir}; keys ${KEY_BYTES} B, values ${VALUE_BYTES} B; ops key space ${fmt(options.ops_keys)}, ` +
      `${options.duration_ms} ms per run, ${options.inflight} sets in flight per worker`,
  ];
}

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

function opsTables(runs: readonly OpsRun[]): string[] {
  const gets = runs.filter((r) => r.kind === "get");
  const sets = runs.filter((r) => r.kind === "set");
  const out: string[] = [];
  if (gets.length > 0) {
    out.push("### Gets (engine.get, random keys)");
    out.push(
      table(
        ["workers", "ops/s", "misses"],
        gets.map((r) => [`${r.workers}`, fmt(r.ops_per_s), `${r.misses}`]),
      ),
    );
  }
  if (sets.length > 0) {
    out.push("### Sets (engine.set, random keys)");
    out.push(
      table(
        [
          "fsync",
          "workers",
          "ops/s",
          "fsyncs",
          "records / fsync",
          "records / write batch (sampled)",
          "latency p50 / p99 / max (ms)",
        ],
        sets.map((r) => [
          r.fsync,
          `${r.workers}`,
          fmt(r.ops_per_s),
          fmt(r.fsyncs),
          r.fsyncs === 0 ? "-" : fmt(r.records_per_fsync, 1),
          fmt(r.mean_last_group_records, 1),
          `${fmt(r.latency_ms.p50, 2)} / ${fmt(r.latency_ms.p99, 2)} / ${fmt(r.latency_ms.max, 1)}`,
        ]),
      ),
    );
  }
  return out;
}

const TARGET_DB_MS = 1000;
const TARGET_WAL_MS = 1500;
const REDIS_BYTES_PER_KEY = 185;

function verdict(ok: boolean): string {
  return ok ? "met" : "**missed**";
}

function ratio(walkv: number, redis: number | undefined): string {
  return redis === undefined || redis === 0 ? "-" : `${fmt(walkv / redis, 2)}×`;
}

function recoveryTables(r: RecoveryBench, redis: RedisBench | undefined): string[] {
  const keys = r.load.keys;
  const s = r.load.stats;
  // The slot arrays (index_bytes) are arena chunks: arena_live_bytes already counts them.
  const arena_live = s.memory.arena_live_bytes;
  const rss_growth = r.load.rss_after_bytes - r.load.rss_before_bytes;
  const restart_rss = r.restart_db_only.rss_after_bytes - r.restart_db_only.rss_before_bytes;
  const cp = s.checkpoint;
  const mb_per_s = cp.duration_ms > 0 ? cp.bytes / MiB / (cp.duration_ms / 1000) : 0;
  const rec = (x: RecoverResult) => `${x.recovery.duration_ms} ms (openEngine ${fmt(x.open_wall_ms)} ms)`;
  const ok = (x: RecoverResult) => (x.verified && x.keys === keys ? "" : " — **keys missing**");
  return [
    `### Recovery (${fmt(keys)} keys)`,
    table(
      [
        "restart from",
        "recovery.duration_ms (openEngine wall)",
        "WAL read",
        "target",
        "Redis",
        "walkv / Redis",
      ],
      [
        [
          "data.db only (wal/ emptied)",
          rec(r.restart_db_only) + ok(r.restart_db_only),
          "-",
          `< ${TARGET_DB_MS} ms: ${verdict(r.restart_db_only.recovery.duration_ms < TARGET_DB_MS)}`,
          redis ? `RDB ${fmt(redis.rdb_load_ms)} ms` : "-",
          ratio(r.restart_db_only.recovery.duration_ms, redis?.rdb_load_ms),
        ],
        [
          "data.db + WAL left by close",
          rec(r.restart) + ok(r.restart),
          `${r.restart.recovery.wal_segments} segments, ${r.restart.recovery.wal_records} records replayed`,
          `< ${TARGET_DB_MS} ms: ${verdict(r.restart.recovery.duration_ms < TARGET_DB_MS)}`,
          "",
          "",
        ],
        [
          "WAL only (SIGKILLed, no data.db)",
          rec(r.wal_restart) + ok(r.wal_restart),
          `${fmt(r.wal_load.wal_bytes_on_disk / MiB, 1)} MiB, ${r.wal_restart.recovery.wal_segments} segments, ` +
            `${fmt(r.wal_restart.recovery.wal_records)} records`,
          `< ${TARGET_WAL_MS} ms: ${verdict(r.wal_restart.recovery.duration_ms < TARGET_WAL_MS)}`,
          redis ? `AOF ${fmt(redis.aof_load_ms)} ms` : "-",
          ratio(r.wal_restart.recovery.duration_ms, redis?.aof_load_ms),
        ],
      ],
    ),
    `Process start to recovered (spawn → openEngine done): data.db + WAL ${fmt(r.restart_process_ms)} ms, ` +
      `WAL only ${fmt(r.wal_restart_process_ms)} ms` +
      (redis
        ? `; Redis spawn → first PONG: RDB ${fmt(redis.rdb_first_pong_ms)} ms, AOF ${fmt(redis.aof_first_pong_ms)} ms.`
        : "."),
    "### Checkpoint",
    table(
      ["keys", "data.db bytes", "duration_ms", "MB/s (MiB)", "host.checkpoint() wall", "Redis RDB bytes"],
      [
        [
          fmt(cp.entries),
          fmt(r.load.data_db_bytes),
          `${cp.duration_ms}`,
          fmt(mb_per_s, 1),
          `${fmt(r.load.checkpoint_wall_ms)} ms`,
          redis ? fmt(redis.rdb_bytes) : "-",
        ],
      ],
    ),
    `### Memory (${fmt(keys)} keys)`,
    table(
      ["measure", "bytes / key", `target (Redis ~${REDIS_BYTES_PER_KEY})`, "Redis measured", "walkv / Redis"],
      [
        [
          `arena live (${fmt(arena_live)} B, index included)`,
          fmt(arena_live / keys, 1),
          verdict(arena_live / keys < REDIS_BYTES_PER_KEY),
          redis ? `used_memory ${fmt(redis.used_memory_per_key, 1)}` : "-",
          ratio(arena_live / keys, redis?.used_memory_per_key),
        ],
        [
          `of which index (slot arrays, ${fmt(s.memory.index_bytes)} B)`,
          fmt(s.memory.index_bytes / keys, 1),
          "",
          "",
          "",
        ],
        [
          "RSS growth during the load",
          fmt(rss_growth / keys, 1),
          verdict(rss_growth / keys < REDIS_BYTES_PER_KEY),
          redis ? `used_memory_rss ${fmt(redis.rss_per_key, 1)}` : "-",
          ratio(rss_growth / keys, redis?.rss_per_key),
        ],
        ["RSS growth of a restart (data.db only)", fmt(restart_rss / keys, 1), "", "", ""],
        ["arena reserved (grown)", fmt(s.memory.arena_reserved_bytes / keys, 1), "", "", ""],
      ],
    ),
    `### Load speed`,
    table(
      ["load", "walkv keys/s", "Redis (redis-cli --pipe) keys/s"],
      [
        [
          `mset × ${LOAD_BATCH_KEYS}, fsync no`,
          fmt(keys / (r.load.load_ms / 1000)),
          redis ? fmt(keys / (redis.load_ms / 1000)) : "-",
        ],
        [
          `single sets, ${LOAD_SETS_IN_FLIGHT} in flight, fsync no`,
          fmt(keys / (r.wal_load.load_ms / 1000)),
          "",
        ],
      ],
    ),
  ];
}

function redisOnlyTable(redis: RedisBench): string[] {
  return [
    `### Redis ${redis.version}`,
    table(
      ["used_memory / key", "RSS / key", "RDB load", "AOF load"],
      [
        [
          fmt(redis.used_memory_per_key, 1),
          fmt(redis.rss_per_key, 1),
          `${fmt(redis.rdb_load_ms)} ms`,
          `${fmt(redis.aof_load_ms)} ms`,
        ],
      ],
    ),
  ];
}

// ------------------------------------------------------------------------------------------ main

async function main(options: Options): Promise<void> {
  const header = machine(options);
  for (const line of header) console.error(line);
  let runs: OpsRun[] = [];
  let recovery: RecoveryBench | undefined;
  let redis: RedisBench | undefined;
  if (options.only.includes("gets") || options.only.includes("sets")) {
    console.error("gets/sets:");
    runs = await benchOps(options);
  }
  if (options.only.includes("recovery")) {
    console.error("recovery, checkpoint, memory:");
    recovery = await benchRecovery(options);
  }
  if (options.only.includes("redis")) {
    console.error("redis:");
    redis = await benchRedis(options);
  }
  const out = [header.map((line) => `- ${line}`).join("\n"), ...opsTables(runs)];
  if (recovery !== undefined) out.push(...recoveryTables(recovery, redis));
  else if (redis !== undefined) out.push(...redisOnlyTable(redis));
  if (options.only.includes("redis") && redis === undefined) out.push("Redis: not installed, skipped.");
  console.log(out.join("\n\n"));
}

if (import.meta.main) {
  const options = parseOptions(process.argv.slice(2));
  if (options.phase !== undefined) await runPhase(options);
  else await main(options);
}
