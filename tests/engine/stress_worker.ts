/**
 * Worker of the engine stress test (stress.test.ts), and the self-validating value codec both sides use.
 *
 * As a worker: receives a {@link StressJob}, attaches `new Engine(shared)`, answers `{ ready: true }`,
 * waits for `{ go: true }`, then for `duration_ms` runs seeded random get / mget / set / del / mset on
 * a small shared key space with up to `max_in_flight` writes outstanding. Every value it reads is
 * decoded and verified here (torn or misplaced values are violations); every read and acknowledged
 * write is logged (see {@link LOG}) with the visible LSN before and after it, so the main thread can
 * check the whole history against a model. Answers `{ done: true, ... }` ({@link StressReport}).
 */
import { isMainThread } from "node:worker_threads";
import { crc32c } from "../../src/engine/crc32c.ts";
import { Engine, type EngineShared } from "../../src/engine/engine.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { delEntry } from "../../src/engine/wal/record.ts";

/** Log record kinds. Layout: kind, then the fields listed. */
export const LOG = {
  /** seq, lsn, visible_before, visible_after, n, key × n. A SET (n = 1) or an MSET (n ≥ 1). */
  set: 1,
  /** seq, lsn, visible_before, visible_after, 1, key. A DEL that deleted a value (a tombstone at lsn). */
  del: 2,
  /** seq, observed_lsn, visible_before, visible_after, 1, key. A DEL of an absent key: wrote nothing. */
  del_absent: 3,
  /** visible_before, visible_after, n, (key, writer or -1 if absent, seq, read_your_writes_lsn) × n. */
  read: 4,
} as const;

export interface StressJob {
  readonly shared: EngineShared;
  readonly worker_id: number;
  readonly seed: number;
  readonly duration_ms: number;
  readonly key_count: number;
  /** Keys are grouped by `group_size`: most MSETs write one group, most MGETs read one. */
  readonly group_size: number;
  readonly max_in_flight: number;
}

export interface StressReport {
  readonly done: true;
  readonly worker_id: number;
  readonly log: Float64Array;
  readonly violations: string[];
  readonly reads: number;
  readonly writes: number;
  readonly elapsed_ms: number;
}

/** The decoded identity of a value: who wrote it, with which op, for which key. */
export interface ValueId {
  readonly writer: number;
  readonly seq: number;
  readonly key: number;
  readonly mset: boolean;
}

const MAGIC = 0xa7;
const HEADER_BYTES = 16;
const CRC_BYTES = 4;
const VALUE_MIN_BYTES = HEADER_BYTES + CRC_BYTES;
const VIOLATIONS_MAX = 20;

/** The key bytes of key index `index`. */
export function keyBytes(index: number): Uint8Array {
  return new TextEncoder().encode(`stress-key-${index.toString().padStart(3, "0")}`);
}

/**
 * A value of `length_bytes` (≥ 20) naming its writer, op seq and key, with deterministic filler and a
 * trailing CRC-32C: a torn, misplaced or garbled value fails {@link decodeValue}.
 */
export function encodeValue(id: ValueId, length_bytes: number): Uint8Array {
  const value = new Uint8Array(Math.max(VALUE_MIN_BYTES, length_bytes));
  const view = new DataView(value.buffer);
  view.setUint8(0, MAGIC);
  view.setUint8(1, id.mset ? 1 : 0);
  view.setUint16(2, id.writer, true);
  view.setUint16(4, id.key, true);
  view.setUint32(8, id.seq, true);
  view.setUint32(12, value.length, true);
  const salt = fillerSalt(id);
  for (let i = HEADER_BYTES; i < value.length - CRC_BYTES; i++) value[i] = (salt + i * 131) & 0xff;
  view.setUint32(value.length - CRC_BYTES, crc32c(value, 0, value.length - CRC_BYTES), true);
  return value;
}

/** The identity of a value made by {@link encodeValue}, or a string saying why it is not one. */
export function decodeValue(value: Uint8Array): ValueId | string {
  if (value.length < VALUE_MIN_BYTES) return `value of ${value.length} bytes is too short`;
  const view = new DataView(value.buffer, value.byteOffset, value.length);
  if (view.getUint8(0) !== MAGIC) return "bad magic";
  if (view.getUint32(12, true) !== value.length)
    return `length ${value.length} ≠ encoded ${view.getUint32(12, true)}`;
  const crc = crc32c(value, 0, value.length - CRC_BYTES);
  if (view.getUint32(value.length - CRC_BYTES, true) !== crc) return "checksum mismatch";
  const id: ValueId = {
    writer: view.getUint16(2, true),
    seq: view.getUint32(8, true),
    key: view.getUint16(4, true),
    mset: view.getUint8(1) === 1,
  };
  const salt = fillerSalt(id);
  for (let i = HEADER_BYTES; i < value.length - CRC_BYTES; i++) {
    if (value[i] !== ((salt + i * 131) & 0xff)) return `filler differs at byte ${i}`;
  }
  return id;
}

function fillerSalt(id: ValueId): number {
  return (id.writer * 7919 + id.seq * 31 + id.key * 17) >>> 0;
}

/** Runs one worker's workload; see the module comment. */
async function runJob(job: StressJob, started: Promise<void>): Promise<StressReport> {
  const engine = new Engine(job.shared);
  const rng = prng((job.seed ^ Math.imul(job.worker_id + 1, 0x9e3779b1)) | 0);
  const keys = Array.from({ length: job.key_count }, (_, i) => keyBytes(i));
  const state: WorkerState = {
    engine,
    job,
    rng,
    keys,
    acked_lsn: new Float64Array(job.key_count),
    log: [],
    violations: [],
    seq: 0,
    reads: 0,
  };
  const in_flight = new Set<Promise<void>>();
  await started;
  const start_ms = performance.now();
  const deadline_ms = start_ms + job.duration_ms;
  while (performance.now() < deadline_ms && state.violations.length < VIOLATIONS_MAX) {
    const roll = rng();
    if (roll < 0.25) read(state, [randomInt(rng, job.key_count)]);
    else if (roll < 0.4) read(state, pickKeys(state));
    else {
      const write: Promise<void> = startWrite(state, roll).finally(() => in_flight.delete(write));
      in_flight.add(write);
    }
    if (in_flight.size >= job.max_in_flight) await Promise.race(in_flight);
  }
  await Promise.all(in_flight);
  return {
    done: true,
    worker_id: job.worker_id,
    log: Float64Array.from(state.log),
    violations: state.violations,
    reads: state.reads,
    writes: state.seq,
    elapsed_ms: performance.now() - start_ms,
  };
}

interface WorkerState {
  readonly engine: Engine;
  readonly job: StressJob;
  readonly rng: () => number;
  readonly keys: Uint8Array[];
  /** Per key: the highest LSN this worker's acknowledged writes gave it (read-your-writes floor). */
  readonly acked_lsn: Float64Array;
  readonly log: number[];
  readonly violations: string[];
  seq: number;
  reads: number;
}

/** A group of keys (most often) or a random set of 2..5 distinct keys. */
function pickKeys(s: WorkerState): number[] {
  const { key_count, group_size } = s.job;
  if (s.rng() < 0.7) {
    const first = randomInt(s.rng, key_count / group_size) * group_size;
    return Array.from({ length: group_size }, (_, i) => first + i);
  }
  const count = 2 + randomInt(s.rng, 4);
  const picked = new Set<number>();
  while (picked.size < count) picked.add(randomInt(s.rng, key_count));
  return [...picked];
}

/** Value lengths: mostly small, one in five several KiB. */
function valueLength(s: WorkerState): number {
  return s.rng() < 0.2 ? 1024 + randomInt(s.rng, 7 * 1024) : VALUE_MIN_BYTES + randomInt(s.rng, 200);
}

function read(s: WorkerState, key_indexes: number[]): void {
  const visible_before = s.engine.wal.visibleLsn();
  const values =
    key_indexes.length === 1
      ? [s.engine.get(s.keys[key_indexes[0]!]!)]
      : s.engine.mget(key_indexes.map((k) => s.keys[k]!));
  const visible_after = s.engine.wal.visibleLsn();
  s.reads++;
  s.log.push(LOG.read, visible_before, visible_after, key_indexes.length);
  for (let i = 0; i < key_indexes.length; i++) {
    const key = key_indexes[i]!;
    const value = values[i];
    let writer = -1;
    let seq = 0;
    if (value !== undefined) {
      const id = decodeValue(value);
      if (typeof id === "string") violation(s, `key ${key}: torn or garbled value (${id})`);
      else if (id.key !== key) violation(s, `key ${key}: holds the value written to key ${id.key}`);
      else {
        writer = id.writer;
        seq = id.seq;
      }
    }
    s.log.push(key, writer, seq, s.acked_lsn[key]!);
  }
}

function startWrite(s: WorkerState, roll: number): Promise<void> {
  const seq = ++s.seq;
  const visible_before = s.engine.wal.visibleLsn();
  const done = (kind: number, lsn: number, key_indexes: number[]) => {
    const visible_after = s.engine.wal.visibleLsn();
    s.log.push(kind, seq, lsn, visible_before, visible_after, key_indexes.length, ...key_indexes);
    for (const k of key_indexes) s.acked_lsn[k] = Math.max(s.acked_lsn[k]!, lsn);
  };
  if (roll < 0.7) {
    const key = randomInt(s.rng, s.job.key_count);
    const value = encodeValue({ writer: s.job.worker_id, seq, key, mset: false }, valueLength(s));
    return s.engine.set(s.keys[key]!, value).then((lsn) => done(LOG.set, lsn, [key]));
  }
  if (roll < 0.82) {
    const key = randomInt(s.rng, s.job.key_count);
    return s.engine
      .write([delEntry(s.keys[key]!)])
      .then((r) => done(r.existed ? LOG.del : LOG.del_absent, r.lsn, [key]));
  }
  const key_indexes = pickKeys(s);
  const pairs = key_indexes.map((key): [Uint8Array, Uint8Array] => [
    s.keys[key]!,
    encodeValue({ writer: s.job.worker_id, seq, key, mset: true }, valueLength(s)),
  ]);
  return s.engine.mset(pairs).then((lsn) => done(LOG.set, lsn, key_indexes));
}

function violation(s: WorkerState, message: string): void {
  if (s.violations.length < VIOLATIONS_MAX) s.violations.push(`worker ${s.job.worker_id}: ${message}`);
}

if (!isMainThread) {
  const scope = self as unknown as Worker;
  let go!: () => void;
  const started = new Promise<void>((resolve) => {
    go = resolve;
  });
  scope.onmessage = (event: MessageEvent) => {
    const message = event.data as StressJob | { go: true };
    if ("go" in message) {
      go();
      return;
    }
    scope.postMessage({ ready: true });
    runJob(message, started).then(
      (report) => scope.postMessage(report, [report.log.buffer]),
      (error: unknown) => scope.postMessage({ failed: String((error as Error)?.stack ?? error) }),
    );
  };
}
