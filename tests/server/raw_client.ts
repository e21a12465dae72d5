/**
 * A deliberately raw test client of protocol v1 (independent of src/client): it writes frames
 * (4-byte big-endian length + body) or arbitrary bytes, and reads response frames in order. Request
 * bodies are encoded with msgpackr (`useRecords: false`) unless the test hands over its own bytes.
 *
 * @example
 * const c = await RawClient.connect(socket_path);
 * c.send([1, "ping"]);
 * expect(await c.next()).toEqual([1, 0, "pong"]);
 * c.close();
 */
import type * as net from "node:net";
import { Packr } from "msgpackr";
import { connectSocket, MessageStream } from "./message_stream.ts";

export const packr = new Packr({ useRecords: false });

/** A decoded response `[id, code, result]`. */
export type Response = [number, number, unknown];

export class RawClient {
  private readonly stream: MessageStream<Uint8Array>;
  private next_id = 1;
  /** Resolves once the server closed the connection (or it failed). */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    this.stream = new MessageStream(socket, parseFrame, "response frame");
    this.closed = this.stream.closed;
  }

  /** Connects to the Unix socket at `path`. */
  static async connect(path: string): Promise<RawClient> {
    return new RawClient(await connectSocket({ path }));
  }

  /** Writes raw bytes, unframed. */
  sendRaw(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Writes one frame around `body`. */
  sendFrame(body: Uint8Array): void {
    this.sendRaw(frame(body));
  }

  /** Encodes `request` with msgpackr and writes it as one frame. */
  send(request: unknown): void {
    this.sendFrame(packr.pack(request));
  }

  /** Sends `[id, op, ...args]` with a fresh id and resolves with its response (ids are checked). */
  async call(op: string, ...args: unknown[]): Promise<Response> {
    const id = this.next_id++;
    this.send([id, op, ...args]);
    const response = await this.next();
    if (response[0] !== id) throw new Error(`response id ${response[0]} for request id ${id}`);
    return response;
  }

  /** The next response frame's body, raw. Rejects if the connection closes first. */
  nextFrame(): Promise<Uint8Array> {
    return this.stream.next();
  }

  /** The next response, decoded. */
  async next(): Promise<Response> {
    return packr.unpack(await this.nextFrame()) as Response;
  }

  /**
   * Asks for 4 MiB of replies (64 GETs of a 64 KiB value, set first) and reads none of them: the
   * daemon cannot drain this connection, so a `--shutdown-timeout 0` always cuts its workers off.
   * Resolves once the daemon has served the 64 GETs (its GET count, asked through `probe`, another
   * connection, moved by 64): a drain that started before it read them would find nothing to wait for.
   */
  async stallReplies(probe: RawClient): Promise<void> {
    const [, code] = await this.call("set", "stall:big", "x".repeat(64 << 10));
    if (code !== 0) throw new Error(`stall: set answered code ${code}`);
    const gets_before = await probe.getCount();
    // Stop reading at the socket: with its data listener flowing, this process would take every
    // reply into memory, the daemon's writes would all complete, and its drain could finish.
    this.socket.pause();
    for (let i = 0; i < 64; i++) this.send([this.next_id++, "get", "stall:big"]);
    const deadline_ms = performance.now() + 10_000;
    while ((await probe.getCount()) < gets_before + 64) {
      if (performance.now() > deadline_ms) throw new Error("stall: the daemon did not serve the GETs");
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** GETs the daemon has served, from its `stats`. */
  private async getCount(): Promise<number> {
    const [, code, stats] = await this.call("stats");
    if (code !== 0) throw new Error(`stats answered code ${code}`);
    return (stats as { ops: { get: number } }).ops.get;
  }

  /** Closes our side. */
  close(): void {
    this.socket.destroy();
  }
}

/** One response frame's body at `bytes[pos]` (4-byte big-endian length first), if complete. */
function parseFrame(bytes: Uint8Array, pos: number): { message: Uint8Array; end: number } | undefined {
  if (bytes.length - pos < 4) return undefined;
  const length = new DataView(bytes.buffer, bytes.byteOffset + pos, 4).getUint32(0);
  if (bytes.length - pos - 4 < length) return undefined;
  return { message: bytes.slice(pos + 4, pos + 4 + length), end: pos + 4 + length };
}

/** `body` with its 4-byte big-endian length in front. */
export function frame(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length);
  out.set(body, 4);
  return out;
}

/** The concatenation of byte arrays (or arrays of byte values). */
export function concat(...parts: ArrayLike<number>[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** A msgpack str header + UTF-8 bytes of `text` (any length). */
export function msgStr(text: string): Uint8Array {
  return packr.pack(text);
}

/** A msgpack bin of `bytes` (bin8/16/32 by length). */
export function msgBin(bytes: Uint8Array): Uint8Array {
  const n = bytes.length;
  const head = n < 0x100 ? [0xc4, n] : n < 0x10000 ? [0xc5, n >>> 8, n & 0xff] : [0xc6, ...be32(n)];
  return concat(head, bytes);
}

/** A request body assembled from already-encoded parts: fixarray header + parts. */
export function rawRequest(...parts: ArrayLike<number>[]): Uint8Array {
  if (parts.length >= 16) throw new Error("rawRequest: at most 15 elements");
  return concat([0x90 | parts.length], ...parts);
}

/** The exact body of a success response `[id, 0, <value bytes>]` for a small id (< 128). */
export function okBody(id: number, value_bytes: ArrayLike<number>): Uint8Array {
  if (id >= 128) throw new Error("okBody: id must be a positive fixint");
  return concat([0x93, id, 0x00], value_bytes);
}

function be32(n: number): number[] {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

/** The seed of randomised tests: env WALKV_SEED or `fallback`. */
export function testSeed(fallback: number): number {
  const text = process.env.WALKV_SEED;
  return text === undefined || text === "" ? fallback : Number(text) >>> 0;
}
