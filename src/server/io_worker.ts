/**
 * Worker entry point of an I/O worker. Receives `{ shared, config, metrics, worker_index, started_unix_ms,
 * main, resp, local_wal }`, attaches an Engine to the shared table, and accepts connections on the listening
 * sockets: `main` speaks msgpack (protocol v1), `resp` (if configured) RESP2. Each socket is bound
 * once, by worker 0, and shared by every I/O worker through its fd. Answers `{ ready: true, main,
 * resp }` (the fds and the RESP TCP port) once listening, or `{ ready: true, error }` if a socket
 * could not be bound. On `{ drain: true }` it stops accepting, lets every connection finish its
 * in-flight requests, and answers `{ drained: true }`. With `local_wal` it writes the WAL itself
 * (LocalWalWriter: the only I/O worker), and closes the log before it answers drained.
 * Log lines go to the daemon as `{ log }`.
 */
import * as fs from "node:fs";
import { crashPoint } from "../engine/crash_points.ts";
import { Engine, type EngineShared } from "../engine/engine.ts";
import { HEAP_CHECK_INTERVAL_MS, HeapGrowthPacer } from "../engine/gc_pacer.ts";
import { requestCheckpoint } from "../engine/host.ts";
import { LocalWalWriter } from "../engine/wal/local_wal_writer.ts";
import type { WalStart } from "../engine/wal/wal_writer.ts";
import type { ServerConfig } from "./config.ts";
import { Connection, LINGER_MS, type Protocol } from "./connection.ts";
import { type AcceptedSocket, bound_paths, type Listener, type ListenerInit, listen } from "./listener.ts";
import { Metrics } from "./metrics.ts";
import { MsgpackProtocol, msgpackRefusal } from "./msgpack_protocol.ts";
import { SetCoalescer, type WorkerContext } from "./ops.ts";
import { RespProtocol, respRefusal } from "./resp_protocol.ts";

declare const self: Worker;

interface Init {
  readonly shared: EngineShared;
  readonly config: ServerConfig;
  readonly metrics: SharedArrayBuffer;
  readonly worker_index: number;
  readonly started_unix_ms: number;
  readonly main: ListenerInit;
  readonly resp: ListenerInit | undefined;
  /** Set when this worker writes the WAL itself (the only I/O worker). */
  readonly local_wal: WalStart | undefined;
}

/** A wire protocol as a listener serves it. */
interface Wire {
  readonly name: string;
  readonly create: (ctx: WorkerContext) => Protocol<unknown>;
  /** The message that refuses a connection (too many, shutting down) before it closes. */
  readonly refusal: (reason: string) => Uint8Array;
}

const MSGPACK: Wire = { name: "socket", create: (ctx) => new MsgpackProtocol(ctx), refusal: msgpackRefusal };
const RESP: Wire = { name: "RESP socket", create: (ctx) => new RespProtocol(ctx), refusal: respRefusal };

let draining = false;
/** `{ drained: true }` was sent. */
let drained = false;
/** reportIfDrained waits for this worker's writes to settle. */
let waiting_for_writes = false;
/** This worker's context, once started. */
let worker_ctx: WorkerContext | undefined;
/** The WAL writer on this thread, if this worker writes the WAL itself. */
let local_wal: LocalWalWriter | undefined;
const connections = new Set<Connection<unknown>>();
const listeners: Listener[] = [];
let resp_tcp_port = 0;

self.onmessage = (event: MessageEvent) => {
  const message = event.data as Partial<Init> & { drain?: boolean };
  if (message.drain) return drain();
  start(message as Init).then(
    (reply) => self.postMessage({ ready: true, ...reply }),
    (error: Error) => {
      for (const path of bound_paths) fs.rmSync(path, { force: true });
      self.postMessage({ ready: true, error: error.message });
    },
  );
};

async function start(init: Init): Promise<{ main: ListenerInit; resp: ListenerInit | undefined }> {
  if (init.local_wal !== undefined) {
    local_wal = new LocalWalWriter(init.shared, init.local_wal, (line) => self.postMessage({ log: line }));
  }
  const engine = local_wal?.engine ?? new Engine(init.shared);
  const metrics = new Metrics(init.metrics, init.worker_index);
  // A full collection whenever the heap doubled (src/engine/gc_pacer.ts: this thread otherwise only
  // gets partial ones, and RSS crept ~15 MiB/min in `make soak`).
  const gc = new HeapGrowthPacer();
  setInterval(() => gc.collectIfGrown(), HEAP_CHECK_INTERVAL_MS).unref?.();
  const ctx: WorkerContext = {
    engine,
    sets: new SetCoalescer(engine),
    config: init.config,
    metrics,
    checkpoint: async () => {
      const status = await requestCheckpoint(engine.wal, engine.control);
      return { lsn: status.redo_lsn, bytes: status.bytes, ms: status.duration_ms };
    },
    serverStats: () => ({ connections: metrics.openConnections(), ops: opCounts(metrics) }),
    draining: () => draining,
    started_unix_ms: init.started_unix_ms,
    resp_tcp_port: () => resp_tcp_port,
  };
  worker_ctx = ctx;
  // Bun's own sockets need a listener of this worker's alone (listener.ts).
  const native = typeof Bun !== "undefined" && init.config.workers === 1 && init.config.transport === "auto";
  const serve = async (listener_init: ListenerInit, wire: Wire): Promise<ListenerInit> => {
    const listener = await listen(listener_init, wire.name, native, (socket) => accept(socket, ctx, wire));
    listeners.push(listener);
    return { fd: listener.fd, bind: undefined, port: listener.port };
  };
  if (init.worker_index === 0) {
    self.postMessage({ log: `client sockets: ${native ? "Bun's own (Bun.listen)" : "node:net"}` });
  }
  const main = await serve(init.main, MSGPACK);
  const resp = init.resp === undefined ? undefined : await serve(init.resp, RESP);
  resp_tcp_port = resp?.port ?? 0;
  return { main, resp };
}

function accept(socket: AcceptedSocket, ctx: WorkerContext, wire: Wire): void {
  crashPoint("io-worker-accept");
  if (draining || !ctx.metrics.tryOpenConnection(ctx.config.max_connections)) {
    const reason = draining ? "shutting down" : `too many connections (limit ${ctx.config.max_connections})`;
    socket.attach(IGNORED);
    socket.write(wire.refusal(reason));
    socket.end(); // a half-close: the client reads the refusal, not a reset
    setTimeout(() => socket.destroy(), LINGER_MS).unref?.();
    return;
  }
  const connection = new Connection(
    socket,
    wire.create(ctx),
    ctx,
    (cut_off) => {
      connections.delete(connection);
      ctx.metrics.closeConnection(cut_off);
      reportIfDrained();
    },
    reportIfDrained,
  );
  socket.attach(connection);
  connections.add(connection);
}

/** The events of a refused socket: it is written its refusal and ended, nothing else. */
const IGNORED = { receive() {}, drained() {}, inputEnded() {}, disconnected() {} };

function drain(): void {
  draining = true;
  for (const listener of listeners) listener.close();
  for (const c of connections) c.drainAndEnd();
  reportIfDrained();
}

/**
 * Drained: every connection answered all it read and handed every response to the kernel, and no
 * write of this worker is pending or in flight — a connection that closed counts as flushed, but the
 * SETs it sent may still be in a batch. Only then may the log close and the host terminate this
 * thread: a write cut short while it links would leave shard mutexes held, and the final checkpoint
 * would wait for them forever (seen: ~700 held after a client quit as SIGTERM came). A batch of SETs
 * waiting for the end of the turn is issued at once, and the report waits for the writes to settle.
 */
function reportIfDrained(): void {
  if (!draining || drained || waiting_for_writes) return;
  for (const c of connections) if (!c.flushed()) return;
  if (worker_ctx !== undefined) {
    worker_ctx.sets.flush();
    if (worker_ctx.engine.writesInFlight() > 0) {
      waiting_for_writes = true;
      void worker_ctx.engine.noWritesInFlight().then(() => {
        waiting_for_writes = false;
        reportIfDrained();
      });
      return;
    }
  }
  drained = true;
  local_wal?.close(); // nothing writes any more: flushed, synced, closed
  self.postMessage({ drained: true });
}

function opCounts(metrics: Metrics): Record<string, number> {
  const ops = metrics.summary().ops;
  return Object.fromEntries(Object.entries(ops).map(([name, s]) => [name, s.count]));
}
