/**
 * One client connection: framing (4-byte big-endian length + one msgpack value), pipelining with
 * responses in request order, and the per-connection limits.
 *
 * - A frame whose length is 0 or over `max_frame_bytes` gets `[0, 2, message]` and the connection is
 *   closed (the stream can no longer be trusted to be in step).
 * - Requests are executed as soon as they are read; reads answer at once, writes when durable. All
 *   responses ready in one event-loop turn leave in one socket write.
 * - More than `max_inflight_requests` unanswered requests pause reading (TCP-style backpressure on
 *   the client); more than `max_output_bytes` of unread replies cut the connection off.
 *
 * @example
 * server.on("connection", (socket) => new Connection(socket, context));
 */
import type { Socket } from "node:net";
import { MsgWriter } from "./msgpack.ts";
import {
  CODE_TOO_LARGE,
  execute,
  mustFollowWrites,
  type ParsedRequest,
  parseRequest,
  type Session,
  type WorkerContext,
  writeResponse,
} from "./ops.ts";

const FRAME_HEADER_BYTES = 4;
/** Sent responses whose slots are dropped at once from the response queue. */
const QUEUE_COMPACT_AFTER = 1024;
/** How long an ended connection waits for the client to close its side. */
const LINGER_MS = 2000;

export class Connection {
  private readonly session: Session;
  private readonly out = new MsgWriter();
  /** Responses not yet sent, in request order: encoded bytes, or a pending write. */
  private readonly queue: Array<Uint8Array | undefined> = [];
  private queue_head = 0;
  /** Absolute number of the queue's first slot (slots already sent are dropped from the array). */
  private queue_base = 0;
  private inflight = 0;
  /** Requests waiting for this connection's earlier writes. */
  private readonly deferred: ParsedRequest[] = [];
  private queued_bytes = 0;
  private flush_scheduled = false;
  private closed = false;
  /** Ending: replies are flushed, further input is read and dropped until the client closes. */
  private discarding = false;
  private paused = false;
  /** Bytes received and not yet consumed as whole frames. */
  private pending: Uint8Array = new Uint8Array(0);
  /** The `[0, 2, msg]` answer to a refused frame: sent after every earlier request's response. */
  private refusal: Uint8Array | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: WorkerContext,
    private readonly onClose: (cut_off: boolean) => void,
  ) {
    this.session = { authenticated: ctx.config.auth_token === undefined };
    socket.on("data", (chunk: Uint8Array) => this.receive(chunk));
    socket.on("drain", () => this.checkOutput());
    socket.on("error", () => this.close(false));
    socket.on("close", () => this.close(false));
  }

  /** Stops reading new requests; in-flight ones still get their responses, then the socket ends. */
  drainAndEnd(): void {
    this.socket.pause();
    this.paused = true;
    if (this.idle()) this.endWhenFlushed();
  }

  idle(): boolean {
    return this.inflight === 0 && this.deferred.length === 0;
  }

  private receive(chunk: Uint8Array): void {
    if (this.discarding || this.refusal !== undefined) return;
    let bytes = this.pending.length === 0 ? chunk : concat(this.pending, chunk);
    let pos = 0;
    while (!this.closed && bytes.length - pos >= FRAME_HEADER_BYTES) {
      const length =
        ((bytes[pos]! << 24) | (bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!) >>> 0;
      if (length === 0 || length > this.ctx.config.max_frame_bytes) {
        this.refuseFrame(length);
        return;
      }
      if (bytes.length - pos - FRAME_HEADER_BYTES < length) break;
      const frame = bytes.subarray(pos + FRAME_HEADER_BYTES, pos + FRAME_HEADER_BYTES + length);
      pos += FRAME_HEADER_BYTES + length;
      this.request(frame);
    }
    bytes = bytes.subarray(pos);
    // Keep a partial frame as a copy: the socket's chunk may be reused by the runtime.
    this.pending = bytes.length === 0 ? new Uint8Array(0) : bytes.slice();
    this.flush();
    if (this.inflight + this.deferred.length >= this.ctx.config.max_inflight_requests && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /**
   * Requests take effect in the order they were sent: a write starts at once (LSN order keeps this
   * connection's writes in order); a read waits until the writes sent before it are complete, and
   * everything after a waiting request waits behind it.
   */
  private request(frame: Uint8Array): void {
    const direct = this.queue_head === this.queue.length;
    const writer = direct ? this.out : new MsgWriter(256);
    const request = parseRequest(this.ctx, frame, writer);
    if (request === undefined) {
      if (!direct) this.enqueue(writer.take());
    } else if (this.deferred.length > 0 || (this.inflight > 0 && mustFollowWrites(request))) {
      this.deferred.push(request);
    } else this.run(request);
  }

  private run(request: ParsedRequest): void {
    const direct = this.queue_head === this.queue.length;
    const writer = direct ? this.out : new MsgWriter(256);
    const pending = execute(this.ctx, this.session, request, writer);
    if (pending === undefined) {
      if (!direct) this.enqueue(writer.take());
      return;
    }
    if (direct) this.flushOut();
    const slot = this.queue_base + this.queue.length; // absolute: survives compaction
    this.queue.push(undefined);
    this.inflight++;
    pending.then((bytes) => {
      this.inflight--;
      this.queue[slot - this.queue_base] = bytes;
      this.queued_bytes += bytes.length;
      if (this.inflight === 0) this.runDeferred();
      this.scheduleFlush();
    });
  }

  /** Runs the waiting requests, in order, until one must wait again. */
  private runDeferred(): void {
    let i = 0;
    while (i < this.deferred.length && !this.closed) {
      const request = this.deferred[i]!;
      if (this.inflight > 0 && mustFollowWrites(request)) break;
      this.run(request);
      i++;
    }
    this.deferred.splice(0, i);
  }

  private enqueue(bytes: Uint8Array): void {
    this.queue.push(bytes);
    this.queued_bytes += bytes.length;
  }

  private scheduleFlush(): void {
    if (this.flush_scheduled) return;
    this.flush_scheduled = true;
    queueMicrotask(() => {
      this.flush_scheduled = false;
      this.flush();
    });
  }

  /** Moves every ready response at the head of the queue into `out`, then writes `out`. */
  private flush(): void {
    while (this.queue_head < this.queue.length) {
      const bytes = this.queue[this.queue_head];
      if (bytes === undefined) break;
      this.out.raw(bytes);
      this.queued_bytes -= bytes.length;
      this.queue[this.queue_head++] = undefined;
    }
    if (this.queue_head === this.queue.length || this.queue_head >= QUEUE_COMPACT_AFTER) {
      // Drop the sent responses' slots: a connection that always has a write in flight never
      // empties its queue, and the array would otherwise grow for as long as it is connected.
      this.queue.splice(0, this.queue_head);
      this.queue_base += this.queue_head;
      this.queue_head = 0;
    }
    this.flushOut();
    const waiting = this.inflight + this.deferred.length;
    if (this.paused && !this.closed && waiting < this.ctx.config.max_inflight_requests / 2) {
      if (this.socket.readableFlowing === false && !this.draining()) {
        this.paused = false;
        this.socket.resume();
      }
    }
    this.sendRefusal();
    if (this.draining() && this.inflight === 0 && this.deferred.length === 0) this.endWhenFlushed();
  }

  /** After a refused frame: once every earlier request is answered, the refusal, then the end. */
  private sendRefusal(): void {
    if (this.refusal === undefined || !this.idle() || this.queue_head !== this.queue.length) return;
    this.out.raw(this.refusal);
    this.refusal = undefined;
    this.flushOut();
    this.endWhenFlushed();
  }

  /**
   * Ends the socket; the connection counts as closed once every reply is handed to the kernel.
   * Not on 'close': a paused socket never reads the peer's end, so 'close' may never come.
   */
  /**
   * Ends the connection once every reply is flushed, then keeps reading (and discarding) until the
   * client closes its side or LINGER_MS pass: closing a socket with unread input makes the kernel
   * send a reset, which can destroy replies the client has not read yet.
   */
  private endWhenFlushed(): void {
    if (this.discarding) return;
    this.discarding = true;
    this.socket.end();
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), LINGER_MS).unref?.();
  }

  private draining(): boolean {
    return this.ctx.draining();
  }

  private flushOut(): void {
    if (this.out.length === 0 || this.closed) return;
    this.socket.write(this.out.take());
    this.checkOutput();
  }

  /** Cuts off a client whose unread replies pass the limit. */
  private checkOutput(): void {
    const unread = this.socket.writableLength + this.queued_bytes;
    if (unread > this.ctx.config.max_output_bytes) {
      this.socket.destroy();
      this.close(true);
    }
  }

  private refuseFrame(length: number): void {
    const w = new MsgWriter(128);
    const reason =
      length === 0
        ? "empty frame"
        : `frame of ${length} bytes is over the limit of ${this.ctx.config.max_frame_bytes}`;
    writeResponse(w, 0, CODE_TOO_LARGE, `${reason}; closing the connection`);
    // Earlier requests may still be pending (writes, reads behind them): they are answered first.
    this.refusal = w.take();
    this.pending = new Uint8Array(0);
    this.flush();
  }

  private close(cut_off: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = new Uint8Array(0);
    this.onClose(cut_off);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
