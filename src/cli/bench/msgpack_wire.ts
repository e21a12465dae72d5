/**
 * walkv protocol v1 for `walkv bench` (see wire.ts): `[id, "get", key]` and `[id, "set", key, value]`
 * with 4-byte ids, the value a msgpack str of `value_bytes` bytes in all (header included).
 *
 * @example
 * const wire = new MsgpackWire({ value_bytes: 100, seed: 1 });
 * const n = wire.writeRequest(out, 0, OP_GET, 4711, 1); // [1, "get", "key:000000004711"], framed
 */

import { responseError } from "../../client/errors.ts";
import { writeU32BE } from "../../engine/bytes.ts";
import { assert } from "../../engine/errors.ts";
import { MsgReader, MsgWriter } from "../../server/msgpack.ts";
import { KEY_TEMPLATE, MAX_RESPONSE_BYTES, type Wire, WireError, type WireOptions } from "./wire.ts";
import { KEY_PREFIX, OP_GET, OP_SET, valuePayload, writeKeyDigits } from "./workload.ts";

const FRAME_HEADER_BYTES = 4;
/** `[len u32][0x93|0x94][0xce id u32]…`: where the id's 4 bytes start. */
const MSGPACK_ID_OFFSET = FRAME_HEADER_BYTES + 2;
/** `…[0xa3 "get"][0xb0 "key:"]` then the digits. */
const MSGPACK_DIGITS_OFFSET = MSGPACK_ID_OFFSET + 4 + 4 + 1 + KEY_PREFIX.length;

/**
 * The msgpack wire; see the module comment.
 *
 * @example
 * const wire = new MsgpackWire({ value_bytes: 100, seed: 1 });
 */
export class MsgpackWire implements Wire {
  readonly max_request_bytes: number;
  error: string | undefined = undefined;
  error_message = "";
  private readonly templates: Uint8Array[];
  /** Where {@link readUint} left off. */
  private cursor = 0;

  constructor(options: WireOptions) {
    const value = msgpackValue(options.value_bytes, options.seed);
    this.templates = [];
    this.templates[OP_GET] = msgpackRequest("get", []);
    this.templates[OP_SET] = msgpackRequest("set", [value]);
    this.max_request_bytes = Math.max(...this.templates.map((t) => t.length));
    assert(this.templates[OP_GET]![MSGPACK_DIGITS_OFFSET - 1] === KEY_PREFIX.charCodeAt(3));
  }

  writeRequest(out: Uint8Array, offset: number, op: number, key_index: number, id: number): number {
    const template = this.templates[op]!;
    out.set(template, offset);
    writeU32BE(out, offset + MSGPACK_ID_OFFSET, id);
    writeKeyDigits(out, offset + MSGPACK_DIGITS_OFFSET, key_index);
    return template.length;
  }

  authRequest(token: string, id: number): Uint8Array {
    const w = new MsgWriter(64);
    const start = w.beginFrame();
    w.arrayHeader(3);
    w.uint(id);
    w.string("auth");
    w.string(token);
    w.endFrame(start);
    return w.take();
  }

  scanResponse(bytes: Uint8Array, pos: number, end: number, expected_id: number): number {
    if (end - pos < FRAME_HEADER_BYTES) return -1;
    const length =
      bytes[pos]! * 0x1000000 + ((bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!);
    if (length < 3 || length > MAX_RESPONSE_BYTES) {
      throw new WireError(`response frame of ${length} bytes (expected 3 … ${MAX_RESPONSE_BYTES})`);
    }
    const frame_end = pos + FRAME_HEADER_BYTES + length;
    if (frame_end > end) return -1;
    if (bytes[pos + FRAME_HEADER_BYTES] !== 0x93) throw new WireError("response is not [id, code, result]");
    this.cursor = pos + FRAME_HEADER_BYTES + 1;
    const id = this.readUint(bytes, frame_end);
    const code = this.readUint(bytes, frame_end);
    if (code === 0 && id === expected_id) {
      this.error = undefined;
      return frame_end;
    }
    this.describeError(bytes, frame_end, id, code, expected_id);
    return frame_end;
  }

  /** A uint at `cursor` (fixint, uint8/16/32), or -1. */
  private readUint(bytes: Uint8Array, end: number): number {
    const p = this.cursor;
    const b = bytes[p]!;
    const width = b <= 0x7f ? 0 : b === 0xcc ? 1 : b === 0xcd ? 2 : b === 0xce ? 4 : -1;
    if (width < 0 || p + 1 + width > end) return -1;
    let n = width === 0 ? b : 0;
    for (let i = 1; i <= width; i++) n = n * 256 + bytes[p + i]!;
    this.cursor = p + 1 + width;
    return n;
  }

  /** The cold path: an error response, a refusal (`[0, code, msg]`) or a broken stream. */
  private describeError(bytes: Uint8Array, frame_end: number, id: number, code: number, expected: number) {
    if (id < 0 || code < 0) throw new WireError("response id or code is not a uint32");
    const reader = new MsgReader(bytes, this.cursor, frame_end);
    const message = reader.string() ?? "(no message)";
    if (id === 0 && code !== 0) throw new WireError(`the server closed the connection: ${message}`);
    if (id !== expected) throw new WireError(`response id ${id}, expected ${expected}`);
    this.error = `${responseError(code, "").code_name} (code ${code})`;
    this.error_message = message;
  }
}

/** A framed msgpack request `[0 (patched), op, "key:000000000000", ...args]`; `args` are msgpack. */
function msgpackRequest(op: string, args: Uint8Array[]): Uint8Array {
  const w = new MsgWriter(256);
  const start = w.beginFrame();
  w.arrayHeader(3 + args.length);
  w.raw(new Uint8Array([0xce, 0, 0, 0, 0])); // the id, always 4 bytes so the layout is fixed
  w.string(op);
  w.string(KEY_TEMPLATE);
  for (const arg of args) w.raw(arg);
  w.endFrame(start);
  return w.take();
}

/**
 * The value every msgpack SET writes: a str of exactly `total_bytes` bytes, the smallest header that
 * fits, then {@link valuePayload}. (33 bytes is a str8 of 31: a longer header than needed, which
 * msgpack allows.)
 *
 * @example
 * msgpackValue(100, 1); // 0xd9 0x62 and 98 bytes of payload
 */
export function msgpackValue(total_bytes: number, seed: number): Uint8Array {
  assert(Number.isInteger(total_bytes) && total_bytes >= 1, `value bytes must be ≥ 1, got ${total_bytes}`);
  const header = strHeader(total_bytes);
  const out = new Uint8Array(total_bytes);
  out.set(header, 0);
  out.set(valuePayload(seed, total_bytes - header.length), header.length);
  return out;
}

/** The header of a str that, header included, takes `total_bytes`. */
function strHeader(total_bytes: number): number[] {
  if (total_bytes - 1 <= 31) return [0xa0 | (total_bytes - 1)];
  if (total_bytes - 2 <= 0xff) return [0xd9, total_bytes - 2];
  if (total_bytes - 3 <= 0xffff) return [0xda, (total_bytes - 3) >>> 8, (total_bytes - 3) & 0xff];
  const n = total_bytes - 5;
  return [0xdb, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}
