/**
 * Shared helpers of the engine tests: a small configuration, an inline engine on a simulated disk,
 * and stepping the WAL writer until a write settles.
 *
 * @example
 * const { host, engine, disk, log } = await openSim({ fsync: "everysec" });
 * await settle(host, engine.set(utf8("k"), utf8("v")));
 */
import { type EngineConfig, engineConfig } from "../../src/engine/config.ts";
import { type InlineHost, openEngine } from "../../src/engine/host.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";

/** The seed of a test file's simulated disk (WALKV_SEED overrides). */
export const SEED = Number(process.env.WALKV_SEED ?? 20240613);

/** Limits small enough that tests reach them cheaply. */
export const SMALL_LIMITS = {
  shard_bits: 4,
  memory_limit_bytes: 64 << 20,
  max_key_bytes: 256,
  max_value_bytes: 4096,
  max_batch_bytes: 8192,
  wal_segment_bytes: 64 << 10,
} as const;

export const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
export const text = (bytes: Uint8Array | undefined): string | undefined =>
  bytes === undefined ? undefined : new TextDecoder().decode(bytes);

/** A configuration on `/data` (or `overrides.data_dir`) with {@link SMALL_LIMITS}, fsync always. */
export function smallConfig(overrides: Partial<EngineConfig> = {}): EngineConfig {
  return engineConfig({ data_dir: "/data", fsync: "always", ...SMALL_LIMITS, ...overrides });
}

/** Opens an inline engine on `disk`, capturing its log lines. */
export async function openSim(
  overrides: Partial<EngineConfig> = {},
  disk = new SimDisk({ rng: prng(SEED) }),
) {
  const log: string[] = [];
  const host = (await openEngine(smallConfig(overrides), {
    io: disk,
    inline: true,
    log: (l) => log.push(l),
  })) as InlineHost;
  return { host, engine: host.engine, disk, log };
}

/** Runs the WAL writer until it has nothing left to do (writes, rotations), then awaits `write`. */
export async function settle<T>(host: InlineHost, write: Promise<T>): Promise<T> {
  while (host.step()) {}
  return await write;
}

/** The whole content of a file on `disk`. */
export function readWholeFile(disk: SimDisk, path: string): Uint8Array {
  const file = disk.open(path);
  try {
    const bytes = new Uint8Array(disk.size(file));
    disk.read(file, bytes, 0);
    return bytes;
  } finally {
    disk.close(file);
  }
}

/** The size of `path` on the simulated disk. */
export function fileSize(disk: SimDisk, path: string): number {
  const file = disk.open(path);
  try {
    return disk.size(file);
  } finally {
    disk.close(file);
  }
}
