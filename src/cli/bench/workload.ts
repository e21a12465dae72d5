/**
 * What `walkv bench` sends, reproducibly from a seed: each connection draws its own stream of
 * requests (GET or SET, and a key) from the project PRNG seeded by {@link connectionSeed}, so the
 * requests of connection c depend only on the seed, c and the flags, never on timing.
 *
 * Keys are `key:` and 12 decimal digits (16 bytes, like redis-benchmark's `key:__rand_int__`), chosen
 * uniformly from `keys`. Every SET writes the same value: {@link valuePayload}.
 *
 * @example
 * const stream = new RequestStream(connectionSeed(1, 0), 0.5, 100_000);
 * const op = stream.nextOp();   // OP_GET or OP_SET
 * const key = stream.nextKey(); // 0 … 99_999
 * keyText(key);                 // "key:000000004711"
 */
import { assert } from "../../engine/errors.ts";
import { prng } from "../../engine/io/prng.ts";

export const OP_GET = 0;
export const OP_SET = 1;
/** Op names by op number. */
export const OP_NAMES = ["get", "set"] as const;

export const KEY_PREFIX = "key:";
export const KEY_DIGITS = 12;
/** Bytes of every key: the prefix and the digits. */
export const KEY_BYTES = KEY_PREFIX.length + KEY_DIGITS;
/** Largest key space: 32-bit draws keep keys uniform well below 2^32. */
export const MAX_KEYS = 1_000_000_000;

/**
 * The seed of connection `connection_index`'s stream (a 32-bit mix of the run's seed and the index).
 *
 * @example
 * new RequestStream(connectionSeed(seed, 3), read_ratio, keys); // connection 3's requests
 */
export function connectionSeed(seed: number, connection_index: number): number {
  assert(Number.isInteger(seed) && Number.isInteger(connection_index) && connection_index >= 0);
  return (seed ^ Math.imul(connection_index + 1, 0x9e3779b1)) >>> 0;
}

/**
 * One connection's requests: call {@link nextOp} then {@link nextKey} per request.
 *
 * @example
 * const s = new RequestStream(7, 1, 10); s.nextOp(); // OP_GET: read ratio 1 never sets
 */
export class RequestStream {
  private readonly random: () => number;

  constructor(
    seed: number,
    private readonly read_ratio: number,
    private readonly keys: number,
  ) {
    assert(read_ratio >= 0 && read_ratio <= 1, `read ratio must be in [0, 1], got ${read_ratio}`);
    assert(Number.isInteger(keys) && keys >= 1 && keys <= MAX_KEYS, `keys out of range: ${keys}`);
    this.random = prng(seed);
  }

  /** OP_GET with probability `read_ratio`, else OP_SET (ratio 1: always GET; 0: always SET). */
  nextOp(): number {
    return this.random() < this.read_ratio ? OP_GET : OP_SET;
  }

  /** A key index, uniform in [0, keys). */
  nextKey(): number {
    return Math.floor(this.random() * this.keys);
  }
}

/**
 * How many requests connection `connection_index` sends in a run of `requests` over `connections`:
 * an even share, the first `requests % connections` connections one more.
 *
 * @example
 * connectionQuota(10, 4, 0); // 3 (3 + 3 + 2 + 2 = 10)
 */
export function connectionQuota(requests: number, connections: number, connection_index: number): number {
  assert(connections >= 1 && connection_index >= 0 && connection_index < connections);
  return Math.floor(requests / connections) + (connection_index < requests % connections ? 1 : 0);
}

/**
 * Writes key `key_index`'s 12 digits (ASCII, zero-padded) at `bytes[offset, offset + 12)`.
 *
 * @example
 * writeKeyDigits(frame, key_offset + KEY_PREFIX.length, 4711);
 */
export function writeKeyDigits(bytes: Uint8Array, offset: number, key_index: number): void {
  let n = key_index;
  for (let i = offset + KEY_DIGITS - 1; i >= offset; i--) {
    bytes[i] = 0x30 + (n % 10);
    n = Math.floor(n / 10);
  }
}

/**
 * The key of index `key_index`, as text.
 *
 * @example
 * keyText(12345); // "key:000000012345"
 */
export function keyText(key_index: number): string {
  assert(Number.isInteger(key_index) && key_index >= 0 && key_index < 10 ** KEY_DIGITS);
  return `${KEY_PREFIX}${String(key_index).padStart(KEY_DIGITS, "0")}`;
}

/**
 * The bytes every SET writes, `length` of them: printable ASCII drawn from the PRNG seeded by `seed`
 * (reproducible; not one repeated byte, so nothing along the way can shortcut it).
 *
 * @example
 * valuePayload(1, 97); // 97 bytes, the same for every run with seed 1
 */
export function valuePayload(seed: number, length: number): Uint8Array {
  assert(Number.isInteger(length) && length >= 0);
  const random = prng(seed);
  const payload = new Uint8Array(length);
  for (let i = 0; i < length; i++) payload[i] = 0x21 + Math.floor(random() * 94); // '!' … '~'
  return payload;
}
