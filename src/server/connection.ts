/**
 * One client connection, whatever its protocol: pipelining with responses in request order, the
 * order of effects, backpressure, the per-connection limits and a graceful end. The wire format is a
 * {@link Protocol} (msgpack frames: msgpack_protocol.ts; RESP2: resp_protocol.ts).
 *
 * - Requests are executed as soon as they are read; reads answer at once, writes when durable. All
 *   responses ready in one event-loop turn leave in one socket write.
 * - A read (any request the protocol says must follow writes) waits until this connection's earlier
 *   writes are complete, and everything after a waiting request waits behind it.
 * - More than `max_inflight_requests` unanswered requests pause reading (TCP-style backpressure on
 *   the client); more than `max_output_bytes` of unread replies cut the connection off.
 * - A {@link Final} from the protocol (a malformed stream, an over-limit request, QUIT) is sent after
 *   every earlier request's response; then the connection ends. So does a client that half-closes:
 *   every request it sent is answered first.
 *
 * The socket is either transport of client_socket.ts; it reports its events to the connection.
 *
 * @example
 * const socket = new NodeClientSocket(net_socket);
 * socket.attach(new Connection(socket, new MsgpackProtocol(ctx), ctx, onClose));
 */
import type { ClientSocket, SocketEvents } from "./client_socket.ts";
import type { WorkerContext } from "./ops.ts";

/** Where responses are encoded: a growable byte buffer (MsgWriter, RespWriter). */
export interface OutputWriter {
  readonly length: number;
  /** Appends bytes that are already encoded. */
  raw(bytes: Uint8Array): void;
  /** The bytes written since the last take, as a view never written again, and resets to empty. */
  take(): Uint8Array;
  /** Writes the bytes since the last take to `socket` (a range: no view), as {@link take} would. */
  sendTo(socket: ClientSocket): void;
}

/** Takes the response of a request answered later (see {@link Protocol.execute}). */
export interface Responder {
  /** `bytes` answer the `requests` requests (1 unless a group of SETs: Protocol.takeSets) of `slot`. */
  respond(slot: number, bytes: Uint8Array, requests?: number): void;
}

/**
 * `then` callbacks that answer `slot` through `responder` with the bytes a write's promise resolves
 * to: for protocols whose writes are promises.
 *
 * @example
 * respondWhenSettled(deleteKeys(ctx, keys).then(encode), responder, slot);
 */
export function respondWhenSettled(response: Promise<Uint8Array>, responder: Responder, slot: number): true {
  response.then((bytes) => responder.respond(slot, bytes));
  return true;
}

/**
 * Where a group of SETs that {@link Protocol.takeSets} starts answers, when its requests arrived,
 * and how many it may hold. A connection reuses one: a protocol copies what it keeps.
 */
export interface SetGroupSlot {
  responder: Responder;
  slot: number;
  arrived_ms: number;
  max_count: number;
}

/** The last bytes a connection sends (after every earlier response) before it ends. */
export class Final {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * A wire protocol: splits requests off the input, runs them, encodes their responses into its own
 * kind of output buffer (`Writer`: MsgWriter, RespWriter).
 */
export interface Protocol<Request, Writer extends OutputWriter = OutputWriter> {
  /**
   * The next whole request in `bytes[start, end)`, undefined if more bytes are needed, or a
   * {@link Final}: the connection answers it and ends. Must refuse (Final) before an incomplete
   * request could pass its size limit, so input stays bounded. The request may keep views of
   * `bytes`: input bytes are never overwritten. `arrived_ms` (performance.now() when the bytes were
   * received, read once per chunk: a read costs ≈ 50 ns) is where the request's latency starts.
   */
  next(bytes: Uint8Array, start: number, end: number, arrived_ms: number): Request | Final | undefined;
  /**
   * A request that must outlive the next call of `next` (it waits behind earlier writes): itself,
   * or a copy if `next` reuses its request objects.
   */
  retain(request: Request): Request;
  /**
   * Set by every `next`: where unread input starts (after the request returned, or after bytes the
   * protocol skipped, such as empty lines, when it returned undefined).
   */
  readonly next_start: number;
  /**
   * A hint, before the requests of `bytes[start, end)` are read: the protocol may read ahead and
   * touch the table lines of their keys (Engine.touchKeys), so that the cache misses of a pipeline's
   * reads overlap. Changes nothing; may do nothing.
   */
  prefetch(bytes: Uint8Array, start: number, end: number): void;
  /**
   * Answers at once, into `out`, the run of plain reads (GETs in the form clients send them) that
   * opens `bytes[start, end)`, with the responses and metrics `next` and `execute` would give them,
   * and returns where the first request it did not answer starts (`start` if none): a fast path
   * past the general reader. Called only while nothing waits (no write in flight, no response
   * queued), so answering at once keeps the order. Leaves to `next` anything it is not sure of:
   * another shape, a key over its limit, a failure to report.
   */
  answerReads(bytes: Uint8Array, start: number, end: number, out: Writer, arrived_ms: number): number;
  /**
   * Starts the run of plain SETs (in the form clients send them) that opens `bytes[start, end)`, at
   * most `group.max_count`, as one group of the worker's SetCoalescer, whose one waiter later calls
   * `group.responder.respond(group.slot, responses, count)` with the responses `execute` would give
   * each, and returns their count (0 if none), `next_start` set after them: a fast path past the
   * general reader. Called only when no request waits behind an earlier write (a SET starts at once,
   * as `execute` starts one). Leaves to `next` anything it is not sure of: another shape, a key,
   * value or request over its limit, a connection not authenticated.
   */
  takeSets(bytes: Uint8Array, start: number, end: number, group: SetGroupSlot): number;
  /** True if `request` must not run before the connection's earlier writes complete. */
  mustFollowWrites(request: Request): boolean;
  /**
   * Runs `request`. Answers at once into `out` and returns false, or returns true and later calls
   * `responder.respond(slot, response)` once, never from within this call (a write answers when it
   * is visible). Never throws: failures are responses.
   */
  execute(request: Request, out: Writer, responder: Responder, slot: number): boolean;
  /** A fresh output buffer of this protocol. */
  writer(initial_bytes: number): Writer;
}

/** Sent responses whose slots are dropped at once from the response queue. */
const QUEUE_COMPACT_AFTER = 1024;
/** How long an ended connection (or a refused one) waits for the client to close its side. */
export const LINGER_MS = 2000;
/** Initial size of the output buffer (it grows to what one event-loop turn sends). */
const OUT_INITIAL_BYTES = 16 * 1024;
/** Initial size of the buffer that holds responses queued behind a pending write. */
const SCRATCH_INITIAL_BYTES = 256;

export class Connection<Request, Writer extends OutputWriter = OutputWriter>
  implements SocketEvents, Responder
{
  private readonly out: Writer;
  /** Encodes answers that must wait in the queue (a write before them is pending). */
  private scratch: Writer | undefined;
  /** Responses not yet sent, in request order: encoded bytes, or a pending write. */
  private readonly queue: Array<Uint8Array | undefined> = [];
  private queue_head = 0;
  /** Absolute number of the queue's first slot (slots already sent are dropped from the array). */
  private queue_base = 0;
  private inflight = 0;
  /** Requests waiting for this connection's earlier writes. */
  private readonly deferred: Request[] = [];
  private queued_bytes = 0;
  private flush_scheduled = false;
  private closed = false;
  /** Ending: replies are flushed, further input is read and dropped until the client closes. */
  private discarding = false;
  private paused = false;
  /** The client half-closed: the connection ends once every request it sent is answered. */
  private input_ended = false;
  /** Destroys the socket LINGER_MS after an end, if the client has not closed it by then. */
  private linger: ReturnType<typeof setTimeout> | undefined;
  private readonly input = new InputBuffer();
  /** What takeSets hands the protocol (one object, reused). */
  private readonly set_group: SetGroupSlot = { responder: this, slot: 0, arrived_ms: 0, max_count: 0 };
  /** The protocol's last words: sent after every earlier request's response, then the end. */
  private final: Uint8Array | undefined;

  constructor(
    private readonly socket: ClientSocket,
    private readonly protocol: Protocol<Request, Writer>,
    private readonly ctx: WorkerContext,
    private readonly onClose: (cut_off: boolean) => void,
    /** Told whenever the socket has taken every byte written (the shutdown drain waits for it). */
    private readonly onFlushed?: () => void,
  ) {
    this.out = protocol.writer(OUT_INITIAL_BYTES);
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

  /** Idle, and every response handed to the kernel (none queued here or in the socket). */
  flushed(): boolean {
    return (
      this.closed || (this.idle() && this.queue_head === this.queue.length && this.socket.unsent_bytes === 0)
    );
  }

  drained(): void {
    this.checkOutput();
    this.onFlushed?.();
  }

  inputEnded(): void {
    this.input_ended = true;
    if (this.idle()) this.endWhenFlushed();
  }

  disconnected(): void {
    this.close(false);
  }

  receive(chunk: Uint8Array): void {
    if (this.closed || this.discarding || this.final !== undefined) return;
    const input = this.input;
    input.append(chunk);
    this.protocol.prefetch(input.bytes, input.start, input.end);
    const arrived_ms = performance.now();
    while (!this.closed && input.start < input.end) {
      if (this.nothingWaits()) {
        input.consumeTo(this.protocol.answerReads(input.bytes, input.start, input.end, this.out, arrived_ms));
        if (input.start === input.end) break;
      }
      if (this.deferred.length === 0 && this.takeSets(arrived_ms)) continue; // more may follow a full group
      const before = input.start;
      const request = this.protocol.next(input.bytes, input.start, input.end, arrived_ms);
      if (request instanceof Final) {
        this.finish(request.bytes);
        return;
      }
      input.consumeTo(this.protocol.next_start); // past skipped bytes even without a request
      if (request === undefined) break;
      if (input.start === before) throw new Error("the protocol returned a request of no bytes");
      this.request(request);
    }
    input.release();
    this.flush();
    if (this.inflight + this.deferred.length >= this.ctx.config.max_inflight_requests && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /**
   * Starts the SETs that open the input as one group with one response slot; false if none. With
   * replies waiting in `out`, only one: the flush that follows it may cut the client off for unread
   * output (checkOutput), and then, as on the general path, no later request takes effect.
   */
  private takeSets(arrived_ms: number): boolean {
    const { input, set_group } = this;
    set_group.slot = this.queue_base + this.queue.length;
    set_group.arrived_ms = arrived_ms;
    const direct = this.queue_head === this.queue.length;
    set_group.max_count = direct && this.out.length > 0 ? 1 : Number.POSITIVE_INFINITY;
    const count = this.protocol.takeSets(input.bytes, input.start, input.end, set_group);
    if (count === 0) return false;
    input.consumeTo(this.protocol.next_start);
    this.awaitResponse(count);
    return true;
  }

  /** No write in flight, no request deferred, no response queued: a read may be answered into `out`. */
  private nothingWaits(): boolean {
    return this.inflight === 0 && this.deferred.length === 0 && this.queue_head === this.queue.length;
  }

  /**
   * Requests take effect in the order they were sent: a write starts at once (LSN order keeps this
   * connection's writes in order); a read waits until the writes sent before it are complete, and
   * everything after a waiting request waits behind it.
   */
  private request(request: Request): void {
    if (this.deferred.length > 0 || (this.inflight > 0 && this.protocol.mustFollowWrites(request))) {
      this.deferred.push(this.protocol.retain(request));
    } else this.run(request);
  }

  private run(request: Request): void {
    const direct = this.queue_head === this.queue.length;
    const writer = direct ? this.out : this.scratchWriter();
    const slot = this.queue_base + this.queue.length; // absolute: survives compaction
    if (!this.protocol.execute(request, writer, this, slot)) {
      if (!direct) this.enqueue(writer.take());
      return;
    }
    this.awaitResponse(1);
  }

  /** The next slot waits for the response of `requests` requests (what `out` holds goes first). */
  private awaitResponse(requests: number): void {
    if (this.queue_head === this.queue.length) this.flushOut();
    this.queue.push(undefined);
    this.inflight += requests;
  }

  private scratchWriter(): Writer {
    if (this.scratch === undefined) this.scratch = this.protocol.writer(SCRATCH_INITIAL_BYTES);
    return this.scratch;
  }

  /** A pending write's response arrived: it takes its slot; waiting requests may run now. */
  respond(slot: number, bytes: Uint8Array, requests = 1): void {
    const index = slot - this.queue_base;
    if (index < this.queue_head || index >= this.queue.length || this.queue[index] !== undefined) {
      throw new Error(`response to slot ${slot}, which is not waiting for one`);
    }
    this.inflight -= requests;
    this.queue[index] = bytes;
    this.queued_bytes += bytes.length;
    if (this.inflight === 0) this.runDeferred();
    this.scheduleFlush();
  }

  /** Runs the waiting requests, in order, until one must wait again. */
  private runDeferred(): void {
    let i = 0;
    while (i < this.deferred.length && !this.closed) {
      const request = this.deferred[i]!;
      if (this.inflight > 0 && this.protocol.mustFollowWrites(request)) break;
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
      if (!this.discarding && !this.ctx.draining()) {
        this.paused = false;
        this.socket.resume();
      }
    }
    this.sendFinal();
    if ((this.ctx.draining() || this.input_ended) && this.idle()) this.endWhenFlushed();
  }

  /** Stops reading requests: `bytes` go out after every earlier response, then the connection ends. */
  private finish(bytes: Uint8Array): void {
    this.final = bytes;
    this.input.clear();
    this.flush();
  }

  private sendFinal(): void {
    if (this.final === undefined || !this.idle() || this.queue_head !== this.queue.length) return;
    this.out.raw(this.final);
    this.final = undefined;
    this.flushOut();
    this.endWhenFlushed();
  }

  /**
   * Ends the connection once every reply is flushed, then keeps reading (and discarding) until the
   * client closes its side or LINGER_MS pass: closing a socket with unread input makes the kernel
   * send a reset, which can destroy replies the client has not read yet. The connection counts as
   * closed on 'close', which the linger timer guarantees.
   */
  private endWhenFlushed(): void {
    if (this.discarding) return;
    this.discarding = true;
    this.socket.end();
    this.socket.resume();
    this.linger = setTimeout(() => this.socket.destroy(), LINGER_MS);
    this.linger.unref?.();
  }

  private flushOut(): void {
    if (this.out.length === 0 || this.closed) return;
    this.out.sendTo(this.socket);
    this.checkOutput();
  }

  /** Cuts off a client whose unread replies pass the limit. */
  private checkOutput(): void {
    const unread = this.socket.unsent_bytes + this.queued_bytes;
    if (unread > this.ctx.config.max_output_bytes) {
      this.close(true); // first: a socket may report its close from within destroy()
      this.socket.destroy();
    }
  }

  private close(cut_off: boolean): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.linger); // a closed connection holds nothing for 2 s
    this.input.clear();
    this.onClose(cut_off);
  }
}

const EMPTY = new Uint8Array(0);

/**
 * The bytes received and not yet consumed as whole requests: `bytes[start, end)`. A chunk is used as
 * it is while it holds whole requests; a partial request is copied into a buffer of our own that
 * grows by doubling (amortised O(n) for a large request arriving in many chunks).
 *
 * Bytes, once appended, are never overwritten: a buffer is only ever appended to past `end` or
 * replaced by a new one. So a request may keep views of its bytes (waiting requests, keys of pending
 * writes) for as long as it needs them.
 */
class InputBuffer {
  bytes: Uint8Array = EMPTY;
  start = 0;
  end = 0;
  /** `bytes` is our own buffer (not a chunk of the runtime's): it may be appended to. */
  private owned = false;

  append(chunk: Uint8Array): void {
    if (this.start === this.end) {
      this.bytes = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.owned = false;
      return;
    }
    if (!this.owned || this.end + chunk.length > this.bytes.length) {
      const kept = this.end - this.start;
      const grown = new Uint8Array(Math.max(2 * kept, kept + chunk.length));
      grown.set(this.bytes.subarray(this.start, this.end));
      this.bytes = grown;
      this.start = 0;
      this.end = kept;
      this.owned = true;
    }
    this.bytes.set(chunk, this.end);
    this.end += chunk.length;
  }

  consumeTo(position: number): void {
    if (position < this.start || position > this.end) {
      throw new Error(`protocol consumed to ${position}, outside [${this.start}, ${this.end}]`);
    }
    this.start = position;
  }

  /** Drops the buffer once everything in it is consumed (its memory goes with its last view). */
  release(): void {
    if (this.start === this.end) this.clear();
  }

  clear(): void {
    this.bytes = EMPTY;
    this.start = 0;
    this.end = 0;
    this.owned = false;
  }
}
