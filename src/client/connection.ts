/**
 * One client connection to a walkv daemon (protocol v1, docs/protocol.md): framing (4-byte
 * big-endian length + one msgpack value), automatic pipelining and in-order response matching.
 *
 * - Every request is encoded at once into one shared buffer; all requests made in the same tick
 *   leave in one socket write (flushed from a microtask).
 * - Ids increase (1 … 2^32-1, then wrap to 1); the server answers in request order, so each
 *   response must carry the id of the oldest request in flight, or the connection is dropped.
 * - When the socket closes, every request in flight is rejected with a ConnectionError: the client
 *   never resends (a write may have taken effect).
 *
 * @example
 * const conn = await Connection.open("/run/walkv.sock", { max_frame_bytes: 64 << 20 });
 * const result = await conn.request("get", 1, (w) => w.string("k")); // msgpack bytes of the result
 * await conn.end();
 */

import * as net from "node:net";
import { readU32BE } from "../engine/bytes.ts";
import { assert } from "../engine/errors.ts";
import { MsgReader, MsgWriter } from "../server/msgpack.ts";
import { packr } from "../server/pack.ts";
import {
  ConnectionError,
  responseError,
  TimeoutError,
  TooLargeError,
  type WalkvClientError,
} from "./errors.ts";

const FRAME_HEADER_BYTES = 4;
const ID_MAX = 0xffff_ffff;

/**
 * Limits of one connection.
 *
 * @example
 * const limits: ConnectionLimits = { max_frame_bytes: 64 << 20, request_timeout_ms: 5000 };
 */
export interface ConnectionLimits {
  /** Largest request or response frame body, in bytes (the server's `--max-frame-bytes`). */
  readonly max_frame_bytes: number;
  /** Time a request may wait for its response before the connection is dropped; undefined = forever. */
  readonly request_timeout_ms?: number | undefined;
}

/**
 * Writes a request's arguments (after `[id, op`) with the envelope writer.
 *
 * @example
 * const write: WriteArgs = (w) => { w.string("key"); w.raw(packr.pack(value)) };
 */
export type WriteArgs = (w: MsgWriter) => void;

interface Pending {
  readonly id: number;
  readonly op: string;
  readonly resolve: (result: Uint8Array) => void;
  readonly reject: (error: WalkvClientError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * A connection; see the module comment. Open it with {@link Connection.open}.
 *
 * @example
 * const conn = await Connection.open(path, { max_frame_bytes: 64 << 20 });
 * conn.onClose(() => console.error("connection lost"));
 */
export class Connection {
  private readonly out = new MsgWriter();
  /** Requests in flight from `inflight_head` on, oldest first (answered ones cleared). */
  private readonly inflight: Array<Pending | undefined> = [];
  private inflight_head = 0;
  private next_id = 1;
  private flush_scheduled = false;
  private received: Uint8Array = new Uint8Array(0);
  private close_reason: ConnectionError | undefined;
  private readonly close_listeners: Array<() => void> = [];
  /** Called when nothing is in flight any more (see {@link end}). */
  private readonly idle_listeners: Array<() => void> = [];
  private readonly closed_promise: Promise<void>;

  private constructor(
    private readonly socket: net.Socket,
    private readonly path: string,
    private readonly limits: ConnectionLimits,
  ) {
    assert(limits.max_frame_bytes >= 1, "max_frame_bytes must be positive");
    this.closed_promise = new Promise((resolve) => this.close_listeners.push(resolve));
    socket.on("data", (chunk: Uint8Array) => this.receive(chunk));
    socket.on("error", (error) =>
      this.drop(new ConnectionError(`${path}: ${error.message}`, { cause: error })),
    );
    socket.on("close", () => this.drop(new ConnectionError(`${path}: connection closed by the server`)));
  }

  /**
   * Connects to the daemon's Unix socket. Rejects with a ConnectionError if it cannot.
   *
   * @example
   * const conn = await Connection.open("./var/walkv.sock", { max_frame_bytes: 64 << 20 });
   */
  static open(path: string, limits: ConnectionLimits): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ path });
      const fail = (error: Error) => {
        socket.destroy();
        reject(new ConnectionError(`cannot connect to ${path}: ${error.message}`, { cause: error }));
      };
      socket.once("error", fail);
      socket.once("connect", () => {
        socket.off("error", fail);
        resolve(new Connection(socket, path, limits));
      });
    });
  }

  /** True once the socket is closed (or closing): requests are refused. */
  get closed(): boolean {
    return this.close_reason !== undefined;
  }

  /** Requests sent and not yet answered. */
  get inflight_count(): number {
    return this.inflight.length - this.inflight_head;
  }

  /** Calls `listener` once, when the connection is closed for any reason. */
  onClose(listener: () => void): void {
    if (this.closed) queueMicrotask(listener);
    else this.close_listeners.push(listener);
  }

  /**
   * Sends `[id, op, ...args]` (`argc` arguments written by `write`) and resolves with the msgpack
   * bytes of the result; a non-zero response code rejects with its typed error. A request over
   * `max_frame_bytes` is refused locally with a TooLargeError, before anything is sent.
   *
   * @example
   * const bytes = await conn.request("mget", 1, (w) => { w.arrayHeader(2); w.string("a"); w.string("b") });
   */
  request(op: string, argc: number, write: WriteArgs): Promise<Uint8Array> {
    assert(argc >= 0, "argc must not be negative");
    if (this.close_reason !== undefined) return Promise.reject(this.close_reason);
    const id = this.next_id;
    const start = this.out.beginFrame();
    this.out.arrayHeader(2 + argc);
    this.out.uint(id);
    this.out.string(op);
    write(this.out);
    const body_bytes = this.out.endFrame(start);
    if (body_bytes > this.limits.max_frame_bytes) {
      this.out.truncate(start);
      return Promise.reject(
        new TooLargeError(
          `${op}: request of ${body_bytes} bytes is over the frame limit of ${this.limits.max_frame_bytes}`,
        ),
      );
    }
    this.next_id = id === ID_MAX ? 1 : id + 1;
    this.scheduleFlush();
    return new Promise((resolve, reject) => {
      const pending: Pending = { id, op, resolve, reject, timer: undefined };
      const timeout_ms = this.limits.request_timeout_ms;
      if (timeout_ms !== undefined)
        pending.timer = setTimeout(() => this.timeOut(pending, timeout_ms), timeout_ms);
      this.inflight.push(pending);
    });
  }

  /**
   * Waits for the responses in flight, then closes the socket.
   *
   * @example
   * await conn.end();
   */
  async end(): Promise<void> {
    if (!this.closed && this.inflight_count > 0) {
      await new Promise<void>((resolve) => this.idle_listeners.push(resolve));
    }
    if (!this.closed) {
      this.socket.end();
      this.drop(new ConnectionError(`${this.path}: connection closed by the client`));
    }
    await this.closed_promise;
  }

  /**
   * Closes the socket at once; every request in flight is rejected with `reason`.
   *
   * @example
   * conn.destroy(new ConnectionError("shutting down"));
   */
  destroy(reason: ConnectionError): void {
    this.socket.destroy();
    this.drop(reason);
  }

  private scheduleFlush(): void {
    if (this.flush_scheduled) return;
    this.flush_scheduled = true;
    queueMicrotask(() => {
      this.flush_scheduled = false;
      if (this.out.length > 0 && !this.closed) this.socket.write(this.out.take());
    });
  }

  private receive(chunk: Uint8Array): void {
    const bytes = this.received.length === 0 ? chunk : concat(this.received, chunk);
    let pos = 0;
    while (!this.closed && bytes.length - pos >= FRAME_HEADER_BYTES) {
      const length = readU32BE(bytes, pos);
      if (length === 0 || length > this.limits.max_frame_bytes) {
        this.destroy(
          new ConnectionError(
            `${this.path}: response frame of ${length} bytes (limit ${this.limits.max_frame_bytes})`,
          ),
        );
        return;
      }
      if (bytes.length - pos - FRAME_HEADER_BYTES < length) break;
      // A copy: decoded values (bin) may keep views of it, and the runtime may reuse `chunk`.
      const frame = bytes.slice(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + length);
      pos += FRAME_HEADER_BYTES + length;
      this.response(frame);
    }
    this.received = pos === bytes.length ? new Uint8Array(0) : bytes.slice(pos);
  }

  /** Matches a response `[id, code, result]` to the oldest request in flight. */
  private response(frame: Uint8Array): void {
    const r = new MsgReader(frame, 0, frame.length);
    const ok = r.arrayHeader() === 3;
    const id = ok ? r.uint() : -1;
    const code = id >= 0 ? r.uint() : -1;
    const result = frame.subarray(r.pos);
    const pending = this.inflight[this.inflight_head];
    if (code < 0) {
      this.destroy(new ConnectionError(`${this.path}: malformed response`));
      return;
    }
    // `[0, code, message]`: the server refused a frame or the connection (too many, shutting down)
    // and closes it. The oldest request gets the typed error; the others a ConnectionError.
    if (id === 0 && code !== 0) {
      if (pending !== undefined) this.settleOldest(pending, code, result);
      this.destroy(new ConnectionError(`${this.path}: closed by the server: ${describe(result)}`));
      return;
    }
    if (pending === undefined || id !== pending.id) {
      this.destroy(new ConnectionError(`${this.path}: response id ${id}, expected ${pending?.id ?? "none"}`));
      return;
    }
    this.settleOldest(pending, code, result);
  }

  private settleOldest(pending: Pending, code: number, result: Uint8Array): void {
    this.inflight[this.inflight_head++] = undefined;
    clearTimeout(pending.timer);
    if (code === 0) pending.resolve(result);
    else pending.reject(responseError(code, `${pending.op}: ${describe(result)}`));
    if (this.inflight_head === this.inflight.length) {
      this.inflight.length = 0;
      this.inflight_head = 0;
      for (const listener of this.idle_listeners.splice(0)) listener();
    }
  }

  private timeOut(pending: Pending, timeout_ms: number): void {
    pending.timer = undefined;
    const error = new TimeoutError(`${pending.op}: no response within ${timeout_ms} ms; connection dropped`);
    const index = this.inflight.indexOf(pending, this.inflight_head);
    if (index >= 0) {
      this.inflight.splice(index, 1);
      pending.reject(error);
    }
    this.destroy(new ConnectionError(`${this.path}: connection dropped after a request timed out`));
  }

  /** Marks the connection closed: rejects everything in flight, then tells the listeners. */
  private drop(reason: ConnectionError): void {
    if (this.close_reason !== undefined) return;
    this.close_reason = reason;
    this.out.truncate(0);
    const inflight = this.inflight.slice(this.inflight_head);
    this.inflight.length = 0;
    this.inflight_head = 0;
    for (const pending of inflight) {
      clearTimeout(pending?.timer);
      pending?.reject(reason);
    }
    for (const listener of this.idle_listeners.splice(0)) listener();
    for (const listener of this.close_listeners.splice(0)) listener();
  }
}

/** The message of an error response (a msgpack string), or a note if it is not one. */
function describe(result: Uint8Array): string {
  try {
    const message: unknown = packr.unpack(result);
    return typeof message === "string" ? message : JSON.stringify(message);
  } catch {
    return `undecodable error message (${result.length} bytes)`;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
