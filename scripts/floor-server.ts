/**
 * A reference point for walkv's figures: the plainest key-value server in TypeScript on Bun, under
 * redis-benchmark. It parses RESP `SET key value` and `GET key`, keeps the values in a `Map` keyed by
 * latin1 strings (each value copied out of the socket's chunk; a request split across two chunks is
 * copied once more), and answers in order; anything else gets `+OK`. No WAL, no shared memory, no
 * limits, no validation of what it parses: not a server to use, and not a bound on what TypeScript
 * can do either (walkv's GET is faster), only a measure of what Bun's sockets, its JIT and a `Map`
 * cost. `scripts/bench-vs-redis.sh --floor` runs it beside Redis and walkv (fsync `no` rows).
 *
 * @example
 * node_modules/.bin/bun scripts/floor-server.ts /tmp/floor.sock   # prints "ready", serves until killed
 * redis-benchmark -s /tmp/floor.sock -t set,get -P 16 -q
 */
const socket_path = process.argv[2];
if (socket_path === undefined) {
  console.error("usage: bun scripts/floor-server.ts SOCKET_PATH");
  process.exit(2);
}

const store = new Map<string, Uint8Array>();
const OK = Buffer.from("+OK\r\n");
const NIL = Buffer.from("$-1\r\n");
/** Replies of one chunk, written with one `write`. Grows if a chunk's replies need more. */
let out = Buffer.alloc(1 << 20);
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

/** Room for `size_bytes` more reply bytes. */
function reserve(size_bytes: number): void {
  if (out_bytes + size_bytes <= out.length) return;
  const bigger = Buffer.alloc(Math.max(out.length * 2, out_bytes + size_bytes));
  out.copy(bigger, 0, 0, out_bytes);
  out = bigger;
}

function reply(bytes: Uint8Array): void {
  reserve(bytes.length);
  out.set(bytes, out_bytes);
  out_bytes += bytes.length;
}

/** `$<length>\r\n<value>\r\n`. */
function replyBulk(value: Uint8Array): void {
  reserve(value.length + 16);
  out_bytes += out.write(`$${value.length}\r\n`, out_bytes, "latin1");
  out.set(value, out_bytes);
  out_bytes += value.length;
  out[out_bytes++] = 13;
  out[out_bytes++] = 10;
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
    if (command === 115 && argc === 3) {
      const key = bytes.toString("latin1", arg_starts[1]!, arg_starts[1]! + arg_lengths[1]!);
      store.set(
        key,
        Uint8Array.prototype.slice.call(bytes, arg_starts[2]!, arg_starts[2]! + arg_lengths[2]!),
      );
      reply(OK);
    } else if (command === 103 && argc === 2) {
      const value = store.get(bytes.toString("latin1", arg_starts[1]!, arg_starts[1]! + arg_lengths[1]!));
      if (value === undefined) reply(NIL);
      else replyBulk(value);
    } else reply(OK);
    at = next;
  }
  return at;
}

interface State {
  /** Bytes of an incomplete request, kept for the next chunk. */
  rest: Buffer | undefined;
  /** Reply bytes the socket did not take yet; written on `drain`. */
  unsent: Buffer | undefined;
}

function send(socket: Bun.Socket<State>, bytes: Buffer): void {
  if (socket.data.unsent !== undefined) {
    socket.data.unsent = Buffer.concat([socket.data.unsent, bytes]);
    return;
  }
  const written = socket.write(bytes);
  if (written < bytes.length) socket.data.unsent = Buffer.from(bytes.subarray(Math.max(written, 0)));
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
      if (out_bytes > 0) send(socket, out.subarray(0, out_bytes));
    },
    drain(socket) {
      const unsent = socket.data.unsent;
      socket.data.unsent = undefined;
      if (unsent !== undefined) send(socket, unsent);
    },
  },
});
console.log("ready");
