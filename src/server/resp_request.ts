/**
 * One RESP request: its command and where its arguments lie in the connection's input. Arguments are
 * offsets, not views: making a typed-array view costs ≈ 0.3–1 µs in JavaScriptCore (more than the
 * rest of a GET; the first view of a socket's buffer ≈ 1–1.5 µs), so a command takes exactly the form
 * it needs — byte ranges for a write, a reused scratch key for a synchronous read, a view or a
 * string on rare paths. Input bytes are never overwritten (connection.ts), so the offsets stay valid
 * while the request waits.
 *
 * @example
 * const request = new RespRequest().load(command, bytes, reader, performance.now());
 * request.count;              // arguments after the name
 * engine.get(scratchKey(request, 0));
 * ctx.sets.add(request.setEntry(0, 1), waiter); // SET key value: ranges of the input
 * waiting.push(request.clone()); // to keep it past the next load
 */
import { setEntryIn, type WalEntry } from "../engine/wal/record.ts";
import { writeBinHeader } from "./msgpack.ts";
import type { RespCommand } from "./resp_commands.ts";
import { KEEP_ARGUMENT_SLOTS, type RespReader } from "./resp_reader.ts";
import { binSize, binValue } from "./resp_values.ts";
import { scratchCopy } from "./scratch_key.ts";

const EMPTY = new Uint8Array(0);

/** Decodes command names and numbers (ASCII) without a UTF-8 pass. */
export const latin1 = new TextDecoder("latin1");

export class RespRequest {
  /** Undefined if the name is not a command walkv knows. */
  command: RespCommand | undefined = undefined;
  bytes: Uint8Array = EMPTY;
  started_ms = 0;
  /** Arguments after the name. */
  count = 0;
  /** `[start, end)` pairs: the name, then each argument (the first 2 × (count + 1) are in use). */
  private offsets: number[] = [];

  /**
   * Makes this the request `reader` just read from `bytes`. A protocol reuses one RespRequest for
   * every request it reads (no allocation per request) and {@link clone}s one that must wait.
   */
  load(command: RespCommand | undefined, bytes: Uint8Array, reader: RespReader, started_ms: number): this {
    if (reader.argc < 1) throw new Error("RespRequest.load: a request has at least its name");
    this.command = command;
    this.bytes = bytes;
    this.started_ms = started_ms;
    this.count = reader.argc - 1;
    // Slots of an earlier huge request are dropped, not kept (nor copied) for every later one.
    if (this.offsets.length > 2 * KEEP_ARGUMENT_SLOTS) this.offsets = [];
    for (let i = 0; i < reader.argc; i++) {
      this.offsets[2 * i] = reader.starts[i]!;
      this.offsets[2 * i + 1] = reader.ends[i]!;
    }
    return this;
  }

  /** A copy of this request that the next {@link load} leaves alone. */
  clone(): RespRequest {
    const copy = new RespRequest();
    copy.command = this.command;
    copy.bytes = this.bytes;
    copy.started_ms = this.started_ms;
    copy.count = this.count;
    copy.offsets = this.offsets.slice(0, 2 * (this.count + 1));
    return copy;
  }

  /** Length of argument `i` (0: the first after the name). */
  length(i: number): number {
    return this.offsets[2 * i + 3]! - this.offsets[2 * i + 2]!;
  }

  /** Where argument `i` starts in `bytes`. */
  offset(i: number): number {
    return this.offsets[2 * i + 2]!;
  }

  /**
   * A SET of argument `key_i` to argument `value_i` in its stored form, a msgpack bin: both are ranges
   * of the input, not views or copies (a first view of a socket's buffer costs ≈ 1 µs). The bin header
   * is written over the end of the value's own `$<length>\r\n` line, which is never read again. An
   * inline command has no room before its arguments: there, the value is a copy.
   */
  setEntry(key_i: number, value_i: number): WalEntry {
    const key_start = this.offsets[2 * key_i + 2]!;
    const value_start = this.offsets[2 * value_i + 2]!;
    return binSetEntry(
      this.bytes,
      key_start,
      this.offsets[2 * key_i + 3]! - key_start,
      value_start,
      this.offsets[2 * value_i + 3]! - value_start,
      this.offsets[2 * value_i + 1]! + 2, // keep the previous argument's CRLF
    );
  }

  /** A view of argument `i` (rare paths: multi-key commands, echoes). */
  view(i: number): Uint8Array {
    return this.bytes.subarray(this.offsets[2 * i + 2]!, this.offsets[2 * i + 3]!);
  }

  /** Argument `i` as text, one character per byte (options, numbers). */
  text(i: number): string {
    return latin1.decode(this.view(i));
  }

  /** Every argument as a view. */
  views(): Uint8Array[] {
    return Array.from({ length: this.count }, (_, i) => this.view(i));
  }

  /** The name as sent (for the error of an unknown command). */
  name(): Uint8Array {
    return this.bytes.subarray(this.offsets[0]!, this.offsets[1]!);
  }
}

/**
 * Argument `i` in a scratch array reused by the next call (a copy for long keys): only for a key
 * that the engine reads synchronously and does not keep (get, exists).
 */
export function scratchKey(request: RespRequest, i: number): Uint8Array {
  return scratchCopy(request.bytes, request.offset(i), request.length(i));
}

/**
 * A SET of the key `bytes[key_start, +key_length)` to the value `bytes[value_start, +value_length)`
 * stored as msgpack bin: the bin header is written over the `$<n>\r\n` line before the value, after
 * `previous_end` (the bytes before it are another argument's), or the value is copied if it does not
 * fit there. The request's bytes are the entry's: no view, no copy of the key.
 *
 * @example
 * sets.add(binSetEntry(bytes, key_start, key_length, value_start, value_length, key_start + key_length + 2), waiter);
 */
export function binSetEntry(
  bytes: Uint8Array,
  key_start: number,
  key_length: number,
  value_start: number,
  value_length: number,
  previous_end: number,
): WalEntry {
  const header = binSize(value_length) - value_length;
  if (value_start - previous_end < header) {
    const copy = binValue(bytes, value_start, value_length);
    return setEntryIn(bytes, key_start, key_length, copy, 0, copy.length, 0);
  }
  writeBinHeader(bytes, value_start - header, value_length);
  return setEntryIn(bytes, key_start, key_length, bytes, value_start - header, header + value_length, 0);
}
