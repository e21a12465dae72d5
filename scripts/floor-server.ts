/**
 * A reference point for walkv's figures: a lean key-value server in TypeScript on Bun, under
 * redis-benchmark. It parses RESP `SET key value` and `GET key`, keeps them in an open-addressing hash
 * table over one ArrayBuffer (a value overwritten by one of the same size or smaller is rewritten in
 * place), and answers in order with one `write` per chunk; anything else gets `+OK`. With `--wal PATH`
 * it also does walkv's `--fsync no` duty before it answers: each SET becomes a record (CRC-32C, key and
 * value lengths, key, value) and a chunk's records go to PATH with one `write(2)`, as walkv's WAL does.
 *
 * What it leaves out, on purpose: a table shared between threads (mutexes, seqlocks, versions),
 * freeing (overwritten space that does not fit is not reused), WAL segments, checkpoints, recovery,
 * limits beyond the coarse ones below, DEL and every other command, and validation of what it parses.
 * Not a server to use: a measure of what Bun's sockets, its JIT and the least work a durable SET needs
 * cost on this machine.
 * `scripts/bench-vs-redis.sh --floor` runs it with `--wal` beside Redis and walkv (fsync `no` rows).
 *
 * Limits: TABLE_SLOTS / 4 × 3 keys (786,432), ARENA_BYTES of records (1 GiB); a SET beyond either
 * gets `-ERR full`. Keys up to 2^16 bytes.
 *
 * @example
 * node_modules/.bin/bun scripts/floor-server.ts /tmp/floor.sock --wal /tmp/floor.wal   # prints "ready"
 * redis-benchmark -s /tmp/floor.sock -t set,get -P 16 -q
 */
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { crc32c } from "../src/engine/crc32c.ts";
import { usageError } from "./flags.ts";

const { positionals, values } = parseArgs({ allowPositionals: true, options: { wal: { type: "string" } } });
const socket_path = positionals[0];
if (socket_path === undefined || positionals.length !== 1)
  usageError("bun scripts/floor-server.ts SOCKET_PATH [--wal PATH]");

const TABLE_SLOTS = 1 << 20;
const KEYS_MAX = (TABLE_SLOTS / 4) * 3;
const ARENA_BYTES = 1 << 30;
const KEY_BYTES_MAX = 1 << 16;
/** Record in the arena: u32 key_length | u32 value_length | u32 capacity (value bytes) | key | value. */
const RECORD_HEADER_BYTES = 12;
/** WAL record: u32 crc32c of the rest | u32 key_length | u32 value_length | key | value. */
const WAL_HEADER_BYTES = 12;

const arena = new Uint8Array(ARENA_BYTES);
const arena_view = new DataView(arena.buffer);
let arena_top = 8; // offset 0 means "empty slot"
const slot_hashes = new Int32Array(TABLE_SLOTS);
const slot_offsets = new Int32Array(TABLE_SLOTS);
let keys = 0;

const wal_fd = values.wal === undefined ? -1 : fs.openSync(values.wal, "w");
let wal: Buffer = Buffer.alloc(1 << 20);
let wal_bytes = 0;
let wal_position = 0;

/** Replies of one chunk, written with one `write`. Grows if a chunk's replies need more. */
let out: Buffer = Buffer.alloc(1 << 20);
let out_bytes = 0;
/** End of the number parsed by the last `decimal` call (after its CRLF). */
let decimal_end = 0;
/** Start and length of each argument of the request being parsed (the first three are used). */
const ARGS_MAX = 64;
const arg_starts = new Int32Array(ARGS_MAX);
const arg_lengths = new Int32Array(ARGS_MAX);

/** The decimal number at `bytes[at]` up to its CR; sets `decimal_end`, or -1 if the chunk ends first. */
function decimal(bytes: Uint8Array, at: number): number {
  let n = 0;
  for (let i = at; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 13) {
      decimal_end = i + 2;
      return n;
    }
    n = n * 10 + (c - 48);
  }
  decimal_end = -1;
  return 0;
}

/** FNV-1a of `bytes[start, +length)`, never 0. */
function hash(bytes: Uint8Array, start: number, length: number): number {
  let h = 0x811c9dc5 | 0;
  for (let i = start; i < start + length; i++) h = Math.imul(h ^ bytes[i]!, 16777619);
  return h | 1;
}

/** The slot holding the key, or -1 - the empty slot where it would go. */
function findSlot(bytes: Uint8Array, key_start: number, key_length: number, h: number): number {
  for (let slot = h & (TABLE_SLOTS - 1); ; slot = (slot + 1) & (TABLE_SLOTS - 1)) {
    const at = slot_offsets[slot]!;
    if (at === 0) return -1 - slot;
    if (slot_hashes[slot] !== h || arena_view.getUint32(at, true) !== key_length) continue;
    let equal = true;
    for (let i = 0; i < key_length && equal; i++)
      equal = arena[at + RECORD_HEADER_BYTES + i] === bytes[key_start + i];
    if (equal) return slot;
  }
}

/** Room for `size_bytes` more bytes in `buffer` (holding `used` bytes): the same or a bigger copy. */
function reserve(buffer: Buffer, used: number, size_bytes: number): Buffer {
  if (used + size_bytes <= buffer.length) return buffer;
  const bigger = Buffer.alloc(Math.max(buffer.length * 2, used + size_bytes));
  buffer.copy(bigger, 0, 0, used);
  return bigger;
}

/** `+OK\r\n`, written byte by byte (the common reply: no string to convert). */
function replyOk(): void {
  out = reserve(out, out_bytes, 5);
  out[out_bytes] = 43;
  out[out_bytes + 1] = 79;
  out[out_bytes + 2] = 75;
  out[out_bytes + 3] = 13;
  out[out_bytes + 4] = 10;
  out_bytes += 5;
}

/** `$<length>\r\n<value>\r\n` of the arena's `[start, +length)`. */
function replyBulk(start: number, length: number): void {
  out = reserve(out, out_bytes, length + 16);
  out[out_bytes++] = 36;
  const digits = length === 0 ? 1 : Math.floor(Math.log10(length)) + 1;
  for (let i = digits - 1, n = length; i >= 0; i--, n = Math.floor(n / 10))
    out[out_bytes + i] = 48 + (n % 10);
  out_bytes += digits;
  out[out_bytes++] = 13;
  out[out_bytes++] = 10;
  Buffer.prototype.copy.call(arena, out, out_bytes, start, start + length);
  out_bytes += length;
  out[out_bytes++] = 13;
  out[out_bytes++] = 10;
}

function reply(text: string): void {
  out = reserve(out, out_bytes, text.length);
  out_bytes += out.write(text, out_bytes, "latin1");
}

/** Appends SET's WAL record to this chunk's batch. */
function logSet(
  bytes: Buffer,
  key_start: number,
  key_length: number,
  value_start: number,
  value_length: number,
): void {
  const start = wal_bytes;
  wal = reserve(wal, wal_bytes, WAL_HEADER_BYTES + key_length + value_length);
  wal.writeUInt32LE(key_length, start + 4);
  wal.writeUInt32LE(value_length, start + 8);
  bytes.copy(wal, start + WAL_HEADER_BYTES, key_start, key_start + key_length);
  bytes.copy(wal, start + WAL_HEADER_BYTES + key_length, value_start, value_start + value_length);
  wal_bytes = start + WAL_HEADER_BYTES + key_length + value_length;
  wal.writeUInt32LE(crc32c(wal, start + 4, wal_bytes), start);
}

/** `SET key value`, the key and value being the request's arguments 1 and 2. */
function set(bytes: Buffer): void {
  const key_start = arg_starts[1]!;
  const key_length = arg_lengths[1]!;
  const value_start = arg_starts[2]!;
  const value_length = arg_lengths[2]!;
  const h = hash(bytes, key_start, key_length);
  const slot = findSlot(bytes, key_start, key_length, h);
  let at = slot >= 0 ? slot_offsets[slot]! : 0;
  if (at === 0 || arena_view.getUint32(at + 8, true) < value_length) {
    const size_bytes = (RECORD_HEADER_BYTES + key_length + value_length + 7) & ~7;
    if (
      (slot < 0 && keys >= KEYS_MAX) ||
      arena_top + size_bytes > ARENA_BYTES ||
      key_length > KEY_BYTES_MAX
    ) {
      reply("-ERR full\r\n");
      return;
    }
    at = arena_top;
    arena_top += size_bytes;
    arena_view.setUint32(at, key_length, true);
    arena_view.setUint32(at + 8, value_length, true);
    bytes.copy(arena, at + RECORD_HEADER_BYTES, key_start, key_start + key_length);
  }
  if (wal_fd >= 0) logSet(bytes, key_start, key_length, value_start, value_length);
  arena_view.setUint32(at + 4, value_length, true);
  bytes.copy(arena, at + RECORD_HEADER_BYTES + key_length, value_start, value_start + value_length);
  if (slot < 0) {
    slot_hashes[-1 - slot] = h;
    slot_offsets[-1 - slot] = at;
    keys++;
  } else slot_offsets[slot] = at;
  replyOk();
}

function get(bytes: Buffer, key_start: number, key_length: number): void {
  const slot = findSlot(bytes, key_start, key_length, hash(bytes, key_start, key_length));
  if (slot < 0) {
    reply("$-1\r\n");
    return;
  }
  const at = slot_offsets[slot]!;
  const value_length = arena_view.getUint32(at + 4, true);
  const value_start = at + RECORD_HEADER_BYTES + arena_view.getUint32(at, true);
  replyBulk(value_start, value_length);
}

/**
 * Serves every whole request in `bytes`; returns the offset of the first incomplete one.
 * A request is `*N`, then N bulk strings `$len CRLF bytes CRLF`.
 */
function serve(bytes: Buffer): number {
  let at = 0;
  while (at < bytes.length) {
    const argc = decimal(bytes, at + 1);
    let next = decimal_end;
    for (let a = 0; a < argc && next !== -1; a++) {
      const length = decimal(bytes, next + 1);
      if (decimal_end === -1 || decimal_end + length + 2 > bytes.length) next = -1;
      else {
        if (a < ARGS_MAX) {
          arg_starts[a] = decimal_end;
          arg_lengths[a] = length;
        }
        next = decimal_end + length + 2;
      }
    }
    if (next === -1 || decimal_end === -1) return at;
    const command = argc > 0 ? bytes[arg_starts[0]!]! | 32 : 0;
    if (command === 115 && argc === 3) set(bytes);
    else if (command === 103 && argc === 2) get(bytes, arg_starts[1]!, arg_lengths[1]!);
    else replyOk();
    at = next;
  }
  return at;
}

/** Writes this chunk's WAL records (before any of their replies leave). */
function writeWal(): void {
  if (wal_bytes === 0) return;
  let written = 0;
  while (written < wal_bytes)
    written += fs.writeSync(wal_fd, wal, written, wal_bytes - written, wal_position + written);
  wal_position += wal_bytes;
  wal_bytes = 0;
}

interface State {
  /** Bytes of an incomplete request, kept for the next chunk. */
  rest: Buffer | undefined;
  /** Reply bytes the socket did not take yet; written on `drain`. */
  unsent: Buffer | undefined;
}

function send(socket: Bun.Socket<State>, bytes: Buffer, end: number): void {
  if (socket.data.unsent !== undefined) {
    socket.data.unsent = Buffer.concat([socket.data.unsent, bytes.subarray(0, end)]);
    return;
  }
  const written = socket.write(bytes, 0, end);
  if (written < end) socket.data.unsent = Buffer.from(bytes.subarray(Math.max(written, 0), end));
}

Bun.listen<State>({
  unix: socket_path,
  socket: {
    open(socket) {
      socket.data = { rest: undefined, unsent: undefined };
    },
    data(socket, chunk) {
      const bytes = socket.data.rest === undefined ? chunk : Buffer.concat([socket.data.rest, chunk]);
      out_bytes = 0;
      const used = serve(bytes);
      socket.data.rest = used < bytes.length ? Buffer.from(bytes.subarray(used)) : undefined;
      writeWal();
      if (out_bytes > 0) send(socket, out, out_bytes);
    },
    drain(socket) {
      const unsent = socket.data.unsent;
      socket.data.unsent = undefined;
      if (unsent !== undefined) send(socket, unsent, unsent.length);
    },
  },
});
console.log("ready");
