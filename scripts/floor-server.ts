/**
 * The least a key-value server in TypeScript on Bun can do under redis-benchmark: a lower bound
 * ("floor") to read walkv's figures against. It parses RESP `SET key value` and `GET key`, keeps the
 * values in a `Map` keyed by latin1 strings (each value copied once out of the socket's chunk), and
 * answers in order; anything else gets `+OK`. No WAL, no shared memory, no limits, no validation of
 * what it parses: not a server to use, only a measure of what Bun's sockets, its JIT and a `Map` cost.
 * `scripts/bench-vs-redis.sh --floor` runs it beside Redis and walkv (fsync `no` rows).
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

function reply(bytes: Uint8Array): void {
  if (out_bytes + bytes.length > out.length) {
    const bigger = Buffer.alloc(Math.max(out.length * 2, out_bytes + bytes.length));
    out.copy(bigger, 0, 0, out_bytes);
    out = bigger;
  }
  out.set(bytes, out_bytes);
  out_bytes += bytes.length;
}

/**
 * Serves every whole request in `bytes`; returns the offset of the first incomplete one.
 * A request is `*N`, then N bulk strings `$len CRLF bytes CRLF`.
 */
function serve(bytes: Buffer): number {
  let at = 0;
  while (at < bytes.length) {
    const argc = decimal(bytes, at + 1);
    const offsets: number[] = [];
    let next = decimal_end;
    for (let a = 0; a < argc && next !== -1; a++) {
      const length = decimal(bytes, next + 1);
      if (decimal_end === -1 || decimal_end + length + 2 > bytes.length) next = -1;
      else {
        offsets.push(decimal_end, length);
        next = decimal_end + length + 2;
      }
    }
    if (next === -1 || decimal_end === -1) return at;
    const command = bytes[offsets[0]!]! | 32;
    if (command === 115 && argc === 3) {
      const key = bytes.toString("latin1", offsets[2]!, offsets[2]! + offsets[3]!);
      store.set(key, Uint8Array.prototype.slice.call(bytes, offsets[4]!, offsets[4]! + offsets[5]!));
      reply(OK);
    } else if (command === 103 && argc === 2) {
      const value = store.get(bytes.toString("latin1", offsets[2]!, offsets[2]! + offsets[3]!));
      if (value === undefined) reply(NIL);
      else {
        reply(Buffer.from(`$${value.length}\r\n`, "latin1"));
        reply(value);
        reply(Buffer.from("\r\n"));
      }
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
