/**
 * Engine configuration: every limit of the storage engine, its default, and its validation.
 * docs/LIMITS.md lists them with the daemon flags that set them.
 *
 * @example
 * const config = engineConfig({ data_dir: "./var/data", fsync: "everysec" });
 */
import { InvalidError } from "./errors.ts";
import type { FsyncMode } from "./wal/wal_writer.ts";

export interface EngineConfig {
  /** The data directory: `data.db`, `wal/`. Created 0700 if missing. */
  readonly data_dir: string;
  readonly fsync: FsyncMode;
  /** Largest key. Default 64 KiB. */
  readonly max_key_bytes: number;
  /** Largest value (its encoded msgpack bytes). Default 16 MiB. */
  readonly max_value_bytes: number;
  /** Largest WAL record: one write or one atomic multi-key write, encoded. Default 32 MiB. */
  readonly max_batch_bytes: number;
  /** WAL segment size at which the writer rotates. Default 64 MiB. */
  readonly wal_segment_bytes: number;
  /** Shared WAL buffer (ring) size: bounds the bytes waiting for the disk. Default max_batch_bytes. */
  readonly wal_buffer_bytes: number;
  /** Checkpoint at least this often. Default 300 000 ms (5 min). 0 = no timer. */
  readonly checkpoint_interval_ms: number;
  /** Checkpoint once this many WAL bytes were written since the last one. Default 256 MiB. */
  readonly checkpoint_wal_bytes: number;
  /** log2 of the table's shard count. Default 12 (4096 shards). */
  readonly shard_bits: number;
  /** Memory limit of the shared arena (keys, values, index). Default 32 GiB (8 buffers of 4 GiB). */
  readonly memory_limit_bytes: number;
  /** Cut the WAL at the first corrupt record instead of refusing to start. Default false. */
  readonly repair_wal: boolean;
  /**
   * While a thread's writes wait to become visible (durable, with fsync `always`), it polls for them
   * once per event-loop turn, and sleeps in `Atomics.waitAsync` (visibility.ts) only once this long
   * passed without one of them settling. Default 300 µs; 0 = sleep at once.
   */
  readonly write_wait_spin_us: number;
  /**
   * fsync `always`: the WAL writer keeps its segment written with zeros this far past the last
   * record, so that a batch's fdatasync flushes data only, with no journal commit for a new file
   * size (wal_writer.ts). Default 1 MiB; 0 = off (for a copy-on-write file system, where writing
   * over the zeros allocates anew anyway).
   */
  readonly wal_zero_ahead_bytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
/** The longest a thread polls for its writes before it sleeps (10 ms). */
export const WRITE_WAIT_SPIN_US_MAX = 10_000;
/** The most zeros the WAL writer keeps written ahead of its records (64 MiB). */
export const WAL_ZERO_AHEAD_BYTES_MAX = 64 * MiB;

export const DEFAULT_CONFIG: Omit<EngineConfig, "data_dir" | "wal_buffer_bytes"> = {
  fsync: "always",
  max_key_bytes: 64 * KiB,
  max_value_bytes: 16 * MiB,
  max_batch_bytes: 32 * MiB,
  wal_segment_bytes: 64 * MiB,
  checkpoint_interval_ms: 300_000,
  checkpoint_wal_bytes: 256 * MiB,
  shard_bits: 12,
  memory_limit_bytes: 32 * GiB,
  repair_wal: false,
  write_wait_spin_us: 300,
  wal_zero_ahead_bytes: 1 * MiB,
};

/** Merges `partial` over the defaults and validates the result; throws InvalidError naming the field. */
export function engineConfig(partial: Partial<EngineConfig> & { data_dir: string }): EngineConfig {
  const config = { ...DEFAULT_CONFIG, ...partial };
  const wal_buffer_bytes = partial.wal_buffer_bytes ?? Math.max(config.max_batch_bytes, 1 * MiB);
  const result = { ...config, wal_buffer_bytes: roundUp8(wal_buffer_bytes) };
  validate(result);
  return result;
}

function validate(c: EngineConfig): void {
  if (typeof c.data_dir !== "string" || c.data_dir === "")
    throw new InvalidError("data_dir: a directory path is required");
  if (!["always", "everysec", "no"].includes(c.fsync))
    throw new InvalidError(`fsync: "${c.fsync}" is not always, everysec or no`);
  integer("max_key_bytes", c.max_key_bytes, 1, 16 * MiB);
  integer("max_value_bytes", c.max_value_bytes, 0, 1 * GiB);
  integer("max_batch_bytes", c.max_batch_bytes, 1 * KiB, 1 * GiB);
  integer("wal_segment_bytes", c.wal_segment_bytes, 64 * KiB, 4 * GiB);
  integer("wal_buffer_bytes", c.wal_buffer_bytes, 64 * KiB, 2 * GiB);
  integer("checkpoint_interval_ms", c.checkpoint_interval_ms, 0, 365 * 24 * 3600 * 1000);
  integer("checkpoint_wal_bytes", c.checkpoint_wal_bytes, 1 * MiB, 1024 * GiB);
  integer("shard_bits", c.shard_bits, 0, 16);
  integer("memory_limit_bytes", c.memory_limit_bytes, 16 * MiB, 32 * GiB);
  integer("write_wait_spin_us", c.write_wait_spin_us, 0, WRITE_WAIT_SPIN_US_MAX);
  integer("wal_zero_ahead_bytes", c.wal_zero_ahead_bytes, 0, WAL_ZERO_AHEAD_BYTES_MAX);
  const one_write = 64 + c.max_key_bytes + c.max_value_bytes;
  if (c.max_batch_bytes < one_write) {
    throw new InvalidError(
      `max_batch_bytes (${c.max_batch_bytes}) must hold one key and value (${one_write} bytes)`,
    );
  }
  if (c.wal_segment_bytes < c.max_batch_bytes + 32) {
    throw new InvalidError(
      "wal_segment_bytes must be larger than max_batch_bytes: a record never spans segments",
    );
  }
  if (c.wal_buffer_bytes < c.max_batch_bytes)
    throw new InvalidError("wal_buffer_bytes must be at least max_batch_bytes");
}

function integer(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidError(`${name}: ${value} is not an integer in [${min}, ${max}]`);
  }
}

function roundUp8(n: number): number {
  return Math.ceil(n / 8) * 8;
}
