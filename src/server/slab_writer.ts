/**
 * The output buffer both reply writers (msgpack's {@link MsgWriter}, RESP's RespWriter) append to.
 * Bytes go into a Buffer slab (node:net would wrap a plain Uint8Array in a Buffer on every write);
 * {@link SlabWriter.take} hands out what was written as a view, without a copy, and never writes
 * those bytes again: a full slab is replaced by a new one, not reused. Positions given to and taken
 * from a writer ({@link SlabWriter.length}, {@link SlabWriter.truncate}) count from the last take.
 *
 * @example
 * class LineWriter extends SlabWriter {
 *   line(bytes: Uint8Array): void { this.raw(bytes); this.byte(0x0a); }
 * }
 * const w = new LineWriter(4096);
 * w.line(bytes);
 * socket.write(w.take());
 */
import { Buffer } from "node:buffer";

export class SlabWriter {
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

  /** Drops everything written after the first `length` bytes since the last take. */
  truncate(length: number): void {
    this.end = Math.min(this.end, this.start + length);
  }

  /** Appends bytes already encoded in the writer's format (a stored value, a constant reply). */
  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buffer.set(bytes, this.end);
    this.end += bytes.length;
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
