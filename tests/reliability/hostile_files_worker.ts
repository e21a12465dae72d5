/**
 * Worker of tests/reliability/hostile_files.test.ts: runs `verifyDataDir` and start-up (`openEngine`,
 * inline, on a SimDisk) on one corrupted data directory and posts what each did. It runs on a worker
 * so that the test can enforce a deadline on synchronous code: a hang is a terminated worker and a
 * failed test, never a stuck test run.
 *
 * @example
 * worker.postMessage({ case_id: 1, data_dir: "/data", files: [["/data/data.db", bytes]], keys: ["k0"],
 *   config: engineConfig({ data_dir: "/data" }) });
 * // ← { case_id: 1, verify: { kind: "ok", … }, start: { kind: "corruption", file, offset_bytes, … } }
 */
import type { EngineConfig } from "../../src/engine/config.ts";
import { CorruptionError, IoError } from "../../src/engine/errors.ts";
import { openEngine } from "../../src/engine/host.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";
import { verifyDataDir } from "../../src/engine/verify.ts";

export interface FilesCase {
  readonly case_id: number;
  readonly config: EngineConfig;
  /** Every file of the data directory: absolute SimDisk path → bytes. */
  readonly files: ReadonlyArray<readonly [string, Uint8Array]>;
  /** Keys whose recovered values are reported. */
  readonly keys: readonly string[];
}

/** What one of the two checks did. */
export type Outcome =
  | {
      readonly kind: "ok";
      readonly next_lsn: number;
      readonly torn_bytes: number;
      readonly warnings: readonly string[];
      /** Recovered values by key (start-up only), hex or null. */
      readonly values: ReadonlyArray<readonly [string, string | null]>;
    }
  | {
      readonly kind: "corruption";
      readonly file: string;
      readonly offset_bytes: number;
      readonly message: string;
    }
  | { readonly kind: "io" | "other"; readonly message: string };

export interface FilesResult {
  readonly case_id: number;
  readonly verify: Outcome;
  readonly start: Outcome;
  readonly verify_ms: number;
  readonly start_ms: number;
}

function disk(files: FilesCase["files"], wal_dir: string): SimDisk {
  const sim = new SimDisk({ rng: prng(1) });
  sim.mkdirp(wal_dir);
  for (const [path, bytes] of files) {
    const file = sim.open(path, { create: true, truncate: true });
    sim.write(file, bytes, 0);
    sim.close(file);
  }
  return sim;
}

function failure(error: unknown): Outcome {
  if (error instanceof CorruptionError)
    return { kind: "corruption", file: error.file, offset_bytes: error.offset_bytes, message: error.message };
  if (error instanceof IoError) return { kind: "io", message: error.message };
  return { kind: "other", message: error instanceof Error ? (error.stack ?? error.message) : String(error) };
}

function verifyOutcome(c: FilesCase): Outcome {
  try {
    const report = verifyDataDir(disk(c.files, `${c.config.data_dir}/wal`), c.config.data_dir, {
      max_record_bytes: c.config.max_batch_bytes,
    });
    if (report.error !== undefined) return failure(report.error);
    const torn_bytes = report.segments.reduce((n, s) => n + (s.covered ? 0 : s.torn_bytes), 0);
    return {
      kind: "ok",
      next_lsn: report.totals.next_lsn,
      torn_bytes,
      warnings: report.warnings,
      values: [],
    };
  } catch (error) {
    return failure(error);
  }
}

async function startOutcome(c: FilesCase): Promise<Outcome> {
  try {
    const host = await openEngine(c.config, {
      io: disk(c.files, `${c.config.data_dir}/wal`),
      inline: true,
      log: () => {},
    });
    const encoder = new TextEncoder();
    const values = c.keys.map((key) => {
      const value = host.engine.get(encoder.encode(key));
      return [key, value === undefined ? null : Buffer.from(value).toString("hex")] as const;
    });
    await host.close();
    const { next_lsn, torn_bytes } = host.recovery;
    return { kind: "ok", next_lsn, torn_bytes, warnings: [], values };
  } catch (error) {
    return failure(error);
  }
}

self.onmessage = async (event: MessageEvent<FilesCase>) => {
  const c = event.data;
  const verify_started = performance.now();
  const verify = verifyOutcome(c);
  const start_started = performance.now();
  const start = await startOutcome(c);
  const done = performance.now();
  const result: FilesResult = {
    case_id: c.case_id,
    verify,
    start,
    verify_ms: start_started - verify_started,
    start_ms: done - start_started,
  };
  self.postMessage(result);
};
