/**
 * Scratch keys: a key copied into an array kept for its length and reused by the next call, so a
 * read (get, exists) allocates nothing for its key. Only for a key the engine reads synchronously
 * and does not keep; a key longer than {@link SCRATCH_KEY_MAX_BYTES} is a view of `bytes` (a long
 * key may be over the key limit: it is not copied before that is checked).
 *
 * @example
 * engine.exists(scratchCopy(frame, key_offset, key_length)); // valid until the next scratchCopy
 */
import { copyBytes } from "../engine/bytes.ts";

/** Longer keys are views, not copies (the cache holds one array per length up to this). */
export const SCRATCH_KEY_MAX_BYTES = 256;

const scratch_keys: Uint8Array[] = [];

/** `bytes[offset, offset + n)` in the scratch array of length `n` (or a view if longer). */
export function scratchCopy(bytes: Uint8Array, offset: number, n: number): Uint8Array {
  if (n > SCRATCH_KEY_MAX_BYTES) return bytes.subarray(offset, offset + n);
  let key = scratch_keys[n];
  if (key === undefined) {
    key = new Uint8Array(n);
    scratch_keys[n] = key;
  }
  copyBytes(key, 0, bytes, offset, n);
  return key;
}
