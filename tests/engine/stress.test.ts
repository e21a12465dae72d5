/**
 * The threaded engine under real concurrency: ≥ 4 workers hammer 32 shared keys (stress_worker.ts)
 * with many writes in flight each; then the main thread checks the whole history against a model.
 * Writes are replayed in LSN order (one LSN per write; an MSET is one LSN over its keys). Checked:
 * no torn or misplaced value (in the workers), unique LSNs, every read equals the model's state at
 * some LSN between the visible LSN before and after it (one LSN for all keys of an MGET), no MGET
 * sees half of an MSET, read-your-writes, the final state and the state recovered after close.
 * Env: WALKV_SEED (default 20240611), WALKV_STRESS_MS (default 3000).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type EngineConfig, engineConfig } from "../../src/engine/config.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { hashKey } from "../../src/engine/hash.ts";
import { openEngine } from "../../src/engine/host.ts";
import { STALE } from "../../src/engine/table.ts";
import type { FsyncMode } from "../../src/engine/wal/wal_writer.ts";
import {
  decodeValue,
  encodeValue,
  keyBytes,
  LOG,
  type StressJob,
  type StressReport,
} from "./stress_worker.ts";

const SEED = Number(process.env.WALKV_SEED ?? 20240611);
const STRESS_MS = Number(process.env.WALKV_STRESS_MS ?? 3000);
const WORKERS = 4;
const KEY_COUNT = 32;
const GROUP_SIZE = 4;
const MAX_IN_FLIGHT = 16;
const VIOLATIONS_MAX = 20;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function config(fsync: FsyncMode): EngineConfig {
  const data_dir = mkdtempSync(join(tmpdir(), "walkv-stress-"));
  dirs.push(data_dir);
  return engineConfig({
    data_dir,
    fsync,
    shard_bits: 4,
    memory_limit_bytes: 64 << 20,
    max_key_bytes: 64,
    max_value_bytes: 16 << 10,
    max_batch_bytes: 64 << 10,
    wal_segment_bytes: 1 << 20,
    checkpoint_wal_bytes: 1 << 20,
    checkpoint_interval_ms: 250,
  });
}

// ---------------------------------------------------------------- running the workers

/** Starts the workers, releases them together, and resolves with their reports. */
async function runWorkers(job: Omit<StressJob, "worker_id">): Promise<StressReport[]> {
  const workers = Array.from(
    { length: WORKERS },
    () => new Worker(new URL("./stress_worker.ts", import.meta.url).href, { type: "module" }),
  );
  try {
    const ready: Promise<void>[] = [];
    const reports = workers.map((worker, worker_id) => {
      let onReady!: () => void;
      ready.push(new Promise<void>((resolve) => (onReady = resolve)));
      return new Promise<StressReport>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent) => {
          const message = event.data as { ready?: true; done?: true; failed?: string };
          if (message.ready) onReady();
          else if (message.done) resolve(event.data as StressReport);
          else reject(new Error(`worker ${worker_id} failed (seed ${job.seed}): ${message.failed}`));
        };
        worker.onerror = (event: ErrorEvent) =>
          reject(new Error(`worker ${worker_id} died (seed ${job.seed}): ${event.message}`));
        worker.postMessage({ ...job, worker_id } satisfies StressJob);
      });
    });
    await Promise.all(ready);
    for (const worker of workers) worker.postMessage({ go: true });
    return await Promise.all(reports);
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

// ---------------------------------------------------------------- the model

interface Write {
  readonly writer: number;
  readonly seq: number;
  readonly lsn: number;
  readonly deletes: boolean;
  readonly keys: number[];
  readonly visible_before: number;
  readonly visible_after: number;
}

interface Read {
  readonly reader: number;
  readonly visible_before: number;
  readonly visible_after: number;
  readonly keys: number[];
  /** `writer:seq` of each value read, null where the key was absent. */
  readonly ids: Array<string | null>;
  /** Per key: the reader's read-your-writes floor (highest LSN its acknowledged writes gave the key). */
  readonly floors: number[];
}

/** A key's versions in LSN order: the `writer:seq` written, or null for a delete. */
type History = Array<{ readonly lsn: number; readonly id: string | null }>;

interface Model {
  readonly writes: Map<string, Write>;
  readonly histories: History[];
  readonly reads: Read[];
  /** DELs of absent keys: a read of "absent" plus the version they observed. */
  readonly absent_dels: Array<Read & { readonly observed_lsn: number }>;
}

const idOf = (writer: number, seq: number) => `${writer}:${seq}`;

/** Decodes the workers' logs (layouts in stress_worker.ts LOG) into writes and reads. */
function parseLogs(reports: StressReport[]): Omit<Model, "histories"> {
  const writes = new Map<string, Write>();
  const reads: Read[] = [];
  const absent_dels: Model["absent_dels"] = [];
  for (const { worker_id: writer, log } of reports) {
    let i = 0;
    const next = () => log[i++]!;
    while (i < log.length) {
      const kind = next();
      if (kind === LOG.read) {
        const visible_before = next();
        const visible_after = next();
        const read: Read = { reader: writer, visible_before, visible_after, keys: [], ids: [], floors: [] };
        for (let n = next(); n > 0; n--) {
          read.keys.push(next());
          const value_writer = next();
          const value_seq = next();
          read.ids.push(value_writer < 0 ? null : idOf(value_writer, value_seq));
          read.floors.push(next());
        }
        reads.push(read);
        continue;
      }
      const [seq, lsn, visible_before, visible_after, n] = [next(), next(), next(), next(), next()];
      const keys = Array.from({ length: n }, next);
      if (kind === LOG.del_absent) {
        const read = { reader: writer, visible_before, visible_after, keys, ids: [null], floors: [0] };
        absent_dels.push({ ...read, observed_lsn: lsn });
      } else {
        const deletes = kind === LOG.del;
        writes.set(idOf(writer, seq), { writer, seq, lsn, deletes, keys, visible_before, visible_after });
      }
    }
  }
  return { writes, reads, absent_dels };
}

function buildModel(reports: StressReport[], violations: string[]): Model {
  const parsed = parseLogs(reports);
  const histories: History[] = Array.from({ length: KEY_COUNT }, () => []);
  const by_lsn = new Map<number, string>();
  for (const [id, w] of parsed.writes) {
    const other = by_lsn.get(w.lsn);
    if (other !== undefined) violations.push(`LSN ${w.lsn} acknowledged to two writes: ${other} and ${id}`);
    by_lsn.set(w.lsn, id);
    if (!(w.visible_before < w.lsn && w.lsn <= w.visible_after))
      violations.push(`write ${id}: LSN ${w.lsn} outside (${w.visible_before}, ${w.visible_after}]`);
    for (const key of w.keys) histories[key]!.push({ lsn: w.lsn, id: w.deletes ? null : id });
  }
  for (const history of histories) history.sort((a, b) => a.lsn - b.lsn);
  return { ...parsed, histories };
}

/** The model's value of `key` at LSN `lsn`: `writer:seq`, or null if absent. */
function stateAt(history: History, lsn: number): string | null {
  let low = 0;
  let high = history.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (history[mid]!.lsn <= lsn) low = mid + 1;
    else high = mid;
  }
  return low === 0 ? null : history[low - 1]!.id;
}

/** True if some LSN in [visible_before, visible_after] shows exactly what `read` saw, for all its keys. */
function linearizable(model: Model, read: Read): boolean {
  const candidates = [read.visible_before];
  for (const key of read.keys) {
    for (const { lsn } of model.histories[key]!) {
      if (lsn > read.visible_before && lsn <= read.visible_after) candidates.push(lsn);
    }
  }
  return candidates.some((lsn) =>
    read.keys.every((key, i) => stateAt(model.histories[key]!, lsn) === read.ids[i]),
  );
}

/** Each key's state at the window's start and its writes inside the window, for failure messages. */
function describeWindow(model: Model, read: Read): string {
  return read.keys
    .map((key) => {
      const history = model.histories[key]!;
      const inside = history.filter((v) => v.lsn > read.visible_before && v.lsn <= read.visible_after);
      const changes = inside.map((v) => `${v.id ?? "del"}@${v.lsn}`).join(" ");
      return `key ${key}: ${stateAt(history, read.visible_before)} then [${changes}]`;
    })
    .join("; ");
}

/** True if `key` was deleted at an LSN in (`after_lsn`, `until_lsn`]. */
function deletedBetween(model: Model, key: number, after_lsn: number, until_lsn: number): boolean {
  return model.histories[key]!.some((v) => v.id === null && v.lsn > after_lsn && v.lsn <= until_lsn);
}

interface ReadStats {
  mset_checks: number;
  concurrent_reads: number;
}

/** Every check of one read; returns violations (empty if it is sound). */
function checkRead(model: Model, read: Read, stats: ReadStats): string[] {
  const where = `read by worker ${read.reader} of keys [${read.keys}] in [${read.visible_before}, ${read.visible_after}] saw [${read.ids}]`;
  const versions: number[] = [];
  for (let i = 0; i < read.keys.length; i++) {
    const id = read.ids[i]!;
    if (id === null) {
      versions.push(-1);
      continue;
    }
    const write = model.writes.get(id);
    if (write === undefined || write.deletes || !write.keys.includes(read.keys[i]!))
      return [`${where}: value ${id} of key ${read.keys[i]} was never acknowledged`];
    versions.push(write.lsn);
  }
  const problems: string[] = [];
  if (read.visible_after > read.visible_before) stats.concurrent_reads++;
  if (!linearizable(model, read))
    problems.push(`${where}: no LSN in the window shows this state; model: ${describeWindow(model, read)}`);
  read.keys.forEach((key, i) => {
    const floor = read.floors[i]!;
    const ok =
      versions[i]! >= 0
        ? versions[i]! >= floor
        : floor === 0 || deletedBetween(model, key, floor - 1, read.visible_after);
    if (!ok) problems.push(`${where}: key ${key} is older than the reader's own write at LSN ${floor}`);
  });
  problems.push(...checkMsets(model, read, versions, where, stats));
  return problems;
}

/**
 * No half MSET: if the read saw key k from MSET m (LSN L), every other key of m it read holds m's value,
 * a later value, or was deleted after L (within the read's window).
 */
function checkMsets(model: Model, read: Read, versions: number[], where: string, stats: ReadStats): string[] {
  const problems: string[] = [];
  for (const id of new Set(read.ids)) {
    const mset = id === null ? undefined : model.writes.get(id);
    if (mset === undefined || mset.keys.length < 2) continue;
    const shared = read.keys.flatMap((key, i) => (mset.keys.includes(key) ? [i] : []));
    if (shared.length < 2) continue;
    stats.mset_checks++;
    for (const i of shared) {
      const key = read.keys[i]!;
      const ok =
        versions[i]! >= 0
          ? versions[i]! >= mset.lsn
          : deletedBetween(model, key, mset.lsn, read.visible_after);
      if (!ok) problems.push(`${where}: half of MSET ${id} (LSN ${mset.lsn}): key ${key} is older`);
    }
  }
  return problems;
}

/** The key's value in the engine against the model's final state. */
function checkFinal(model: Model, engine: Engine, what: string): string[] {
  const problems: string[] = [];
  for (let key = 0; key < KEY_COUNT; key++) {
    const history = model.histories[key]!;
    const expected = history.length === 0 ? null : history[history.length - 1]!.id;
    const value = engine.get(keyBytes(key));
    let actual: string | null = null;
    if (value !== undefined) {
      const decoded = decodeValue(value);
      actual = typeof decoded === "string" ? `garbled (${decoded})` : idOf(decoded.writer, decoded.seq);
      if (typeof decoded !== "string" && decoded.key !== key) actual = `value of key ${decoded.key}`;
    }
    if (actual !== expected) problems.push(`${what}: key ${key} holds ${actual}, the model says ${expected}`);
  }
  return problems;
}

// ---------------------------------------------------------------- the test

async function stress(fsync: FsyncMode, duration_ms: number): Promise<void> {
  const cfg = config(fsync);
  const host = await openEngine(cfg, { log: () => {} });
  const reports = await runWorkers({
    shared: host.shared,
    seed: SEED,
    duration_ms,
    key_count: KEY_COUNT,
    group_size: GROUP_SIZE,
    max_in_flight: MAX_IN_FLIGHT,
  });
  const violations = reports.flatMap((r) => r.violations);
  const model = buildModel(reports, violations);
  const stats: ReadStats = { mset_checks: 0, concurrent_reads: 0 };
  for (const read of [...model.reads, ...model.absent_dels]) {
    if (violations.length >= VIOLATIONS_MAX) break;
    violations.push(...checkRead(model, read, stats));
  }
  for (const del of model.absent_dels) {
    const seen = model.histories[del.keys[0]!]!.some((v) => v.lsn === del.observed_lsn && v.id === null);
    if (del.observed_lsn !== 0 && !seen)
      violations.push(
        `DEL of absent key ${del.keys[0]} observed LSN ${del.observed_lsn}: not a delete of it`,
      );
  }
  violations.push(...checkFinal(model, host.engine, "final state"));
  const group_records = host.engine.stats().wal.last_group_records;
  await host.close();
  const reopened = await openEngine(cfg, { log: () => {} });
  violations.push(...checkFinal(model, reopened.engine, "recovered state"));
  await reopened.close();

  const writes = reports.reduce((n, r) => n + r.writes, 0);
  const rates = reports.map((r) => Math.round(((r.reads + r.writes) / r.elapsed_ms) * 1000));
  console.log(
    `stress fsync=${fsync} seed=${SEED}: ${writes} writes, ${model.reads.length} reads, ops/s per worker [${rates}], ` +
      `${stats.mset_checks} MGET×MSET overlaps checked, ${stats.concurrent_reads} reads with writes landing mid-read, ` +
      `${model.absent_dels.length} DELs of absent keys, last group ${group_records} records`,
  );
  expect({ seed: SEED, fsync, violations: violations.slice(0, VIOLATIONS_MAX) }).toEqual({
    seed: SEED,
    fsync,
    violations: [],
  });
  // The workload must have exercised what it checks.
  expect(stats.mset_checks).toBeGreaterThan(0);
  expect(stats.concurrent_reads).toBeGreaterThan(0);
  expect(model.absent_dels.length).toBeGreaterThan(0);
}

describe("engine under concurrent workers", () => {
  // The smallest form of a bug the stress run finds (an MGET mixing two LSNs): a DEL's finalize removes
  // the key's slot, and a reader still at an older visible LSN — an MGET's later keys — then reads
  // "absent" instead of the older value or STALE (retry).
  test("a read at an older visible LSN after a DEL removed the key sees the old value or STALE", async () => {
    const host = await openEngine(config("no"), { log: () => {} });
    try {
      const key = keyBytes(0);
      const value = encodeValue({ writer: 0, seq: 1, key: 0, mset: false }, 64);
      await host.engine.set(key, value);
      const visible_lsn = host.engine.wal.visibleLsn();
      expect(await host.engine.del(key)).toBe(true);
      const result = host.engine.table.get(key, hashKey(key), visible_lsn, true);
      const seen =
        result === STALE
          ? "STALE"
          : result === undefined
            ? "absent"
            : Buffer.from(result).equals(value)
              ? "the old value"
              : "another value";
      expect(["STALE", "the old value"]).toContain(seen);
    } finally {
      await host.close();
    }
  });

  test(
    `${WORKERS} workers, fsync no: every read and the recovered state match the model`,
    async () => {
      await stress("no", STRESS_MS);
    },
    60_000 + STRESS_MS * 4,
  );

  test(
    `${WORKERS} workers, fsync always (shorter): every read and the recovered state match the model`,
    async () => {
      await stress("always", Math.max(500, Math.round(STRESS_MS / 3)));
    },
    60_000 + STRESS_MS * 4,
  );
});
