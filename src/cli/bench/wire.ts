/**
 * The interface of the two wire protocols `walkv bench` speaks: walkv's msgpack frames
 * (msgpack_wire.ts) and RESP2 (resp_wire.ts). Each keeps one precomputed template per op and writes
 * a request by copying it and patching the key digits (and the id) in place; each scans responses
 * byte by byte, reading only what it needs (the id and code, or RESP's first byte) and skipping the
 * result by its length. Nothing on these paths allocates unless a response is an error.
 *
 * @example
 * const wire: Wire = new MsgpackWire({ value_bytes: 100, seed: 1 });
 * const n = wire.writeRequest(out, 0, OP_SET, 4711, 1); // out[0, n) is one whole request
 * const end = wire.scanResponse(bytes, 0, bytes.length, 1); // -1 until a whole response is there
 * if (end >= 0 && wire.error !== undefined) count(wire.error);
 */
import { KEY_BYTES, KEY_PREFIX } from "./workload.ts";

/** Largest response the bench accepts (a GET of a value written by someone else may be big). */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/**
 * A response the bench cannot go on after: malformed, out of order, or a refused connection.
 *
 * @example
 * throw new WireError("response id 7, expected 6");
 */
export class WireError extends Error {}

/** What a {@link Wire} needs to build its templates. */
export interface WireOptions {
  /** msgpack: bytes of the whole encoded value (a str, header included); RESP: the bulk string's. */
  readonly value_bytes: number;
  /** Seed of the value's bytes ({@link valuePayload}). */
  readonly seed: number;
}

/**
 * One wire protocol; see the module comment.
 *
 * @example
 * const wire: Wire = protocol === "resp" ? new RespWire(options) : new MsgpackWire(options);
 */
export interface Wire {
  /** Bytes of the largest request {@link writeRequest} writes. */
  readonly max_request_bytes: number;
  /** After {@link scanResponse} returned ≥ 0: undefined for success, else the error's name. */
  error: string | undefined;
  /** After an error response: its message. */
  error_message: string;
  /** Writes request `op` (OP_GET/OP_SET) of key `key_index` with `id` at `out[offset…]`; returns its bytes. */
  writeRequest(out: Uint8Array, offset: number, op: number, key_index: number, id: number): number;
  /** The request that authenticates with `token`. */
  authRequest(token: string, id: number): Uint8Array;
  /**
   * Scans the response at `bytes[pos, end)`: returns where it ends, or -1 if it is not all there yet.
   * Throws a WireError if it is malformed or not the answer to request `expected_id`.
   */
  scanResponse(bytes: Uint8Array, pos: number, end: number, expected_id: number): number;
}

/**
 * A key with zero digits, for templates: the digits are patched per request.
 *
 * @example
 * encoder.encode(KEY_TEMPLATE); // "key:000000000000"
 */
export const KEY_TEMPLATE = `${KEY_PREFIX}${"0".repeat(KEY_BYTES - KEY_PREFIX.length)}`;
