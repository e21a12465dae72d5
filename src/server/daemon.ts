/**
 * The daemon's main thread: it opens the engine (recovery, WAL writer and checkpointer workers),
 * starts the I/O workers on one listening Unix socket (msgpack) and, with `--resp`, a second one
 * (RESP2, a Unix socket or loopback TCP), serves admin HTTP if asked, and supervises:
 *
 * - fail fast: if any worker dies, log why and exit 70 (systemd restarts walkv and recovery runs); it
 *   never runs on with a lock possibly held by a dead worker;
 * - SIGTERM/SIGINT: stop accepting, let in-flight requests finish (at most `shutdown_timeout_ms`),
 *   make the WAL durable, write a final checkpoint (none if requests were cut off at the timeout:
 *   the next start replays the WAL), remove the socket file, exit 0.
 *
 * Sockets are bound by I/O worker 0 (a listener on the main thread would accept connections
 * too); a Unix socket in a private 0700 directory, chmod'ed, then renamed into place: it is never
 * reachable with a wider mode than asked. Under systemd socket activation (`LISTEN_FDS`), fd 3 is
 * used as is for the msgpack socket; the RESP socket is bound as usual.
 *
 * @example
 * const code = await runDaemon(config, { log: console.error });
 * process.exit(code);
 */
import * as fs from "node:fs";
import { type AdminServer, startAdminHttp } from "../admin/http.ts";
import { InvalidError } from "../engine/errors.ts";
import { openEngine, walStart } from "../engine/host.ts";
import type { WalStart } from "../engine/wal/wal_writer.ts";
import type { ServerConfig } from "./config.ts";
import type { ListenerInit } from "./listener.ts";
import { createMetricsBuffer, Metrics } from "./metrics.ts";
import { acquirePidFile, type PidFile } from "./pid_file.ts";
import {
  armShutdownWatchdog,
  CLOSE_AFTER_DRAIN_TIMEOUT_MS,
  type ShutdownWatchdog,
} from "./shutdown_watchdog.ts";

export interface DaemonOptions {
  readonly log: (line: string) => void;
  /** A listening socket inherited from systemd (`LISTEN_FDS`), used instead of binding. */
  readonly inherited_fd?: number;
  /** Called once serving, with the line printed as "ready". */
  readonly onReady?: (line: string) => void;
}

/** Runs until SIGTERM/SIGINT; resolves with the exit code. */
export async function runDaemon(config: ServerConfig, options: DaemonOptions): Promise<number> {
  const log = options.log;
  const pid_file = acquirePidFile(config.engine.data_dir);
  let stopping = false;
  const fatal = (why: string) => {
    if (stopping) return;
    log(`fatal: ${why}; exiting so that a supervisor restarts walkv and recovery runs`);
    pid_file.release();
    process.exit(70);
  };
  // One I/O worker: it writes the WAL itself (LocalWalWriter).
  const local_wal_writer = config.workers === 1;
  let host: Awaited<ReturnType<typeof openEngine>>;
  try {
    host = await openEngine(config.engine, {
      log,
      on_fatal: (error) => fatal(error.message),
      local_wal_writer,
    });
  } catch (error) {
    pid_file.release();
    throw error;
  }
  const metrics_buffer = createMetricsBuffer(config.workers);
  const metrics = new Metrics(metrics_buffer, -1);
  let admin: AdminServer | undefined;
  try {
    // Before the socket exists: a busy HTTP port must not leave a half-started daemon behind.
    admin = config.http === undefined ? undefined : await startAdminHttp(config, host.engine, metrics, log);
  } catch (error) {
    stopping = true;
    await teardown({ workers: [], admin: undefined, host, pid_file });
    throw error;
  }
  const local_wal = local_wal_writer ? walStart(host.recovery) : undefined;
  if (local_wal !== undefined)
    log(
      config.engine.fsync === "always"
        ? "wal: written and synced by the I/O worker itself, once per event-loop turn (one I/O worker, fsync always)"
        : `wal: written by the I/O worker itself (one I/O worker, fsync ${config.engine.fsync}; its background fdatasyncs on the syncer worker)`,
    );
  const started = await startWorkers(config, host.shared, metrics_buffer, options.inherited_fd, local_wal, {
    fatal,
    log,
  });
  if ("error" in started) {
    stopping = true;
    // Worker 0 removed the sockets it had bound.
    await teardown({ workers: started.workers, admin, host, pid_file });
    throw new InvalidError(started.error);
  }
  const workers = started.workers;
  const where =
    options.inherited_fd === undefined ? config.socket_path : `inherited fd ${options.inherited_fd}`;
  const resp = config.resp;
  const resp_where =
    resp === undefined ? "" : `, RESP on ${"path" in resp ? resp.path : `${resp.host}:${started.resp_port}`}`;
  const line = `walkv ready: listening on ${where}${resp_where} (${config.workers} workers, fsync ${config.engine.fsync}, data ${config.engine.data_dir})`;
  // Signal handlers before the ready line: whoever waits for it may send SIGTERM at once.
  const exited = new Promise<number>((resolve) => {
    let terminating = false;
    const stop = async (signal: string) => {
      if (terminating) return;
      terminating = true;
      log(`${signal}: shutting down`);
      await shutdown(config, workers, host, admin, options.inherited_fd === undefined, pid_file, log, () => {
        stopping = true;
      });
      resolve(0);
    };
    process.on("SIGTERM", () => void stop("SIGTERM"));
    process.on("SIGINT", () => void stop("SIGINT"));
  });
  log(line);
  options.onReady?.(line);
  return await exited;
}

async function shutdown(
  config: ServerConfig,
  workers: Worker[],
  host: Awaited<ReturnType<typeof openEngine>>,
  admin: { close(): Promise<void> } | undefined,
  bound_socket: boolean,
  pid_file: PidFile,
  log: (line: string) => void,
  stopSupervising: () => void,
): Promise<void> {
  const drained = await Promise.race([
    Promise.all(workers.map((w) => ask(w, { drain: true }, "drained"))).then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), config.shutdown_timeout_ms)),
  ]);
  let watchdog: ShutdownWatchdog | undefined;
  if (!drained) {
    log(
      `shutdown: in-flight requests still running after ${config.shutdown_timeout_ms} ms; closing anyway ` +
        `(within ${CLOSE_AFTER_DRAIN_TIMEOUT_MS} ms, else the process kills itself with SIGKILL)`,
    );
    watchdog = await armShutdownWatchdog(CLOSE_AFTER_DRAIN_TIMEOUT_MS);
    if (!watchdog.counting) log("shutdown: the watchdog did not start; closing without a time limit");
    host.skipFinalCheckpoint(); // before the workers are cut off, maybe inside a write
  }
  stopSupervising();
  try {
    await teardown({ workers, admin, host, pid_file, after_host: () => removeSockets(config, bound_socket) });
  } finally {
    watchdog?.disarm();
  }
  log(`shutdown complete: WAL durable, ${drained ? "final checkpoint written" : "no final checkpoint"}`);
}

/**
 * Stops what was started, in order — on a clean shutdown and when a start fails half-way: the I/O
 * workers (their threads ended, not only asked to end: a worker still running could write after the
 * final checkpoint), admin HTTP, the engine (final checkpoint unless skipped, WAL synced), then
 * `after_host` and the pid file.
 */
async function teardown(parts: {
  readonly workers: readonly Worker[];
  readonly admin: { close(): Promise<void> } | undefined;
  readonly host: Awaited<ReturnType<typeof openEngine>>;
  readonly pid_file: PidFile;
  readonly after_host?: () => void;
}): Promise<void> {
  await Promise.all(parts.workers.map((w) => terminated(w)));
  await parts.admin?.close();
  await parts.host.close();
  parts.after_host?.();
  parts.pid_file.release();
}

/** A terminated worker's thread has ended by then, or had ended before (its close event is gone). */
const WORKER_EXIT_WAIT_MS = 5000;

/** Terminates `worker` and resolves once its thread has ended (at most WORKER_EXIT_WAIT_MS). */
function terminated(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, WORKER_EXIT_WAIT_MS);
    worker.addEventListener(
      "close",
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
    worker.terminate();
  });
}

/** Removes the socket files this daemon bound (not an inherited one). */
function removeSockets(config: ServerConfig, bound_socket: boolean): void {
  if (bound_socket) fs.rmSync(config.socket_path, { force: true });
  if (config.resp !== undefined && "path" in config.resp) fs.rmSync(config.resp.path, { force: true });
}

/**
 * Starts the I/O workers one by one: worker 0 binds the sockets, the others listen on its fds.
 * Resolves with the workers and the RESP TCP port, or with an error if a socket could not be bound
 * (the workers started so far are returned to be terminated).
 */
async function startWorkers(
  config: ServerConfig,
  shared: unknown,
  metrics: SharedArrayBuffer,
  inherited_fd: number | undefined,
  local_wal: WalStart | undefined,
  report: { readonly fatal: (why: string) => void; readonly log: (line: string) => void },
): Promise<{ workers: Worker[]; resp_port: number } | { workers: Worker[]; error: string }> {
  const fatal = report.fatal;
  const url = new URL("./io_worker.ts", import.meta.url).href;
  const workers: Worker[] = [];
  const started_unix_ms = Date.now();
  let main: ListenerInit =
    inherited_fd === undefined
      ? { fd: undefined, bind: { path: config.socket_path, mode: config.socket_mode }, port: 0 }
      : { fd: inherited_fd, bind: undefined, port: 0 };
  let resp: ListenerInit | undefined =
    config.resp === undefined
      ? undefined
      : {
          fd: undefined,
          bind: "path" in config.resp ? { path: config.resp.path, mode: config.socket_mode } : config.resp,
          port: 0,
        };
  for (let i = 0; i < config.workers; i++) {
    const worker = new Worker(url, { type: "module" });
    workers.push(worker);
    worker.addEventListener("error", (event) =>
      fatal(`I/O worker ${i} died: ${(event as ErrorEvent).message}`),
    );
    worker.addEventListener("close", () => fatal(`I/O worker ${i} exited`));
    worker.addEventListener("message", (event) => {
      const line = (event.data as { log?: unknown }).log;
      if (typeof line === "string") report.log(line);
    });
    const init = { shared, config, metrics, worker_index: i, started_unix_ms, main, resp, local_wal };
    const reply = await ask(worker, init, "ready");
    if (typeof reply.error === "string") return { workers, error: reply.error };
    main = reply.main as ListenerInit;
    resp = reply.resp as ListenerInit | undefined;
  }
  return { workers, resp_port: resp?.port ?? 0 };
}

/** Posts `message` and resolves with the first reply that has `key` set. */
function ask(worker: Worker, message: unknown, key: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const listener = (event: MessageEvent) => {
      const data = event.data as Record<string, unknown>;
      if (data[key] === undefined) return;
      worker.removeEventListener("message", listener);
      resolve(data);
    };
    worker.addEventListener("message", listener);
    worker.postMessage(message);
  });
}
