/**
 * The small MessagePack reader and writer of the request/response envelope. The server never
 * decodes a stored value: it only finds where each value starts and ends ({@link MsgReader.skip},
 * which also validates it), so values are stored and returned byte for byte. Everything else
 * (maps for `stats`) is encoded with msgpackr.
 *
 * @example
 * const r = new MsgReader(frame, 0, frame.length);
 * const n = r.arrayHeader();          // -1 if not an array
 * const id = r.uint();                // -1 if not an unsigned integer
 * const start = r.pos; r.skip();      // frame[start, r.pos) is one whole msgpack value
 */

import { copyOrView, writeU32BE } from "../engine/bytes.ts";
import { assert } from "../engine/errors.ts";
import { scratchCopy } from "./scratch_key.ts";
import { SlabWriter } from "./slab_writer.ts";

/** Deepest nesting {@link MsgReader.skip} accepts inside one value. */
export const MAX_DEPTH = 256;

const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * Header bytes of a str or bin by its first byte (the payload follows them), or -1 for any other
 * type: 1 (fixstr), 2 (bin8, str8), 3 (bin16, str16), 5 (bin32, str32).
 *
 * @example
 * strOrBinHeaderBytes(0xc4) === 2;
 */
export function strOrBinHeaderBytes(b: number | undefined): number {
  if (b === undefined) return -1;
  if (b >= 0xa0 && b <= 0xbf) return 1;
  if (b === 0xc4 || b === 0xd9) return 2;
  if (b === 0xc5 || b === 0xda) return 3;
  if (b === 0xc6 || b === 0xdb) return 5;
  return -1;
}

/**
 * Header bytes of a bin holding `n` bytes (bin8, bin16 or bin32).
 *
 * @example
 * binHeaderBytes(300) === 3;
 */
export function binHeaderBytes(n: number): number {
  return n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
}

/**
 * Writes the header of a bin holding `n` bytes (< 2^32) at `dst[at]`: {@link binHeaderBytes}(n) bytes.
 *
 * @example
 * writeBinHeader(out, 0, payload.length); out.set(payload, binHeaderBytes(payload.length));
 */
export function writeBinHeader(dst: Uint8Array, at: number, n: number): void {
  const header = binHeaderBytes(n);
  if (header === 2) {
    dst[at] = 0xc4;
    dst[at + 1] = n;
  } else if (header === 3) {
    dst[at] = 0xc5;
    dst[at + 1] = n >>> 8;
    dst[at + 2] = n & 0xff;
  } else {
    dst[at] = 0xc6;
    writeU32BE(dst, at + 1, n);
  }
}

/**
 * Writes `n` (< 2^32) at `dst[at]` as the shortest msgpack uint (positive fixint, uint8/16/32: up to
 * 5 bytes, which the caller has room for); returns the offset after it.
 *
 * @example
 * const end = writeUint32At(out, 0, 300); // cd 01 2c; end === 3
 */
function writeUint32At(dst: Uint8Array, at: number, n: number): number {
  if (n < 0x80) {
    dst[at] = n;
    return at + 1;
  }
  if (n < 0x100) {
    dst[at] = 0xcc;
    dst[at + 1] = n;
    return at + 2;
  }
  if (n < 0x10000) {
    dst[at] = 0xcd;
    dst[at + 1] = n >>> 8;
    dst[at + 2] = n & 0xff;
    return at + 3;
  }
  dst[at] = 0xce;
  writeU32BE(dst, at + 1, n);
  return at + 5;
}

const utf8_encoder = new TextEncoder();

/** Reads msgpack from `bytes[start, end)`. Every method returns a sentinel instead of throwing. */
export class MsgReader {
  pos: number;

  constructor(
    public bytes: Uint8Array,
    start: number,
    public end: number,
  ) {
    this.pos = start;
  }

  /** Points this reader at `bytes[start, end)` (a reader reused for every request of a connection). */
  reset(bytes: Uint8Array, start: number, end: number): void {
    this.bytes = bytes;
    this.pos = start;
    this.end = end;
  }

  atEnd(): boolean {
    return this.pos >= this.end;
  }

  /** An array header's length, or -1 (nothing consumed) if the next value is not an array. */
  arrayHeader(): number {
    const b = this.bytes[this.pos];
    if (b === undefined || this.pos >= this.end) return -1;
    if (b >= 0x90 && b <= 0x9f) {
      this.pos += 1;
      return b & 0x0f;
    }
    if (b === 0xdc) return this.lengthAfter(2);
    if (b === 0xdd) return this.lengthAfter(4);
    return -1;
  }

  /** An unsigned integer below 2^32, or -1 (nothing consumed). */
  uint(): number {
    const b = this.bytes[this.pos];
    if (b === undefined || this.pos >= this.end) return -1;
    if (b <= 0x7f) {
      this.pos += 1;
      return b;
    }
    if (b === 0xcc) return this.lengthAfter(1);
    if (b === 0xcd) return this.lengthAfter(2);
    if (b === 0xce) return this.lengthAfter(4);
    return -1;
  }

  /** The payload of a str or bin (a copy if short, else a view: copyOrView), or undefined (nothing consumed). */
  bytesOrString(): Uint8Array | undefined {
    const n = this.payload();
    return n < 0 ? undefined : copyOrView(this.bytes, this.pos - n, this.pos);
  }

  /**
   * Like {@link bytesOrString}, in a scratch array the next call reuses (scratch_key.ts): for a key
   * the engine reads at once and does not keep, without allocating a view.
   */
  bytesOrStringScratch(): Uint8Array | undefined {
    const n = this.payload();
    return n < 0 ? undefined : scratchCopy(this.bytes, this.pos - n, n);
  }

  /** Consumes a str or bin whole; returns its payload's length (the payload ends at `pos`), or -1 (nothing consumed). */
  payload(): number {
    const start = this.pos;
    const length = this.stringOrBinLength();
    if (length < 0) return -1;
    if (this.pos + length > this.end) {
      this.pos = start;
      return -1;
    }
    this.pos += length;
    return length;
  }

  /** A str decoded as UTF-8, or undefined (nothing consumed). */
  string(): string | undefined {
    const b = this.bytes[this.pos];
    if (b === undefined || !((b >= 0xa0 && b <= 0xbf) || (b >= 0xd9 && b <= 0xdb))) return undefined;
    const payload = this.bytesOrString();
    return payload === undefined ? undefined : utf8.decode(payload);
  }

  /** True if the next value is nil (consumed). */
  nil(): boolean {
    if (this.pos < this.end && this.bytes[this.pos] === 0xc0) {
      this.pos += 1;
      return true;
    }
    return false;
  }

  /** A map header's length, or -1 (nothing consumed). */
  mapHeader(): number {
    const b = this.bytes[this.pos];
    if (b === undefined || this.pos >= this.end) return -1;
    if (b >= 0x80 && b <= 0x8f) {
      this.pos += 1;
      return b & 0x0f;
    }
    if (b === 0xde) return this.lengthAfter(2);
    if (b === 0xdf) return this.lengthAfter(4);
    return -1;
  }

  /**
   * Skips exactly one well-formed value (iteratively, at most {@link MAX_DEPTH} deep). Returns false
   * (position unspecified) if the bytes are not one whole value within `end`.
   */
  skip(): boolean {
    let pending = 1;
    const open: number[] = [];
    while (pending > 0) {
      const children = this.skipHead();
      if (children < 0) return false;
      pending--;
      if (children > 0) {
        if (open.length >= MAX_DEPTH) return false;
        open.push(pending);
        pending = children;
      }
      while (pending === 0 && open.length > 0) pending = open.pop()!;
    }
    return true;
  }

  /** Consumes one value's head and payload; returns how many child values follow (or -1 if bad). */
  private skipHead(): number {
    if (this.pos >= this.end) return -1;
    const b = this.bytes[this.pos]!;
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xc0 && b <= 0xc3 && b !== 0xc1)) return this.advance(1, 0);
    if (b <= 0x8f) return this.advance(1, (b & 0x0f) * 2);
    if (b <= 0x9f) return this.advance(1, b & 0x0f);
    if (b <= 0xbf) return this.advance(1 + (b & 0x1f), 0);
    switch (b) {
      case 0xc4:
      case 0xd9:
        return this.payloadAfter(1, 0);
      case 0xc5:
      case 0xda:
        return this.payloadAfter(2, 0);
      case 0xc6:
      case 0xdb:
        return this.payloadAfter(4, 0);
      case 0xc7:
        return this.payloadAfter(1, 1);
      case 0xc8:
        return this.payloadAfter(2, 1);
      case 0xc9:
        return this.payloadAfter(4, 1);
      case 0xca:
        return this.advance(5, 0);
      case 0xcb:
        return this.advance(9, 0);
      case 0xcc:
      case 0xd0:
        return this.advance(2, 0);
      case 0xcd:
      case 0xd1:
        return this.advance(3, 0);
      case 0xce:
      case 0xd2:
        return this.advance(5, 0);
      case 0xcf:
      case 0xd3:
        return this.advance(9, 0);
      case 0xd4:
        return this.advance(3, 0);
      case 0xd5:
        return this.advance(4, 0);
      case 0xd6:
        return this.advance(6, 0);
      case 0xd7:
        return this.advance(10, 0);
      case 0xd8:
        return this.advance(18, 0);
      case 0xdc:
        return this.countAfter(2, 1);
      case 0xdd:
        return this.countAfter(4, 1);
      case 0xde:
        return this.countAfter(2, 2);
      case 0xdf:
        return this.countAfter(4, 2);
      default:
        return -1; // 0xc1 is never used
    }
  }

  private advance(bytes: number, children: number): number {
    if (this.pos + bytes > this.end) return -1;
    this.pos += bytes;
    return children;
  }

  private readBigEndian(offset: number, width: number): number {
    let n = 0;
    for (let i = 0; i < width; i++) n = n * 256 + this.bytes[offset + i]!;
    return n;
  }

  /** A header of `width` length bytes, then that many payload bytes (plus `extra`, an ext type byte). */
  private payloadAfter(width: number, extra: number): number {
    if (this.pos + 1 + width > this.end) return -1;
    const length = this.readBigEndian(this.pos + 1, width);
    return this.advance(1 + width + extra + length, 0);
  }

  /** A header of `width` count bytes; `per` children per counted item (2 for maps). */
  private countAfter(width: number, per: number): number {
    if (this.pos + 1 + width > this.end) return -1;
    const count = this.readBigEndian(this.pos + 1, width);
    if (count * per > this.end - this.pos) return -1; // every child takes at least one byte
    this.pos += 1 + width;
    return count * per;
  }

  private lengthAfter(width: number): number {
    if (this.pos + 1 + width > this.end) return -1;
    const n = this.readBigEndian(this.pos + 1, width);
    this.pos += 1 + width;
    return n;
  }

  private stringOrBinLength(): number {
    const b = this.bytes[this.pos];
    if (this.pos >= this.end) return -1;
    const header = strOrBinHeaderBytes(b);
    if (header < 0) return -1;
    if (header > 1) return this.lengthAfter(header - 1);
    this.pos += 1;
    return b! & 0x1f;
  }
}

/** The most bytes of a `[id, 0, true]` frame with a uint32 id: length 4, fixarray 1, id 5, 0 and true 2. */
const TRUE_RESPONSE_MAX_BYTES = 12;

/**
 * Appends msgpack to a growable buffer: the response writer of a connection.
 *
 * @example
 * const w = new MsgWriter();
 * w.arrayHeader(3); w.uint(id); w.uint(0); w.raw(value_bytes);
 * socket.write(w.take());
 */
export class MsgWriter extends SlabWriter {
  constructor(initial_bytes = 64 * 1024) {
    super(initial_bytes);
  }

  /** Starts a frame: reserves its 4-byte length; returns where the frame starts. */
  beginFrame(): number {
    this.ensure(4);
    this.end += 4;
    return this.length - 4;
  }

  /** Ends the frame begun at `start`: writes its body length (big-endian); returns that length. */
  endFrame(start: number): number {
    const body = this.length - start - 4;
    const at = this.start + start;
    writeU32BE(this.buffer, at, body);
    return body;
  }

  /**
   * Writes the frame `[id, 0, true]` (a write's success) in one step: what writing it through
   * {@link beginFrame}, {@link arrayHeader}, {@link uint} and {@link bool} gives, for the response
   * that pipelined SETs send most. Request ids are uint32 (docs/protocol.md).
   *
   * @example
   * w.trueResponse(7); // 00 00 00 04 93 07 00 c3
   */
  trueResponse(id: number): void {
    assert(Number.isInteger(id) && id >= 0 && id < 0x100000000, "a request id is a uint32");
    this.ensure(TRUE_RESPONSE_MAX_BYTES);
    const buffer = this.buffer;
    const at = this.end;
    buffer[at + 4] = 0x93;
    let end = writeUint32At(buffer, at + 5, id);
    buffer[end++] = 0x00;
    buffer[end++] = 0xc3;
    writeU32BE(buffer, at, end - at - 4);
    this.end = end;
  }

  arrayHeader(n: number): void {
    if (n < 16) this.byte(0x90 | n);
    else if (n < 0x10000) this.head16(0xdc, n);
    else this.head32(0xdd, n);
  }

  mapHeader(n: number): void {
    if (n < 16) this.byte(0x80 | n);
    else if (n < 0x10000) this.head16(0xde, n);
    else this.head32(0xdf, n);
  }

  uint(n: number): void {
    if (n >= 0x100000000) {
      this.float64(n);
      return;
    }
    this.ensure(5);
    this.end = writeUint32At(this.buffer, this.end, n);
  }

  float64(n: number): void {
    this.ensure(9);
    this.buffer[this.end] = 0xcb;
    new DataView(this.buffer.buffer, this.buffer.byteOffset).setFloat64(this.end + 1, n);
    this.end += 9;
  }

  nil(): void {
    this.byte(0xc0);
  }

  bool(b: boolean): void {
    this.byte(b ? 0xc3 : 0xc2);
  }

  string(s: string): void {
    const bytes = utf8_encoder.encode(s);
    const n = bytes.length;
    if (n < 32) this.byte(0xa0 | n);
    else if (n < 0x100) {
      this.byte(0xd9);
      this.byte(n);
    } else if (n < 0x10000) this.head16(0xda, n);
    else this.head32(0xdb, n);
    this.raw(bytes);
  }

  bin(bytes: Uint8Array): void {
    const header = binHeaderBytes(bytes.length);
    this.ensure(header);
    writeBinHeader(this.buffer, this.end, bytes.length);
    this.end += header;
    this.raw(bytes);
  }

  private head16(type: number, n: number): void {
    this.ensure(3);
    this.buffer[this.end] = type;
    this.buffer[this.end + 1] = n >>> 8;
    this.buffer[this.end + 2] = n & 0xff;
    this.end += 3;
  }

  private head32(type: number, n: number): void {
    this.ensure(5);
    this.buffer[this.end] = type;
    writeU32BE(this.buffer, this.end + 1, n);
    this.end += 5;
  }
}
