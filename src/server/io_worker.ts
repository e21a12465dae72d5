/**
 * Worker entry point of an I/O worker. Receives `{ shared, config, metrics, worker_index, started_unix_ms,
 * main, resp, local_wal }`, attaches an Engine to the shared table, and accepts connections on the listening
 * sockets: `main` speaks msgpack (protocol v1), `resp` (if configured) RESP2. Each socket is bound
 * once, by worker 0, and shared by every I/O worker through its fd. Answers `{ ready: true, main,
 * resp }` (the fds and the RESP TCP port) once listening, or `{ ready: true, error }` if a socket
 * could not be bound. On `{ drain: true }` it stops accepting, lets every connection finish its
 * in-flight requests, and answers `{ drained: true }`. With `local_wal` it writes the WAL itself
 * (LocalWalWriter: one I/O worker, fsync not `always`), and closes the log before it answers drained.
 * Log lines go to the daemon as `{ log }`.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import { crashPoint } from "../engine/crash_points.ts";
import { Engine, type EngineShared } from "../engine/engine.ts";
import { HEAP_CHECK_INTERVAL_MS, HeapGrowthPacer } from "../engine/gc_pacer.ts";
import { requestCheckpoint } from "../engine/host.ts";
import { LocalWalWriter } from "../engine/wal/local_wal_writer.ts";
import type { WalStart } from "../engine/wal/wal_writer.ts";
import type { ServerConfig, TcpAddress } from "./config.ts";
import { Connection, type Protocol } from "./connection.ts";
import { Metrics } from "./metrics.ts";
import { MsgpackProtocol, msgpackRefusal } from "./msgpack_protocol.ts";
import { SetCoalescer, type WorkerContext } from "./ops.ts";
import { RespProtocol, respRefusal } from "./resp_protocol.ts";

declare const self: Worker;

/** A listening socket: an fd to share (every worker but 0), or an address to bind (worker 0). */
export interface ListenerInit {
  readonly fd: number | undefined;
  /** Unix socket path and mode, or a TCP address; only when `fd` is undefined. */
  readonly bind: { readonly path: string; readonly mode: number } | TcpAddress | undefined;
  /** The bound TCP port (0 for a Unix socket); known once worker 0 bound it. */
  readonly port: number;
}

interface Init {
  readonly shared: EngineShared;
  readonly config: ServerConfig;
  readonly metrics: SharedArrayBuffer;
  readonly worker_index: number;
  readonly started_unix_ms: number;
  readonly main: ListenerInit;
  readonly resp: ListenerInit | undefined;
  /** Set when this worker writes the WAL itself (the only I/O worker, fsync not `always`). */
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
/** The WAL writer on this thread, if this worker writes the WAL itself. */
let local_wal: LocalWalWriter | undefined;
const connections = new Set<Connection<unknown>>();
const servers: net.Server[] = [];
/** Socket files this worker bound (renamed into place): removed if the start fails. */
const bound_paths: string[] = [];
let resp_tcp_port = 0;
/** How long a connect to an existing socket file may take to tell a live server from a stale file. */
const PROBE_TIMEOUT_MS = 1000;

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
  const main = await listen(init.worker_index, init.main, MSGPACK, ctx);
  const resp = init.resp === undefined ? undefined : await listen(init.worker_index, init.resp, RESP, ctx);
  resp_tcp_port = resp?.port ?? 0;
  return { main, resp };
}

/** Listens on `init`'s fd, or binds its address; resolves with the fd and port to share. */
function listen(
  worker_index: number,
  init: ListenerInit,
  wire: Wire,
  ctx: WorkerContext,
): Promise<ListenerInit> {
  const bind = init.bind;
  const tcp = init.port > 0 || (bind !== undefined && "host" in bind);
  const server = net.createServer({ pauseOnConnect: false }, (socket) => accept(socket, ctx, wire, tcp));
  servers.push(server);
  return new Promise((resolve, reject) => {
    const failed = (error: Error) => reject(new Error(`${wire.name}: cannot listen: ${error.message}`));
    server.once("error", failed);
    const listening = () => {
      server.off("error", failed);
      server.on("error", (error) => {
        throw new Error(`I/O worker ${worker_index}: listening ${wire.name} failed: ${error.message}`);
      });
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : init.port;
      resolve({ fd, bind: undefined, port });
    };
    if (init.fd !== undefined) server.listen({ fd: init.fd }, listening);
    else if (bind === undefined) failed(new Error("neither an fd nor an address to bind"));
    else if ("host" in bind) server.listen({ host: bind.host, port: bind.port }, listening);
    else bindPrivately(server, bind.path, bind.mode, listening, failed);
  });
}

/**
 * Binds the socket in a fresh 0700 directory next to `path`, sets its mode, then renames it into
 * place: it is never reachable with a wider mode than `mode`. A socket file at `path` that a live
 * server answers on (another walkv, Redis…) is never replaced: the start fails instead. A stale file
 * (its server died) is replaced.
 */
function bindPrivately(
  listener: net.Server,
  path: string,
  mode: number,
  listening: () => void,
  failed: (error: Error) => void,
): void {
  liveServerAt(path).then((live) => {
    if (live) return failed(new Error(`${path} is in use: a live server accepts connections there`));
    const dir = path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".";
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const private_dir = fs.mkdtempSync(`${dir}/.walkv-bind-`);
    const temporary = `${private_dir}/s`;
    listener.listen(temporary, () => {
      try {
        fs.chmodSync(temporary, mode);
        fs.renameSync(temporary, path);
        bound_paths.push(path);
      } finally {
        fs.rmSync(private_dir, { recursive: true, force: true });
      }
      listening();
    });
  });
}

/** True if a server accepts a connection on the Unix socket `path` (false: no file, or stale). */
function liveServerAt(path: string): Promise<boolean> {
  if (!fs.existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const probe = net.createConnection(path);
    const done = (live: boolean) => {
      clearTimeout(timer);
      probe.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS); // a server too busy to accept is live
    probe.once("connect", () => done(true));
    probe.once("error", () => done(false));
  });
}

function accept(socket: net.Socket, ctx: WorkerContext, wire: Wire, tcp: boolean): void {
  crashPoint("io-worker-accept");
  if (draining || !ctx.metrics.tryOpenConnection(ctx.config.max_connections)) {
    const reason = draining ? "shutting down" : `too many connections (limit ${ctx.config.max_connections})`;
    socket.on("error", () => {});
    socket.end(wire.refusal(reason));
    return;
  }
  if (tcp) socket.setNoDelay(true);
  const connection = new Connection(socket, wire.create(ctx), ctx, (cut_off) => {
    connections.delete(connection);
    ctx.metrics.closeConnection(cut_off);
    if (draining) reportIfDrained();
  });
  connections.add(connection);
}

function drain(): void {
  draining = true;
  for (const server of servers) server.close();
  for (const c of connections) c.drainAndEnd();
  reportIfDrained();
}

function reportIfDrained(): void {
  for (const c of connections) if (!c.idle()) return;
  local_wal?.close(); // nothing writes any more: flushed, synced, closed
  self.postMessage({ drained: true });
}

function opCounts(metrics: Metrics): Record<string, number> {
  const ops = metrics.summary().ops;
  return Object.fromEntries(Object.entries(ops).map(([name, s]) => [name, s.count]));
}
