/**
 * The listening sockets of an I/O worker, over either transport of client_socket.ts:
 *
 * - **Bun sockets** (`Bun.listen`) when the runtime is Bun, `--transport` is `auto`, this worker is the
 *   only I/O worker and binds the address itself. Cheaper per request (see client_socket.ts).
 * - **node:net** otherwise: several workers share one listening fd (worker 0 binds it, the others
 *   listen on its fd), a socket passed by systemd is adopted by its fd, and Deno has node:net only.
 *
 * A Unix socket is bound in a fresh 0700 directory, given its mode, then renamed into place: it is
 * never reachable with a wider mode than asked. A live server's socket file is never replaced.
 *
 * @example
 * const listener = await listen(init, "socket", native, (socket) => accept(socket));
 * share(listener.fd, listener.port); // to the next worker
 * listener.close();                  // stops accepting; open connections go on
 */
import * as fs from "node:fs";
import * as net from "node:net";
import { BunClientSocket, NodeClientSocket, type SocketEvents } from "./client_socket.ts";
import type { TcpAddress } from "./config.ts";

/** A listening socket: an fd to share (every worker but 0), or an address to bind (worker 0). */
export interface ListenerInit {
  readonly fd: number | undefined;
  /** Unix socket path and mode, or a TCP address; only when `fd` is undefined. */
  readonly bind: { readonly path: string; readonly mode: number } | TcpAddress | undefined;
  /** The bound TCP port (0 for a Unix socket); known once worker 0 bound it. */
  readonly port: number;
}

/** An accepted client: its socket, which takes the connection's events once it exists. */
export type AcceptedSocket = (NodeClientSocket | BunClientSocket) & {
  attach(events: SocketEvents): void;
};

export interface Listener {
  /** The listening fd other workers may share; undefined for a Bun listener (not shareable). */
  readonly fd: number | undefined;
  /** The bound TCP port, 0 for a Unix socket. */
  readonly port: number;
  /** Stops accepting. Connections already accepted go on. */
  close(): void;
}

/** How long a connect to an existing socket file may take to tell a live server from a stale file. */
const PROBE_TIMEOUT_MS = 1000;

/**
 * Listens on `init`'s fd, or binds its address (with Bun sockets if `native` and nothing is shared).
 * Each accepted client goes to `accept`. Rejects with `<name>: cannot listen: <why>`.
 */
export async function listen(
  init: ListenerInit,
  name: string,
  native: boolean,
  accept: (socket: AcceptedSocket) => void,
): Promise<Listener> {
  const bind = init.bind;
  const tcp = init.port > 0 || (bind !== undefined && "host" in bind);
  try {
    if (init.fd === undefined && bind === undefined) throw new Error("neither an fd nor an address to bind");
    if (native && init.fd === undefined && bind !== undefined) {
      return "host" in bind ? bunTcp(bind, accept) : await bunUnix(bind.path, bind.mode, accept);
    }
    return await nodeListen(init, name, tcp, accept);
  } catch (error) {
    throw new Error(`${name}: cannot listen: ${(error as Error).message}`);
  }
}

/** Socket files bound by this thread (renamed into place): removed if the start fails. */
export const bound_paths: string[] = [];

/**
 * Bun's socket callbacks: each socket's `data` is its BunClientSocket. An exception from our own code
 * in a callback fails the worker, as it does under node:net (the daemon then exits 70 and recovery
 * runs): Bun would otherwise report it to `error` and keep the socket open. `error` is the socket's
 * own failure (a reset): the socket goes.
 */
function bunHandlers(accept: (socket: AcceptedSocket) => void) {
  const guarded = (handler: (s: BunSocketWithData) => void) => (s: BunSocketWithData) => {
    try {
      handler(s);
    } catch (error) {
      failWorker(error);
    }
  };
  return {
    open: guarded((s) => {
      s.data = new BunClientSocket(s);
      accept(s.data);
    }),
    // Spelled out: runs for every chunk, so no wrapper with rest arguments (an array per call).
    data(s: BunSocketWithData, chunk: Uint8Array) {
      try {
        s.data.onData(chunk);
      } catch (error) {
        failWorker(error);
      }
    },
    drain: guarded((s) => s.data.onWritable()),
    end: guarded((s) => s.data.onEnd()),
    close: guarded((s) => s.data?.onClose()),
    error: guarded((s) => {
      s.data?.onClose();
      s.terminate();
    }),
  };
}

/** Ends the worker with `error`, outside the runtime's callback (so nothing can swallow it). */
function failWorker(error: unknown): void {
  setTimeout(() => {
    throw error;
  }, 0);
}

type BunSocketWithData = ConstructorParameters<typeof BunClientSocket>[0] & { data: BunClientSocket };

function bunTcp(address: TcpAddress, accept: (socket: AcceptedSocket) => void): Listener {
  const listener = Bun.listen<BunClientSocket>({
    hostname: address.host,
    port: address.port,
    allowHalfOpen: true,
    socket: bunHandlers(accept) as never,
  });
  return { fd: undefined, port: listener.port, close: () => listener.stop() };
}

async function bunUnix(
  path: string,
  mode: number,
  accept: (socket: AcceptedSocket) => void,
): Promise<Listener> {
  let listener: { stop(): void } | undefined;
  await bindPrivately(path, mode, async (temporary) => {
    listener = Bun.listen<BunClientSocket>({
      unix: temporary,
      allowHalfOpen: true,
      socket: bunHandlers(accept) as never,
    });
  });
  return { fd: undefined, port: 0, close: () => listener?.stop() };
}

function nodeListen(
  init: ListenerInit,
  name: string,
  tcp: boolean,
  accept: (socket: AcceptedSocket) => void,
): Promise<Listener> {
  const server = net.createServer({ pauseOnConnect: false, allowHalfOpen: true }, (socket) => {
    if (tcp) socket.setNoDelay(true);
    accept(new NodeClientSocket(socket));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    const listening = () => {
      server.off("error", reject);
      server.on("error", (error) => {
        throw new Error(`listening ${name} failed: ${error.message}`);
      });
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : init.port;
      resolve({ fd, port, close: () => server.close() });
    };
    const bind = init.bind;
    if (init.fd !== undefined) server.listen({ fd: init.fd }, listening);
    else if (bind !== undefined && "host" in bind)
      server.listen({ host: bind.host, port: bind.port }, listening);
    else if (bind !== undefined) {
      bindPrivately(
        bind.path,
        bind.mode,
        (temporary) => new Promise((done) => server.listen(temporary, done)),
      ).then(listening, reject);
    }
  });
}

/**
 * Binds a Unix socket (`bindAt` listens on the path it is given) in a fresh 0700 directory next to
 * `path`, sets its mode, then renames it into place. A socket file at `path` that a live server
 * answers on (another walkv, Redis…) is never replaced; a stale one (its server died) is.
 */
async function bindPrivately(
  path: string,
  mode: number,
  bindAt: (temporary: string) => Promise<void>,
): Promise<void> {
  if (await liveServerAt(path)) throw new Error(`${path} is in use: a live server accepts connections there`);
  const dir = path.slice(0, Math.max(0, path.lastIndexOf("/"))) || ".";
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const private_dir = fs.mkdtempSync(`${dir}/.walkv-bind-`);
  const temporary = `${private_dir}/s`;
  try {
    await bindAt(temporary);
    fs.chmodSync(temporary, mode);
    fs.renameSync(temporary, path);
    bound_paths.push(path);
  } finally {
    fs.rmSync(private_dir, { recursive: true, force: true });
  }
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
