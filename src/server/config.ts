/**
 * Daemon configuration: the engine's (src/engine/config.ts) plus the server's own limits. Built by
 * `walkv serve` from flags and `WALKV_*` environment variables (src/cli/serve.ts); validated here.
 * Every limit is listed in docs/LIMITS.md.
 *
 * @example
 * const config = serverConfig({ engine: engineConfig({ data_dir }), socket_path: "./var/walkv.sock" });
 */
import type { EngineConfig } from "../engine/config.ts";
import { InvalidError } from "../engine/errors.ts";

export type TcpAddress = { readonly host: string; readonly port: number };
/** Where a listener listens: a TCP address or a Unix socket path. */
export type ListenAddress = TcpAddress | { readonly path: string };
export type HttpListen = ListenAddress;

export interface ServerConfig {
  readonly engine: EngineConfig;
  /** Path of the Unix socket (ignored under socket activation). */
  readonly socket_path: string;
  /** Mode of the socket file; 0o600 unless widened with --socket-mode. */
  readonly socket_mode: number;
  /** I/O workers. Default: number of cores. */
  readonly workers: number;
  /**
   * Client sockets: `auto` uses Bun's own (Bun.listen) when the runtime is Bun and one I/O worker
   * binds the sockets itself, node:net otherwise; `node` always node:net. Default `auto`.
   */
  readonly transport: "auto" | "node";
  /** Largest request or response frame body. Default 64 MiB. */
  readonly max_frame_bytes: number;
  /** Open connections over all workers. Default 16384. */
  readonly max_connections: number;
  /** Replies a connection may leave unread before it is cut off. Default 2 × max_frame_bytes. */
  readonly max_output_bytes: number;
  /** Requests of one connection in progress at once; more are read when some complete. Default 4096. */
  readonly max_inflight_requests: number;
  /** When set, every op but `auth` needs a prior `auth` with this token. */
  readonly auth_token: string | undefined;
  /** Admin HTTP (health, metrics, stats); off when undefined. */
  readonly http: HttpListen | undefined;
  /** Allow a non-loopback admin HTTP address. */
  readonly http_allow_public: boolean;
  /** The RESP2 listener (docs/resp.md), a Unix socket (mode `socket_mode`) or TCP; off when undefined. */
  readonly resp: ListenAddress | undefined;
  /** Allow a non-loopback RESP address. */
  readonly resp_allow_public: boolean;
  /** A shutdown waits at most this long for in-flight requests. Default 30 s. */
  readonly shutdown_timeout_ms: number;
}

const MiB = 1024 * 1024;

export const SERVER_DEFAULTS = {
  socket_mode: 0o600,
  max_frame_bytes: 64 * MiB,
  max_connections: 16384,
  max_inflight_requests: 4096,
  shutdown_timeout_ms: 30_000,
} as const;

/** Fills defaults and validates; throws InvalidError naming the field. */
export function serverConfig(
  partial: Partial<ServerConfig> & { engine: EngineConfig; socket_path: string; workers: number },
): ServerConfig {
  const max_frame_bytes = partial.max_frame_bytes ?? SERVER_DEFAULTS.max_frame_bytes;
  const config: ServerConfig = {
    socket_mode: SERVER_DEFAULTS.socket_mode,
    transport: "auto",
    max_connections: SERVER_DEFAULTS.max_connections,
    max_inflight_requests: SERVER_DEFAULTS.max_inflight_requests,
    shutdown_timeout_ms: SERVER_DEFAULTS.shutdown_timeout_ms,
    auth_token: undefined,
    http: undefined,
    http_allow_public: false,
    resp: undefined,
    resp_allow_public: false,
    ...partial,
    max_frame_bytes,
    max_output_bytes: partial.max_output_bytes ?? 2 * max_frame_bytes,
  };
  integer("workers", config.workers, 1, 256);
  integer("max_frame_bytes", config.max_frame_bytes, 1024, 1024 * MiB);
  integer("max_connections", config.max_connections, 1, 1_000_000);
  integer("max_output_bytes", config.max_output_bytes, config.max_frame_bytes, 4096 * MiB);
  integer("max_inflight_requests", config.max_inflight_requests, 1, 1_000_000);
  integer("shutdown_timeout_ms", config.shutdown_timeout_ms, 0, 3_600_000);
  integer("socket_mode", config.socket_mode, 0, 0o777);
  if (config.socket_path === "") throw new InvalidError("socket: a path is required");
  if (config.auth_token !== undefined && config.auth_token.length === 0) {
    throw new InvalidError("auth token: the token file is empty");
  }
  if (config.max_frame_bytes < config.engine.max_key_bytes + 64) {
    throw new InvalidError("max_frame_bytes must hold at least one key");
  }
  checkResp(config);
  checkPublic("--http", config.http, config.http_allow_public);
  return config;
}

/** True for a loopback host name or address. */
function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A TCP listener (`--http`, `--resp`) must be loopback unless its `--…-allow-public` flag is given. */
function checkPublic(
  flag: string,
  listen: { host: string } | { path: string } | undefined,
  allowed: boolean,
): void {
  if (listen === undefined || !("host" in listen) || isLoopback(listen.host) || allowed) return;
  throw new InvalidError(
    `${flag} ${listen.host}: not a loopback address; add ${flag}-allow-public to serve it anyway`,
  );
}

/** A RESP address must be loopback (RESP has no TLS) unless `resp_allow_public`, and not the main socket. */
function checkResp(config: ServerConfig): void {
  const resp = config.resp;
  if (resp === undefined) return;
  if ("host" in resp) {
    integer("resp port", resp.port, 0, 65535);
    checkPublic("--resp", resp, config.resp_allow_public);
  } else if (resp.path === "" || resp.path === config.socket_path) {
    throw new InvalidError(`--resp ${resp.path}: needs a socket path of its own`);
  }
}

function integer(name: string, value: number, min: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidError(`${name}: ${value} is not an integer in [${min}, ${max}]`);
  }
}
