/**
 * The output buffer both reply writers (msgpack's {@link MsgWriter}, RESP's RespWriter) append to.
 * Bytes go into a Buffer slab (node:net would wrap a plain Uint8Array in a Buffer on every write);
 * {@link SlabWriter.take} hands out what was written as a view ({@link SlabWriter.sendTo} as a range
 * to a socket), without a copy, and never writes those bytes again: a full slab is replaced by a new
 * one, not reused. Positions given to and taken from a writer ({@link SlabWriter.length},
 * {@link SlabWriter.truncate}) count from the last take.
 *
 * @example
 * class LineWriter extends SlabWriter {
 *   line(bytes: Uint8Array): void { this.raw(bytes); this.byte(0x0a); }
 * }
 * const w = new LineWriter(4096);
 * w.line(bytes);
 * w.sendTo(socket); // or socket.write(w.take())
 */
import { Buffer } from "node:buffer";
import { copyBytes } from "../engine/bytes.ts";
import type { ValueSink } from "../engine/table.ts";
import type { ClientSocket } from "./client_socket.ts";

/** Where {@link SlabWriter.stored} reads a value from: the engine. */
export interface ValueSource {
  /**
   * Hands the value of the key `key[key_start, +key_length)` (to the end of `key` when `key_length`
   * is undefined) to `sink`; true if there is one.
   */
  read(key: Uint8Array, sink: ValueSink, key_start: number, key_length: number | undefined): boolean;
}

export class SlabWriter implements ValueSink {
  protected buffer: Uint8Array;
  /** Where the bytes not yet taken start in `buffer`. */
  protected start = 0;
  /** Where the next byte goes in `buffer`. */
  protected end = 0;

  constructor(private readonly slab_bytes: number) {
    if (!Number.isSafeInteger(slab_bytes) || slab_bytes < 1) {
      throw new Error(`writer: slab_bytes ${slab_bytes} is not a positive integer`);
    }
    this.buffer = Buffer.allocUnsafeSlow(slab_bytes);
  }

  /**
   * Where the value {@link stored} is reading goes, counted from `start` (a full slab moves the
   * pending bytes to a new one: an absolute index would go stale): every {@link value} starts there.
   */
  private value_at = 0;

  /** Bytes written since the last {@link take}. */
  get length(): number {
    return this.end - this.start;
  }

  /** The bytes written since the last take (a view, never overwritten), and resets to empty. */
  take(): Uint8Array {
    const out = this.buffer.subarray(this.start, this.end);
    this.start = this.end;
    return out;
  }

  /**
   * Writes the bytes since the last take to `socket` as a range of the slab (no view), then resets to
   * empty: like `socket.write(w.take())`, without the view's cost.
   */
  sendTo(socket: ClientSocket): void {
    const start = this.start;
    this.start = this.end;
    socket.write(this.buffer, start, this.end);
  }

  /** Drops everything written after the first `length` bytes since the last take. */
  truncate(length: number): void {
    this.end = Math.min(this.end, this.start + length);
  }

  /** Appends bytes already encoded in the writer's format (a stored value, a constant reply). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.copyIn(bytes, 0, bytes.length);
  }

  /**
   * Appends the stored value of the key `key[key_start, +key_length)` (by default all of `key`) as
   * `source` hands it over (no copy of it in between: the bytes go from the table to the reply);
   * nothing if the key holds none. True if it did.
   *
   * @example
   * if (!w.stored(engine, key)) w.nil();
   */
  stored(source: ValueSource, key: Uint8Array, key_start = 0, key_length?: number): boolean {
    this.value_at = this.end - this.start;
    if (source.read(key, this, key_start, key_length)) return true;
    this.end = this.start + this.value_at;
    return false;
  }

  /** ValueSink: called by the table during {@link stored}, perhaps more than once (a writer raced). */
  value(bytes: Uint8Array, start: number, length: number): void {
    this.end = this.start + this.value_at;
    this.storedValue(bytes, start, length);
  }

  /** Encodes a stored value (an encoded msgpack value) at `end`: as is. */
  protected storedValue(bytes: Uint8Array, start: number, length: number): void {
    this.ensure(length);
    this.copyIn(bytes, start, length);
  }

  /** Appends `bytes[start, start + n)`; the caller made room for them. */
  protected copyIn(bytes: Uint8Array, start: number, n: number): void {
    copyBytes(this.buffer, this.end, bytes, start, n);
    this.end += n;
  }

  protected byte(b: number): void {
    this.ensure(1);
    this.buffer[this.end++] = b;
  }

  /** Makes room for `n` more bytes after `end` (a new slab keeps the bytes not yet taken). */
  protected ensure(n: number): void {
    if (this.end + n <= this.buffer.length) return;
    const pending = this.end - this.start;
    const next = Buffer.allocUnsafeSlow(Math.max(this.slab_bytes, 2 * (pending + n)));
    next.set(this.buffer.subarray(this.start, this.end));
    this.buffer = next;
    this.start = 0;
    this.end = pending;
  }
}
