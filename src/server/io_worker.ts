/**
 * Worker entry point of an I/O worker. Receives `{ shared, config, metrics, worker_index, fd }`,
 * attaches an Engine to the shared table, and accepts connections on the listening socket `fd`
 * (bound once, shared by every I/O worker). Answers `{ ready: true }` once listening.
 * On `{ drain: true }` it stops accepting, lets every connection finish its in-flight requests,
 * and answers `{ drained: true }`.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import { crashPoint } from "../engine/crash_points.ts";
import { Engine, type EngineShared } from "../engine/engine.ts";
import { requestCheckpoint } from "../engine/host.ts";
import type { ServerConfig } from "./config.ts";
import { Connection } from "./connection.ts";
import { Metrics } from "./metrics.ts";
import { MsgWriter } from "./msgpack.ts";
import { CODE_UNAVAILABLE, type WorkerContext, writeResponse } from "./ops.ts";

declare const self: Worker;

interface Init {
  readonly shared: EngineShared;
  readonly config: ServerConfig;
  readonly metrics: SharedArrayBuffer;
  readonly worker_index: number;
  /** The listening socket, or undefined for worker 0, which binds `bind` and reports its fd. */
  readonly fd: number | undefined;
  readonly bind: { readonly path: string; readonly mode: number } | undefined;
}

let draining = false;
const connections = new Set<Connection>();
let server: net.Server | undefined;

self.onmessage = (event: MessageEvent) => {
  const message = event.data as Partial<Init> & { drain?: boolean };
  if (message.drain) return drain();
  start(message as Init);
};

function start(init: Init): void {
  const engine = new Engine(init.shared);
  const metrics = new Metrics(init.metrics, init.worker_index);
  const config = init.config;
  const ctx: WorkerContext = {
    engine,
    config,
    metrics,
    checkpoint: async () => {
      const status = await requestCheckpoint(engine.wal, engine.control);
      return { lsn: status.redo_lsn, bytes: status.bytes, ms: status.duration_ms };
    },
    serverStats: () => ({ connections: metrics.openConnections(), ops: opCounts(metrics) }),
    draining: () => draining,
  };
  server = net.createServer({ pauseOnConnect: false }, (socket) => accept(socket, ctx));
  server.on("error", (error) => {
    throw new Error(`I/O worker ${init.worker_index}: listening socket failed: ${error.message}`);
  });
  if (init.fd !== undefined)
    server.listen({ fd: init.fd }, () => self.postMessage({ ready: true, fd: init.fd }));
  else bindPrivately(server, init.bind!.path, init.bind!.mode);
}

/**
 * Binds the socket in a fresh 0700 directory next to `path`, sets its mode, then renames it into
 * place: it is never reachable with a wider mode than `mode`. Refuses if a live daemon answers there.
 */
function bindPrivately(listener: net.Server, path: string, mode: number): void {
  const dir = path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".";
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const private_dir = fs.mkdtempSync(`${dir}/.walkv-bind-`);
  const temporary = `${private_dir}/s`;
  listener.listen(temporary, () => {
    try {
      fs.chmodSync(temporary, mode);
      fs.renameSync(temporary, path);
    } finally {
      fs.rmSync(private_dir, { recursive: true, force: true });
    }
    const fd = (listener as unknown as { _handle: { fd: number } })._handle.fd;
    self.postMessage({ ready: true, fd });
  });
}

function accept(socket: net.Socket, ctx: WorkerContext): void {
  crashPoint("io-worker-accept");
  if (draining || !ctx.metrics.tryOpenConnection(ctx.config.max_connections)) {
    const w = new MsgWriter(128);
    const reason = draining ? "shutting down" : `too many connections (limit ${ctx.config.max_connections})`;
    writeResponse(w, 0, CODE_UNAVAILABLE, reason);
    socket.on("error", () => {});
    socket.end(w.take());
    return;
  }
  const connection = new Connection(socket, ctx, (cut_off) => {
    connections.delete(connection);
    ctx.metrics.closeConnection(cut_off);
    if (draining) reportIfDrained();
  });
  connections.add(connection);
}

function drain(): void {
  draining = true;
  server?.close();
  for (const c of connections) c.drainAndEnd();
  reportIfDrained();
}

function reportIfDrained(): void {
  for (const c of connections) if (!c.idle()) return;
  self.postMessage({ drained: true });
}

function opCounts(metrics: Metrics): Record<string, number> {
  const ops = metrics.summary().ops;
  return Object.fromEntries(Object.entries(ops).map(([name, s]) => [name, s.count]));
}
