/**
 * The load loop of `walkv bench`: C connections ("lanes"), each sending its requests in batches of
 * `pipeline` (one socket write per batch, like redis-benchmark -P) and sending the next batch once the
 * whole batch is answered. Each response's latency (from its batch's write to the read that
 * completed it) goes into the histogram of its op; error responses are counted by name.
 *
 * The hot path allocates nothing per request: requests are copied from the wire's templates into one
 * send buffer per lane, responses are scanned in place (or in one receive buffer per lane when they
 * straddle reads), and each lane has one data listener for its whole life.
 *
 * @example
 * const result = await runBench({ socket_path, wire: new MsgpackWire(o), connections: 50, pipeline: 16,
 *   keys: 100_000, read_ratio: 0.5, seed: 1, requests: 1_000_000, duration_ms: undefined, token: undefined });
 * result.histograms[OP_GET]!.percentile(99);
 */
import * as net from "node:net";
import { assert } from "../../engine/errors.ts";
import { HdrHistogram } from "./hdr_histogram.ts";
import { MAX_RESPONSE_BYTES, type Wire, WireError } from "./wire.ts";
import { connectionQuota, connectionSeed, OP_NAMES, RequestStream } from "./workload.ts";

const ID_MAX = 0xffff_ffff;
/** How often {@link RunOptions.on_progress} is called. */
const PROGRESS_INTERVAL_MS = 1000;
/** A run in which no response arrives for this long fails (a hung server must not hang the bench). */
export const STALL_TIMEOUT_MS = 30_000;

/**
 * What to run; see {@link runBench}.
 *
 * @example
 * const options: RunOptions = { ...flags, wire, requests: undefined, duration_ms: 10_000 };
 */
interface RunOptions {
  readonly socket_path: string;
  readonly wire: Wire;
  readonly connections: number;
  /** Requests per batch (in flight per connection). */
  readonly pipeline: number;
  readonly keys: number;
  readonly read_ratio: number;
  readonly seed: number;
  /** Exactly this many requests in all; or undefined to run for `duration_ms`. */
  readonly requests: number | undefined;
  /** No batch starts after this long (the batches in flight finish); used when `requests` is undefined. */
  readonly duration_ms: number | undefined;
  /** Sent with `auth` (or RESP `AUTH`) on every connection first, if given. */
  readonly token: string | undefined;
  /** Called every {@link PROGRESS_INTERVAL_MS} while the load runs. */
  readonly on_progress?: (elapsed_ms: number, completed: number) => void;
}

/**
 * What a run measured.
 *
 * @example
 * const ops_per_s = result.completed / (result.elapsed_ms / 1000);
 */
export interface RunResult {
  /** From the first batch's write to the last response. */
  readonly elapsed_ms: number;
  /** Responses received (errors included). */
  readonly completed: number;
  /** Latency in µs per op (indexed by OP_GET, OP_SET). */
  readonly histograms: readonly HdrHistogram[];
  /** Error responses by error name, with the first message of each. */
  readonly errors: ReadonlyMap<string, { count: number; message: string }>;
}

/**
 * A connection failure: cannot connect, or the connection was lost during the run.
 *
 * @example
 * if (error instanceof BenchConnectionError) return EXIT_CONNECTION;
 */
export class BenchConnectionError extends Error {}

/** The state every lane shares: the histograms, errors, the deadline, and the end of the run. */
class Run {
  readonly histograms = OP_NAMES.map(() => new HdrHistogram());
  readonly errors = new Map<string, { count: number; message: string }>();
  completed = 0;
  start_ms = 0;
  deadline_ms = Number.POSITIVE_INFINITY;
  private lanes_running = 0;
  private settled = false;
  readonly done: Promise<number>;
  private resolve: (end_ms: number) => void = () => {};
  private reject: (error: Error) => void = () => {};

  constructor() {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  countError(name: string, message: string): void {
    const entry = this.errors.get(name);
    if (entry === undefined) this.errors.set(name, { count: 1, message });
    else entry.count++;
  }

  laneStarted(): void {
    this.lanes_running++;
  }

  laneFinished(): void {
    assert(this.lanes_running > 0);
    if (--this.lanes_running === 0 && !this.settled) {
      this.settled = true;
      this.resolve(performance.now());
    }
  }

  get finished(): boolean {
    return this.settled;
  }

  fail(error: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(error);
  }
}

/** One connection and its batches. */
class Lane {
  private readonly send: Uint8Array;
  /** The op of each request of the batch in flight. */
  private readonly batch_ops: Uint8Array;
  private batch_size = 0;
  private answered = 0;
  private sent_ms = 0;
  private next_id = 1;
  private expected_id = 1;
  /** Holds a response split over reads; grows on first need (10,000 idle lanes cost nothing). */
  private receive_buffer = new Uint8Array(0);
  private received_bytes = 0;
  private finished = false;

  constructor(
    private readonly run: Run,
    private readonly socket: net.Socket,
    private readonly wire: Wire,
    private readonly stream: RequestStream,
    private readonly pipeline: number,
    /** Requests left to send; Infinity in a timed run. */
    private quota: number,
  ) {
    assert(pipeline >= 1 && quota >= 0);
    this.send = new Uint8Array(pipeline * wire.max_request_bytes);
    this.batch_ops = new Uint8Array(pipeline);
  }

  /** Takes over the socket's events and sends the first batch. */
  start(): void {
    this.run.laneStarted();
    this.socket.on("data", (chunk: Uint8Array) => {
      try {
        this.receive(chunk);
      } catch (error) {
        this.run.fail(error as Error);
      }
    });
    this.socket.on("error", (error) =>
      this.run.fail(new BenchConnectionError(`connection: ${error.message}`)),
    );
    this.socket.on("close", () => {
      if (!this.finished) this.run.fail(new BenchConnectionError("the server closed a connection"));
    });
    this.sendBatch();
  }

  private sendBatch(): void {
    const now_ms = performance.now();
    if (this.quota === 0 || now_ms >= this.run.deadline_ms || this.run.finished) {
      this.finished = true;
      this.socket.end();
      this.run.laneFinished();
      return;
    }
    const count = Math.min(this.pipeline, this.quota);
    this.expected_id = this.next_id;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const op = this.stream.nextOp();
      this.batch_ops[i] = op;
      bytes += this.wire.writeRequest(this.send, bytes, op, this.stream.nextKey(), this.next_id);
      this.next_id = this.next_id === ID_MAX ? 1 : this.next_id + 1;
    }
    this.quota -= count;
    this.batch_size = count;
    this.answered = 0;
    this.sent_ms = now_ms;
    this.socket.write(this.send.subarray(0, bytes));
  }

  private receive(chunk: Uint8Array): void {
    const now_ms = performance.now();
    let bytes = chunk;
    let end = chunk.length;
    if (this.received_bytes > 0) {
      this.keep(chunk, 0, chunk.length);
      bytes = this.receive_buffer;
      end = this.received_bytes;
    }
    let pos = 0;
    while (this.answered < this.batch_size) {
      const next = this.wire.scanResponse(bytes, pos, end, this.expected_id);
      if (next < 0) break;
      this.answered++;
      this.expected_id = this.expected_id === ID_MAX ? 1 : this.expected_id + 1;
      this.record(this.batch_ops[this.answered - 1]!, now_ms);
      pos = next;
    }
    if (pos < end && this.answered === this.batch_size) throw new WireError("a response nobody asked for");
    if (bytes === this.receive_buffer) {
      this.receive_buffer.copyWithin(0, pos, end);
      this.received_bytes = end - pos;
    } else if (pos < end) this.keep(chunk, pos, end);
    if (this.answered === this.batch_size) this.sendBatch();
  }

  private record(op: number, now_ms: number): void {
    this.run.histograms[op]!.record(Math.round((now_ms - this.sent_ms) * 1000));
    this.run.completed++;
    const error = this.wire.error;
    if (error !== undefined) this.run.countError(error, this.wire.error_message);
  }

  /** Appends `bytes[from, to)` to the receive buffer (a response split over reads). */
  private keep(bytes: Uint8Array, from: number, to: number): void {
    const needed = this.received_bytes + (to - from);
    if (needed > this.receive_buffer.length) {
      if (needed > MAX_RESPONSE_BYTES + 64 * 1024) throw new WireError("a response over the size limit");
      const bigger = new Uint8Array(Math.max(needed, this.receive_buffer.length * 2, 4096));
      bigger.set(this.receive_buffer.subarray(0, this.received_bytes));
      this.receive_buffer = bigger;
    }
    this.receive_buffer.set(bytes.subarray(from, to), this.received_bytes);
    this.received_bytes = needed;
  }
}

/**
 * Connects, authenticates if asked, runs the load and resolves with what it measured. Rejects with a
 * BenchConnectionError if a connection fails, or a WireError on a broken response stream or a refused
 * authentication.
 *
 * @example
 * const result = await runBench(options);
 */
export async function runBench(options: RunOptions): Promise<RunResult> {
  assert(options.connections >= 1 && options.pipeline >= 1);
  assert((options.requests === undefined) !== (options.duration_ms === undefined), "requests xor duration");
  const sockets = await openAll(options.socket_path, options.connections);
  try {
    if (options.token !== undefined) {
      await Promise.all(sockets.map((socket) => authenticate(socket, options.wire, options.token!)));
    }
    return await load(options, sockets);
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}

async function load(options: RunOptions, sockets: net.Socket[]): Promise<RunResult> {
  const run = new Run();
  const lanes = sockets.map((socket, c) => {
    const stream = new RequestStream(connectionSeed(options.seed, c), options.read_ratio, options.keys);
    const quota =
      options.requests === undefined
        ? Number.POSITIVE_INFINITY
        : connectionQuota(options.requests, options.connections, c);
    return new Lane(run, socket, options.wire, stream, options.pipeline, quota);
  });
  run.start_ms = performance.now();
  if (options.duration_ms !== undefined) run.deadline_ms = run.start_ms + options.duration_ms;
  let last = { completed: -1, at_ms: run.start_ms };
  const progress = setInterval(() => {
    const now_ms = performance.now();
    if (run.completed !== last.completed) last = { completed: run.completed, at_ms: now_ms };
    else if (now_ms - last.at_ms > STALL_TIMEOUT_MS) {
      run.fail(new BenchConnectionError(`no response for ${STALL_TIMEOUT_MS / 1000} s`));
    }
    options.on_progress?.(now_ms - run.start_ms, run.completed);
  }, PROGRESS_INTERVAL_MS);
  try {
    for (const lane of lanes) lane.start();
    const end_ms = await run.done;
    return {
      elapsed_ms: end_ms - run.start_ms,
      completed: run.completed,
      histograms: run.histograms,
      errors: run.errors,
    };
  } finally {
    clearInterval(progress);
  }
}

function openAll(path: string, connections: number): Promise<net.Socket[]> {
  const sockets: net.Socket[] = [];
  const opening = Array.from({ length: connections }, () => {
    const socket = net.createConnection({ path });
    sockets.push(socket);
    return new Promise<net.Socket>((resolve, reject) => {
      socket.once("error", (error) =>
        reject(new BenchConnectionError(`cannot connect to ${path}: ${error.message}`)),
      );
      socket.once("connect", () => resolve(socket));
    });
  });
  return Promise.all(opening).catch((error: Error) => {
    for (const socket of sockets) socket.destroy();
    throw error;
  });
}

/** Sends the wire's auth request and waits for its answer (before the load: not the hot path). */
function authenticate(socket: net.Socket, wire: Wire, token: string): Promise<void> {
  const AUTH_ID = 1;
  return new Promise((resolve, reject) => {
    let received = new Uint8Array(0);
    const onData = (chunk: Uint8Array) => {
      const bytes = new Uint8Array(received.length + chunk.length);
      bytes.set(received);
      bytes.set(chunk, received.length);
      received = bytes;
      try {
        const end = wire.scanResponse(received, 0, received.length, AUTH_ID);
        if (end < 0) return;
        socket.off("data", onData);
        socket.off("close", onClose);
        if (end !== received.length) reject(new WireError("more than one answer to auth"));
        else if (wire.error !== undefined) reject(new WireError(`auth refused: ${wire.error_message}`));
        else resolve();
      } catch (error) {
        reject(error);
      }
    };
    const onClose = () => reject(new BenchConnectionError("the server closed a connection during auth"));
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.write(wire.authRequest(token, AUTH_ID));
  });
}
