/**
 * The RESP2 request reader: finds the next whole request in a byte buffer without decoding anything
 * (no strings, no copies). A request is a multibulk `*<n>\r\n` followed by n bulk strings
 * `$<len>\r\n<bytes>\r\n`, or an inline command: one line (ending in `\n`, an `\r` before it is
 * dropped) split on spaces and tabs; quotes are not interpreted. Empty requests (`*0`, `*-1`, a
 * blank line) are skipped, as Redis does.
 *
 * Limits (docs/LIMITS.md): a multibulk request is at most `max_request_bytes` (`--max-frame-bytes`)
 * and {@link RESP_MAX_ARGUMENTS} arguments; an inline line at most {@link RESP_MAX_INLINE_BYTES}. A
 * request is refused as soon as its declared sizes pass a limit, before its bytes arrive, so what a
 * connection buffers stays bounded. A malformed stream is {@link READ_MALFORMED} with the reason in
 * `error` (Redis answers `-ERR Protocol error: <reason>` and closes the connection).
 *
 * @example
 * const reader = new RespReader(64 * 1024 * 1024);
 * if (reader.read(bytes, 0, bytes.length) === READ_REQUEST) {
 *   // arguments: bytes[reader.starts[i], reader.ends[i]) for i < reader.argc; next at reader.next_start
 * }
 */
import type { KeyFinder } from "../engine/engine.ts";

/** Most arguments in one request (Redis's limit too). */
export const RESP_MAX_ARGUMENTS = 1024 * 1024;
/** Longest inline command line, `\r\n` included (Redis's limit too). */
export const RESP_MAX_INLINE_BYTES = 64 * 1024;
/** Argument offsets kept between requests; a larger request's are dropped after it. */
export const KEEP_ARGUMENT_SLOTS = 1024;
/** Most digits of a `*<count>` or `$<length>` (more can never be a valid size). */
const MAX_DIGITS = 15;

/** More bytes are needed; `next_start` may have moved past skipped empty requests. */
export const READ_INCOMPLETE = 0;
/** A request: `argc` arguments in `starts`/`ends`; the next one starts at `next_start`. */
export const READ_REQUEST = 1;
/** The stream is not RESP (or over a limit): `error` says why; the connection must close. */
export const READ_MALFORMED = 2;
/** Internal: an empty request was skipped. */
const READ_EMPTY = 3;

const CR = 0x0d;
const LF = 0x0a;
const SPACE = 0x20;
const TAB = 0x09;
const STAR = 0x2a;
const DOLLAR = 0x24;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;

/** {@link RespReader.number} results that are not a number (below any number of MAX_DIGITS digits). */
const NUMBER_INCOMPLETE = -1e16;
const NUMBER_MALFORMED = -2e16;

export class RespReader {
  /** Arguments of the last request read: `[starts[i], ends[i])` for `i < argc`. */
  argc = 0;
  readonly starts: number[] = [];
  readonly ends: number[] = [];
  /** Where unread input starts after the last call. */
  next_start = 0;
  /** Why the stream was refused ({@link READ_MALFORMED}). */
  error = "";
  /** Position after the line of the last {@link number}. */
  private cursor = 0;

  constructor(private readonly max_request_bytes: number) {
    if (!Number.isSafeInteger(max_request_bytes) || max_request_bytes < 16) {
      throw new Error(`RespReader: max_request_bytes ${max_request_bytes} is not an integer ≥ 16`);
    }
  }

  /** Reads the next request in `bytes[start, end)`: READ_REQUEST, READ_INCOMPLETE or READ_MALFORMED. */
  read(bytes: Uint8Array, start: number, end: number): number {
    if (start < 0 || end > bytes.length || start > end) {
      throw new Error(`RespReader.read: range [${start}, ${end}) outside ${bytes.length} bytes`);
    }
    this.next_start = start;
    if (this.starts.length > KEEP_ARGUMENT_SLOTS) {
      // A huge request is over: do not keep its offsets for the rest of the connection's life.
      this.starts.length = 0;
      this.ends.length = 0;
    }
    while (this.next_start < end) {
      const pos = this.next_start;
      const status = bytes[pos] === STAR ? this.multibulk(bytes, pos, end) : this.inline(bytes, pos, end);
      if (status !== READ_EMPTY) return status;
    }
    return READ_INCOMPLETE;
  }

  private multibulk(bytes: Uint8Array, start: number, end: number): number {
    const count = this.number(bytes, start + 1, end);
    if (count === NUMBER_INCOMPLETE) return READ_INCOMPLETE;
    if (count === NUMBER_MALFORMED || count > RESP_MAX_ARGUMENTS)
      return this.fail("invalid multibulk length");
    let pos = this.cursor;
    if (count <= 0) {
      this.next_start = pos;
      return READ_EMPTY;
    }
    this.argc = 0;
    for (let i = 0; i < count; i++) {
      if (pos >= end) return READ_INCOMPLETE;
      if (bytes[pos] !== DOLLAR) return this.fail(`expected '$', got '${printable(bytes[pos]!)}'`);
      const length = this.number(bytes, pos + 1, end);
      if (length === NUMBER_INCOMPLETE) return READ_INCOMPLETE;
      if (length < 0) return this.fail("invalid bulk length");
      const payload = this.cursor;
      const after = payload + length + 2;
      if (after - start > this.max_request_bytes) {
        return this.fail(`request over the limit of ${this.max_request_bytes} bytes (--max-frame-bytes)`);
      }
      if (after > end) return READ_INCOMPLETE;
      if (bytes[after - 2] !== CR || bytes[after - 1] !== LF) {
        return this.fail("expected CRLF after a bulk string");
      }
      this.push(payload, payload + length);
      pos = after;
    }
    this.next_start = pos;
    return READ_REQUEST;
  }

  private inline(bytes: Uint8Array, start: number, end: number): number {
    const window_end = Math.min(end, start + RESP_MAX_INLINE_BYTES);
    const found = bytes.subarray(start, window_end).indexOf(LF);
    if (found < 0) {
      return window_end - start >= RESP_MAX_INLINE_BYTES
        ? this.fail("too big inline request")
        : READ_INCOMPLETE;
    }
    const newline = start + found;
    let line_end = newline;
    if (line_end > start && bytes[line_end - 1] === CR) line_end--;
    this.argc = 0;
    let pos = start;
    while (pos < line_end) {
      while (pos < line_end && isBlank(bytes[pos]!)) pos++;
      const word = pos;
      while (pos < line_end && !isBlank(bytes[pos]!)) pos++;
      if (pos > word) this.push(word, pos);
    }
    this.next_start = newline + 1;
    return this.argc === 0 ? READ_EMPTY : READ_REQUEST;
  }

  /**
   * The number on the line at `pos` (an optional `-`, then digits, then `\r\n`); sets `cursor` after
   * the line. NUMBER_INCOMPLETE if the line is not all there yet, NUMBER_MALFORMED if it is not one.
   */
  private number(bytes: Uint8Array, pos: number, end: number): number {
    let i = pos;
    const negative = i < end && bytes[i] === MINUS;
    if (negative) i++;
    let value = 0;
    const digits_start = i;
    while (i < end && bytes[i]! >= ZERO && bytes[i]! <= NINE) {
      if (i - digits_start >= MAX_DIGITS) return NUMBER_MALFORMED;
      value = value * 10 + (bytes[i]! - ZERO);
      i++;
    }
    if (i >= end) return NUMBER_INCOMPLETE;
    if (bytes[i] !== CR || i === digits_start) return NUMBER_MALFORMED;
    if (i + 1 >= end) return NUMBER_INCOMPLETE;
    if (bytes[i + 1] !== LF) return NUMBER_MALFORMED;
    this.cursor = i + 2;
    return negative ? -value : value;
  }

  private push(start: number, end: number): void {
    this.starts[this.argc] = start;
    this.ends[this.argc] = end;
    this.argc++;
  }

  private fail(reason: string): number {
    this.error = reason;
    return READ_MALFORMED;
  }
}

/** `*2\r\n$3\r\n`: a request of two arguments whose first (the name) has three bytes. */
const TWO_ARGUMENTS_NAME_OF_3 = [STAR, 0x32, CR, LF, DOLLAR, 0x33, CR, LF];
/** `*3\r\n$3\r\n`: a request of three arguments whose first (the name) has three bytes. */
const THREE_ARGUMENTS_NAME_OF_3 = [STAR, 0x33, CR, LF, DOLLAR, 0x33, CR, LF];
/** Most digits of a key length {@link findLeadingGets} reads (longer keys are not worth a hint). */
const GET_KEY_LENGTH_MAX_DIGITS = 5;
/** Most digits of a value length {@link readPlainSet} reads (a value under 1 GB). */
const SET_VALUE_LENGTH_MAX_DIGITS = 9;

/**
 * True if `bytes[pos, pos + 13)` is `*<argc>\r\n$3\r\n<name>\r\n`, `prefix` its first 8 bytes and
 * `name` three lowercase ASCII letters matched in any case.
 */
function plainCommandAt(bytes: Uint8Array, pos: number, prefix: readonly number[], name: string): boolean {
  for (let i = 0; i < 8; i++) if (bytes[pos + i] !== prefix[i]) return false;
  for (let i = 0; i < 3; i++) if ((bytes[pos + 8 + i]! | 0x20) !== name.charCodeAt(i)) return false;
  return bytes[pos + 11] === CR && bytes[pos + 12] === LF;
}

/** The payload length of the last bulk string {@link bulkAt} found. */
const bulk_length = new Int32Array(1);

/**
 * Where the payload of the bulk string `$<n>\r\n<payload>\r\n` at `pos` starts, if it is whole in
 * `bytes[pos, end)` and as RespReader accepts it (1 to `max_digits` digits, each line ended by
 * `\r\n`); -1 otherwise. Its length is `bulk_length[0]`.
 */
function bulkAt(bytes: Uint8Array, pos: number, end: number, max_digits: number): number {
  if (bytes[pos] !== DOLLAR) return -1;
  let i = pos + 1;
  let length = 0;
  for (; i < end && i <= pos + max_digits && bytes[i]! >= ZERO && bytes[i]! <= NINE; i++)
    length = length * 10 + bytes[i]! - ZERO;
  const payload = i + 2;
  if (i === pos + 1 || payload + length + 2 > end || bytes[i] !== CR || bytes[i + 1] !== LF) return -1;
  if (bytes[payload + length] !== CR || bytes[payload + length + 1] !== LF) return -1;
  bulk_length[0] = length;
  return payload;
}

/**
 * Finds the keys of the GETs that open `bytes[start, end)` in the form clients send them
 * (`*2\r\n$3\r\nGET\r\n$<n>\r\n<key>\r\n`, the name in any case): key i is
 * `bytes[key_starts[i], key_ends[i])`, for i < the count returned (a KeyFinder).
 * Stops at the first request of any other shape, one not all there, or one RespReader would refuse
 * (a line not ended by `\r\n`): Engine.touchKeys reads ahead with it, and RespProtocol.answerReads
 * answers what it finds, so it must accept nothing the general reader refuses.
 *
 * @example
 * engine.touchKeys(bytes, starts, ends, findLeadingGets(bytes, start, end, starts, ends));
 */
export const findLeadingGets: KeyFinder = (bytes, start, end, key_starts, key_ends) => {
  let n = 0;
  let pos = start;
  while (n < key_starts.length && pos + 13 < end) {
    if (!plainCommandAt(bytes, pos, TWO_ARGUMENTS_NAME_OF_3, "get")) return n;
    const key = bulkAt(bytes, pos + 13, end, GET_KEY_LENGTH_MAX_DIGITS);
    if (key < 0) return n;
    key_starts[n] = key;
    key_ends[n] = key + bulk_length[0]!;
    n++;
    pos = key_ends[n - 1]! + 2;
  }
  return n;
};

/**
 * Reads the SET at `pos` if it is whole in `bytes[pos, end)` in the form clients send it
 * (`*3\r\n$3\r\nSET\r\n$<k>\r\n<key>\r\n$<v>\r\n<value>\r\n`, the name in any case) and as
 * RespReader accepts it: returns where the next request starts and sets `ranges_out` to the key's
 * start and length and the value's start and length; -1 for anything else.
 *
 * @example
 * const next = readPlainSet(bytes, pos, end, ranges); // ranges: [key_start, key_length, value_start, value_length]
 */
export function readPlainSet(bytes: Uint8Array, pos: number, end: number, ranges_out: Int32Array): number {
  if (pos + 13 >= end || !plainCommandAt(bytes, pos, THREE_ARGUMENTS_NAME_OF_3, "set")) return -1;
  const key = bulkAt(bytes, pos + 13, end, SET_VALUE_LENGTH_MAX_DIGITS);
  if (key < 0) return -1;
  const key_length = bulk_length[0]!;
  const value = bulkAt(bytes, key + key_length + 2, end, SET_VALUE_LENGTH_MAX_DIGITS);
  if (value < 0) return -1;
  ranges_out[0] = key;
  ranges_out[1] = key_length;
  ranges_out[2] = value;
  ranges_out[3] = bulk_length[0]!;
  return value + bulk_length[0]! + 2;
}

function isBlank(b: number): boolean {
  return b === SPACE || b === TAB;
}

/** A byte as Redis shows it in protocol errors: itself if printable, else `\xNN`. */
function printable(b: number): string {
  return b >= 0x21 && b <= 0x7e ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
}
