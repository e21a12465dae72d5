/**
 * RESP2 (the Redis protocol) for `walkv bench` (see wire.ts): `GET key` and `SET key value` as arrays
 * of bulk strings, the value a bulk string of `value_bytes` bytes. RESP has no request ids: replies
 * come in order, so the id argument is ignored. Replies are scanned by their first byte: `+` and `:`
 * lines and `$` bulk strings are successes (a `$-1` nil too), a `-` line is an error named by its
 * first word (`ERR`, `NOAUTH`, `WRONGTYPE`…).
 *
 * @example
 * const wire = new RespWire({ value_bytes: 100, seed: 1 });
 * const n = wire.writeRequest(out, 0, OP_GET, 4711, 0); // "*2\r\n$3\r\nGET\r\n$16\r\nkey:000000004711\r\n"
 */
import { assert } from "../../engine/errors.ts";
import { KEY_TEMPLATE, MAX_RESPONSE_BYTES, type Wire, WireError, type WireOptions } from "./wire.ts";
import { KEY_PREFIX, OP_GET, OP_SET, valuePayload, writeKeyDigits } from "./workload.ts";

const CR = 0x0d;
const LF = 0x0a;
/** Longest `+`, `-`, `:` or `$` line accepted (RESP status lines are short). */
const MAX_LINE_BYTES = 64 * 1024;
/** `*N\r\n$3\r\nGET\r\n$16\r\n` then the key: where the digits start. */
const DIGITS_OFFSET = "*2\r\n$3\r\nGET\r\n$16\r\n".length + KEY_PREFIX.length;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The RESP wire; see the module comment.
 *
 * @example
 * const wire = new RespWire({ value_bytes: 100, seed: 1 });
 */
export class RespWire implements Wire {
  readonly max_request_bytes: number;
  error: string | undefined = undefined;
  error_message = "";
  private readonly templates: Uint8Array[];

  constructor(options: WireOptions) {
    assert(Number.isInteger(options.value_bytes) && options.value_bytes >= 1);
    this.templates = [];
    this.templates[OP_GET] = respCommand([encoder.encode("GET"), encoder.encode(KEY_TEMPLATE)]);
    this.templates[OP_SET] = respCommand([
      encoder.encode("SET"),
      encoder.encode(KEY_TEMPLATE),
      valuePayload(options.seed, options.value_bytes),
    ]);
    this.max_request_bytes = Math.max(...this.templates.map((t) => t.length));
    assert(this.templates[OP_SET]![DIGITS_OFFSET - 1] === KEY_PREFIX.charCodeAt(3));
  }

  writeRequest(out: Uint8Array, offset: number, op: number, key_index: number, _id: number): number {
    const template = this.templates[op]!;
    out.set(template, offset);
    writeKeyDigits(out, offset + DIGITS_OFFSET, key_index);
    return template.length;
  }

  authRequest(token: string, _id: number): Uint8Array {
    return respCommand([encoder.encode("AUTH"), encoder.encode(token)]);
  }

  scanResponse(bytes: Uint8Array, pos: number, end: number, _expected_id: number): number {
    const line_end = lineEnd(bytes, pos + 1, end); // index of the CR
    if (line_end < 0) return -1;
    const type = bytes[pos];
    if (type === 0x2b || type === 0x3a) {
      // "+OK", ":1"
      this.error = undefined;
      return line_end + 2;
    }
    if (type === 0x24) return this.scanBulk(bytes, pos, line_end, end); // "$"
    if (type === 0x2d) {
      // "-ERR message"
      const line = decoder.decode(bytes.subarray(pos + 1, line_end));
      this.error = line.split(" ", 1)[0] || "(empty error)";
      this.error_message = line;
      return line_end + 2;
    }
    throw new WireError(`unexpected RESP reply type ${JSON.stringify(String.fromCharCode(type ?? 0))}`);
  }

  /** `$N\r\n` + N bytes + `\r\n`, or `$-1\r\n` (nil). */
  private scanBulk(bytes: Uint8Array, pos: number, line_end: number, end: number): number {
    let length = 0;
    if (bytes[pos + 1] === 0x2d && line_end === pos + 3 && bytes[pos + 2] === 0x31) length = -1;
    else {
      for (let i = pos + 1; i < line_end; i++) {
        const digit = bytes[i]! - 0x30;
        if (digit < 0 || digit > 9) throw new WireError("malformed RESP bulk length");
        length = length * 10 + digit;
      }
      if (line_end === pos + 1 || length > MAX_RESPONSE_BYTES) {
        throw new WireError(`RESP bulk length ${length} (expected 0 … ${MAX_RESPONSE_BYTES})`);
      }
    }
    this.error = undefined;
    if (length < 0) return line_end + 2;
    const reply_end = line_end + 2 + length + 2;
    if (reply_end > end) return -1;
    if (bytes[reply_end - 2] !== CR || bytes[reply_end - 1] !== LF) {
      throw new WireError("RESP bulk string not followed by CRLF");
    }
    return reply_end;
  }
}

/** Where the CRLF ending the line at `from` starts, or -1 if it is not there yet. */
function lineEnd(bytes: Uint8Array, from: number, end: number): number {
  const limit = Math.min(end - 1, from + MAX_LINE_BYTES);
  for (let i = from; i < limit; i++) {
    if (bytes[i] === CR) {
      if (bytes[i + 1] !== LF) throw new WireError("RESP line with a CR but no LF");
      return i;
    }
  }
  if (end - from > MAX_LINE_BYTES) throw new WireError(`RESP line over ${MAX_LINE_BYTES} bytes`);
  return -1;
}

/**
 * A RESP array of bulk strings.
 *
 * @example
 * respCommand([encoder.encode("GET"), encoder.encode("k")]); // "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
 */
export function respCommand(args: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode(`*${args.length}\r\n`)];
  for (const arg of args) parts.push(encoder.encode(`$${arg.length}\r\n`), arg, encoder.encode("\r\n"));
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
