/**
 * Child process of kill9.test.ts. Usage: `bun tests/engine/kill9_child.ts <dir> <seed> [dump]`.
 *
 * Opens (recovers) the engine on `<dir>` with fsync always, tiny WAL segments and frequent checkpoints,
 * and prints to stdout, one line each, written synchronously (a line printed is in the pipe before
 * the next write starts or kill -9 lands):
 *   `L <log line>`                 an engine log line;
 *   `R <recovery result JSON>`     then, for every key, its recovered state:
 *   `D <key> <id> <lsn>`           the key holds the value written by op `id`, version `lsn`;
 *   `D <key> - 0`                  the key is absent;
 *   `D <key> BAD <reason>`         the key holds a value that is not one this test writes;
 *   `E`                            end of the dump. With `dump`, exits here; otherwise:
 *   `S <id> <set|del|mset> <keys>` a write was started (keys comma-separated);
 *   `A <id> <lsn> <existed 0|1>`   that write was acknowledged (its promise resolved);
 *   `F <id> <message>`             that write was rejected.
 * Several writers run concurrently until the parent kills the process. Values are self-describing
 * (`v|<id>|<key>|<length>|` + filler + CRC-32C in hex), so the dump names the op that wrote each key.
 */
import { writeSync } from "node:fs";
import { engineConfig } from "../../src/engine/config.ts";
import { crc32c } from "../../src/engine/crc32c.ts";
import type { Engine } from "../../src/engine/engine.ts";
import { hashKey } from "../../src/engine/hash.ts";
import { openEngine } from "../../src/engine/host.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { delEntry } from "../../src/engine/wal/record.ts";

const KEY_COUNT = 16;
const WRITERS = 6;
const CRC_HEX_BYTES = 8;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Writes `line` to stdout now (retrying while a non-blocking pipe is full). */
function emit(line: string): void {
  const bytes = encoder.encode(`${line}\n`);
  let offset_bytes = 0;
  while (offset_bytes < bytes.length) {
    try {
      offset_bytes += writeSync(1, bytes, offset_bytes);
    } catch (error) {
      if ((error as { code?: string }).code !== "EAGAIN") throw error;
    }
  }
}

const keyOf = (index: number) => encoder.encode(`k9-${index}`);

/** Keys 12..15 are cold (2% of picks): their latest versions often live only in data.db. */
const COLD_KEYS = 4;
const COLD_PICK_CHANCE = 0.02;

function pickKey(rng: () => number): number {
  const hot_keys = KEY_COUNT - COLD_KEYS;
  return rng() < COLD_PICK_CHANCE ? hot_keys + randomInt(rng, COLD_KEYS) : randomInt(rng, hot_keys);
}

/** The value op `id` writes to key `key`: `length_bytes` long, checksummed. */
function makeValue(id: string, key: number, length_bytes: number): Uint8Array {
  const head = `v|${id}|${key}|${length_bytes}|`;
  const body_bytes = length_bytes - CRC_HEX_BYTES;
  const text = head + filler(id, body_bytes - head.length);
  const body = encoder.encode(text);
  return encoder.encode(text + crc32c(body).toString(16).padStart(CRC_HEX_BYTES, "0"));
}

function filler(id: string, length: number): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  const salt = id.length * 7 + id.charCodeAt(id.length - 1);
  let s = "";
  for (let i = 0; i < length; i++) s += alphabet[(salt + i * 5) % alphabet.length];
  return s;
}

/** The op id that wrote `value` to `key`, or `BAD <reason>`. */
function describeValue(value: Uint8Array, key: number): string {
  const text = decoder.decode(value);
  const [magic, id, key_text, length_text] = text.split("|");
  if (magic !== "v" || id === undefined) return "BAD not-a-test-value";
  if (key_text !== String(key)) return `BAD written-to-key-${key_text}`;
  if (length_text !== String(value.length)) return "BAD wrong-length";
  const expected = makeValue(id, key, value.length);
  return expected.every((b, i) => b === value[i]) ? id : "BAD garbled";
}

function dump(engine: Engine): void {
  for (let key = 0; key < KEY_COUNT; key++) {
    const key_bytes = keyOf(key);
    const h = hashKey(key_bytes);
    const shard = engine.table.shardOf(h);
    engine.table.lockShard(shard);
    const head = engine.table.headRef(key_bytes, 0, key_bytes.length, h);
    const present = head !== 0 && !engine.table.isTombstone(head);
    const lsn = present ? engine.table.versionLsn(head) : 0;
    engine.table.unlockShard(shard);
    const value = engine.get(key_bytes);
    if (present !== (value !== undefined)) emit(`D ${key} BAD get-disagrees-with-table`);
    else emit(`D ${key} ${value === undefined ? "-" : describeValue(value, key)} ${lsn}`);
  }
  emit("E");
}

/** One writer: forever start a random write, print it, await it, print the outcome. */
async function writer(engine: Engine, rng: () => number, next_id: () => string): Promise<never> {
  for (;;) {
    const id = next_id();
    const roll = rng();
    const length_bytes = () => 64 + randomInt(rng, rng() < 0.2 ? 3000 : 400);
    try {
      if (roll < 0.55) {
        const key = pickKey(rng);
        emit(`S ${id} set ${key}`);
        const lsn = await engine.set(keyOf(key), makeValue(id, key, length_bytes()));
        emit(`A ${id} ${lsn} 1`);
      } else if (roll < 0.7) {
        const key = pickKey(rng);
        emit(`S ${id} del ${key}`);
        const result = await engine.write([delEntry(keyOf(key))]);
        emit(`A ${id} ${result.lsn} ${result.existed ? 1 : 0}`);
      } else {
        const keys = new Set<number>();
        for (let n = 2 + randomInt(rng, 3); keys.size < n; ) keys.add(pickKey(rng));
        emit(`S ${id} mset ${[...keys].join(",")}`);
        const lsn = await engine.mset([...keys].map((k) => [keyOf(k), makeValue(id, k, length_bytes())]));
        emit(`A ${id} ${lsn} 1`);
      }
    } catch (error) {
      emit(`F ${id} ${(error as Error).message}`);
    }
  }
}

async function main(): Promise<void> {
  const [data_dir, seed_text, mode] = process.argv.slice(2);
  if (data_dir === undefined || seed_text === undefined)
    throw new Error("usage: kill9_child.ts <dir> <seed> [dump]");
  const config = engineConfig({
    data_dir,
    fsync: "always",
    shard_bits: 4,
    memory_limit_bytes: 32 << 20,
    max_key_bytes: 64,
    max_value_bytes: 4096,
    max_batch_bytes: 32 << 10,
    wal_segment_bytes: 64 << 10,
    checkpoint_wal_bytes: 1 << 20,
    checkpoint_interval_ms: 100,
  });
  const host = await openEngine(config, { log: (line) => emit(`L ${line}`) });
  emit(`R ${JSON.stringify(host.recovery)}`);
  dump(host.engine);
  if (mode === "dump") process.exit(0);
  const seed = Number(seed_text);
  const rng = prng(seed);
  let count = 0;
  const next_id = () => `${seed}.${++count}`;
  await Promise.all(Array.from({ length: WRITERS }, () => writer(host.engine, rng, next_id)));
}

await main();
