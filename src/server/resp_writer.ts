/**
 * Appends RESP2 replies to a connection's output buffer: simple strings, errors, integers, bulk
 * strings, nil, arrays. Numbers are written as ASCII digits directly, without strings.
 * Also how failures read in RESP: {@link RespError} (its own code) and {@link respErrorText}.
 *
 * @example
 * const w = new RespWriter(1024);
 * w.arrayHeader(2); w.bulk(value); w.nil();
 * socket.write(w.take());
 */

import { strOrBinHeaderBytes } from "./msgpack.ts";
import { CODE_UNAVAILABLE, classify } from "./ops.ts";
import { msgpackTypeName } from "./resp_values.ts";
import { SlabWriter, type ValueSource } from "./slab_writer.ts";

const CR = 0x0d;
const LF = 0x0a;
const ZERO = 0x30;
const encoder = new TextEncoder();

export class RespWriter extends SlabWriter {
  /** `+text\r\n`; `text` is ASCII without CR or LF. */
  simple(text: string): void {
    this.byte(0x2b);
    this.ascii(text);
    this.crlf();
  }

  /** `-text\r\n`: `text` starts with the error code (`ERR`, `WRONGTYPE`…); CR and LF become spaces. */
  error(text: string): void {
    this.byte(0x2d);
    this.raw(encoder.encode(text.replace(/[\r\n]/g, " ")));
    this.crlf();
  }

  /** `:n\r\n` for a safe integer. */
  integer(n: number): void {
    if (!Number.isSafeInteger(n)) throw new Error(`RespWriter.integer: ${n} is not a safe integer`);
    this.byte(0x3a);
    if (n < 0) this.byte(0x2d);
    this.decimal(Math.abs(n));
    this.crlf();
  }

  /** First byte of the last stored value {@link storedValue} refused (not a str or bin), or -1. */
  private refused_type_byte = -1;

  /**
   * Appends the stored value of the key `key[key_start, +key_length)` (by default all of `key`) as a
   * bulk string of its payload (copied once, from the table into the reply), or nil if the key holds
   * none. Throws RespError WRONGTYPE for a stored value that is not a msgpack str or bin (written by
   * the msgpack protocol).
   *
   * @example
   * out.storedBulk(engine, key); // GET
   */
  storedBulk(source: ValueSource, key: Uint8Array, key_start = 0, key_length?: number): void {
    if (!this.tryStoredBulk(source, key, key_start, key_length)) throw wrongTypeError(this.refused_type_byte);
  }

  /**
   * As {@link storedBulk}, but a value of another type than str or bin writes nothing and returns
   * false instead of throwing (the caller leaves the request to the path that reports it).
   *
   * @example
   * if (!out.tryStoredBulk(engine, bytes, key_start, key_length)) break;
   */
  tryStoredBulk(source: ValueSource, key: Uint8Array, key_start = 0, key_length?: number): boolean {
    this.refused_type_byte = -1;
    if (!this.stored(source, key, key_start, key_length)) this.nil();
    return this.refused_type_byte < 0;
  }

  /**
   * A stored str or bin as a bulk string of its payload; any other type is refused, unwritten. So is
   * a header longer than the value: only a read torn by a writer in another thread hands one over
   * (the table then reads again, and this call's verdict is replaced by the next one's).
   */
  protected override storedValue(bytes: Uint8Array, start: number, length: number): void {
    const header = strOrBinHeaderBytes(bytes[start]);
    const refused = header < 0 || header > length;
    this.refused_type_byte = refused ? (bytes[start] ?? 0) : -1;
    if (refused) return;
    const n = length - header;
    this.bulkHeader(n);
    this.copyIn(bytes, start + header, n);
    this.crlf();
  }

  /** `$len\r\n` + `bytes[start, end)` + `\r\n`. */
  bulk(bytes: Uint8Array, start = 0, end = bytes.length): void {
    const n = end - start;
    this.bulkHeader(n);
    this.copyIn(bytes, start, n);
    this.crlf();
  }

  /** `$n\r\n`, with room made for the `n` bytes and the `\r\n` that follow. */
  private bulkHeader(n: number): void {
    this.ensure(n + 16);
    this.buffer[this.end++] = 0x24;
    this.decimal(n);
    this.crlf();
  }

  /** A bulk string of `text`'s UTF-8 bytes. */
  bulkString(text: string): void {
    this.bulk(encoder.encode(text));
  }

  /** The nil bulk string `$-1\r\n`. */
  nil(): void {
    this.raw(NIL);
  }

  /** `*n\r\n`: n elements follow. */
  arrayHeader(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`RespWriter.arrayHeader: bad count ${n}`);
    this.byte(0x2a);
    this.decimal(n);
    this.crlf();
  }

  /** The nil array `*-1\r\n`. */
  arrayHeaderNil(): void {
    this.raw(NIL_ARRAY);
  }

  /** A non-negative safe integer in decimal. */
  private decimal(n: number): void {
    let digits = 1;
    for (let p = 10; p <= n; p *= 10) digits++;
    this.ensure(digits);
    let i = this.end + digits;
    do {
      this.buffer[--i] = ZERO + (n % 10);
      n = Math.floor(n / 10);
    } while (n > 0);
    this.end += digits;
  }

  private ascii(text: string): void {
    this.ensure(text.length);
    for (let i = 0; i < text.length; i++) this.buffer[this.end++] = text.charCodeAt(i) & 0x7f;
  }

  private crlf(): void {
    this.ensure(2);
    this.buffer[this.end++] = CR;
    this.buffer[this.end++] = LF;
  }
}

const NIL = encoder.encode("$-1\r\n");
const NIL_ARRAY = encoder.encode("*-1\r\n");

/** A constant reply, encoded once: `+OK\r\n`. */
export const REPLY_OK = encoder.encode("+OK\r\n");

/**
 * Replies built apart from a connection's output (pending writes, finals): views of this writer's
 * slab, never overwritten, so one writer serves the whole worker without an allocation per reply.
 */
const replies = new RespWriter(64 * 1024);

/** The encoded bytes of one reply written by `write` (for replies of pending writes and finals). */
export function replyBytes(write: (w: RespWriter) => void): Uint8Array {
  write(replies);
  return replies.take();
}

/** A failure answered with `-<message>`; the message starts with its error code (WRONGTYPE…). */
export class RespError extends Error {}

/**
 * The `-...` text of any failure: a RespError as it is; an ops.ts failure by its code (UNAVAILABLE
 * for unavailable, ERR otherwise) and message. (Authentication is answered by resp_protocol.ts.)
 */
export function respErrorText(error: unknown): string {
  if (error instanceof RespError) return error.message;
  const [code, message] = classify(error);
  return `${code === CODE_UNAVAILABLE ? "UNAVAILABLE" : "ERR"} ${message}`;
}

/** The error for reading, through RESP, a stored value of another type than str or bin. */
export function wrongTypeError(first_byte: number): RespError {
  return new RespError(
    `WRONGTYPE Operation against a key holding the wrong kind of value: a msgpack ${msgpackTypeName(first_byte)} written by the msgpack protocol (RESP reads str and bin values only)`,
  );
}
