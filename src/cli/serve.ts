/**
 * `walkv serve`: builds the daemon configuration from flags and `WALKV_*` variables, then runs the
 * daemon until SIGTERM/SIGINT. Prints one line containing `ready` once it accepts connections.
 *
 * @example
 * walkv serve --data /var/lib/walkv --socket /run/walkv/walkv.sock --fsync always
 */
import * as fs from "node:fs";
import { availableParallelism } from "node:os";
import { engineConfig, WAL_ZERO_AHEAD_BYTES_MAX, WRITE_WAIT_SPIN_US_MAX } from "../engine/config.ts";
import { type ListenAddress, type ServerConfig, serverConfig } from "../server/config.ts";
import { runDaemon } from "../server/daemon.ts";
import { runtimeExec, startWithAllocatorSettings } from "./allocator.ts";
import { type FlagSpec, type FlagValues, flagsHelp, parseFlags, UsageError } from "./flags.ts";

const GiB = 1024 ** 3;

export const SERVE_FLAGS = {
  data: { type: "string", help: "data directory (created 0700)", value_name: "DIR" },
  socket: { type: "string", help: "Unix socket path (created 0600)", value_name: "PATH" },
  socket_mode: {
    type: "string",
    help: "socket file mode, octal, e.g. 0660 for a group (default 0600)",
    value_name: "MODE",
  },
  fsync: { type: "enum", help: "WAL durability (default always)", values: ["always", "everysec", "no"] },
  workers: {
    type: "integer",
    help: "I/O workers (default: cores - 1, at least 1); a lone one writes the WAL itself",
    min: 1,
    max: 256,
  },
  transport: {
    type: "enum",
    help: "client sockets: auto = Bun's own when one I/O worker binds them, else node:net (default auto)",
    values: ["auto", "node"],
  },
  checkpoint_interval: {
    type: "integer",
    help: "seconds between checkpoints, 0 = off (default 300)",
    min: 0,
    max: 31_536_000,
  },
  checkpoint_wal_mb: {
    type: "integer",
    help: "checkpoint after this many MiB of WAL (default 256)",
    min: 1,
    max: 1_048_576,
  },
  max_frame_bytes: {
    type: "integer",
    help: "largest request/response frame (default 64 MiB)",
    min: 1024,
    max: GiB,
  },
  max_key_bytes: { type: "integer", help: "largest key (default 64 KiB)", min: 1, max: 16 * 1024 * 1024 },
  max_value_bytes: { type: "integer", help: "largest value (default 16 MiB)", min: 0, max: GiB },
  max_batch_bytes: {
    type: "integer",
    help: "largest write or mset as a WAL record (default 32 MiB)",
    min: 1024,
    max: GiB,
  },
  max_connections: { type: "integer", help: "open connections (default 16384)", min: 1, max: 1_000_000 },
  max_output_bytes: {
    type: "integer",
    help: "unread replies before a client is cut off (default 2 x max frame)",
    min: 1024,
    max: 4 * GiB,
  },
  max_memory_bytes: {
    type: "integer",
    help: "memory for keys, values and index (default 32 GiB)",
    min: 16 * 1024 * 1024,
    max: 32 * GiB,
  },
  wal_segment_bytes: { type: "integer", help: "WAL segment size (default 64 MiB)", min: 65536, max: 4 * GiB },
  write_wait_spin_us: {
    type: "integer",
    help: "microseconds an I/O worker polls for its pending writes before it sleeps, 0 = never (default 300)",
    min: 0,
    max: WRITE_WAIT_SPIN_US_MAX,
  },
  wal_zero_ahead_bytes: {
    type: "integer",
    help: "fsync always: zeros written ahead of the WAL's records, 0 = none (default 1 MiB)",
    min: 0,
    max: WAL_ZERO_AHEAD_BYTES_MAX,
  },
  auth_token_file: { type: "string", help: "require `auth` with the token in this file", value_name: "FILE" },
  http: {
    type: "string",
    help: "admin HTTP on HOST:PORT (loopback) or a Unix socket PATH",
    value_name: "HOST:PORT|PATH",
  },
  http_allow_public: { type: "boolean", help: "allow a non-loopback --http address" },
  resp: {
    type: "string",
    help: "also serve RESP2 (Redis protocol) on a Unix socket PATH or HOST:PORT (loopback)",
    value_name: "PATH|HOST:PORT",
  },
  resp_allow_public: { type: "boolean", help: "allow a non-loopback --resp address" },
  repair_wal: {
    type: "boolean",
    help: "cut the WAL at the first corrupt record instead of refusing to start",
  },
  shutdown_timeout: {
    type: "integer",
    help: "seconds to wait for in-flight requests at shutdown (default 30)",
    min: 0,
    max: 3600,
  },
} as const satisfies FlagSpec;

export const SERVE_USAGE = `usage: walkv serve --data DIR --socket PATH [flags]

Runs the walkv daemon. Every flag can also be set as an environment variable (shown in brackets);
a flag on the command line wins.

${flagsHelp(SERVE_FLAGS)}`;

/** Parses serve flags into a validated ServerConfig. Throws UsageError/InvalidError. */
export function serveConfig(argv: string[], env: Record<string, string | undefined>): ServerConfig {
  const { values: v, positionals } = parseFlags(SERVE_FLAGS, argv, env);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (v.data === undefined) throw new UsageError("--data DIR is required (or WALKV_DATA)");
  if (v.socket === undefined && listenFd(env) === undefined)
    throw new UsageError("--socket PATH is required (or WALKV_SOCKET)");
  const engine = engineConfig({
    data_dir: v.data,
    ...(v.fsync !== undefined && { fsync: v.fsync as "always" | "everysec" | "no" }),
    ...(v.checkpoint_interval !== undefined && { checkpoint_interval_ms: v.checkpoint_interval * 1000 }),
    ...(v.checkpoint_wal_mb !== undefined && { checkpoint_wal_bytes: v.checkpoint_wal_mb * 1024 * 1024 }),
    ...(v.max_key_bytes !== undefined && { max_key_bytes: v.max_key_bytes }),
    ...(v.max_value_bytes !== undefined && { max_value_bytes: v.max_value_bytes }),
    ...(v.max_batch_bytes !== undefined && { max_batch_bytes: v.max_batch_bytes }),
    ...(v.max_memory_bytes !== undefined && { memory_limit_bytes: v.max_memory_bytes }),
    ...(v.wal_segment_bytes !== undefined && { wal_segment_bytes: v.wal_segment_bytes }),
    ...(v.write_wait_spin_us !== undefined && { write_wait_spin_us: v.write_wait_spin_us }),
    ...(v.wal_zero_ahead_bytes !== undefined && { wal_zero_ahead_bytes: v.wal_zero_ahead_bytes }),
    repair_wal: v.repair_wal ?? false,
  });
  return serverConfig({
    engine,
    socket_path: v.socket ?? "(inherited)",
    workers: v.workers ?? defaultWorkers(),
    ...(v.transport !== undefined && { transport: v.transport as "auto" | "node" }),
    ...(v.socket_mode !== undefined && { socket_mode: octal(v.socket_mode) }),
    ...(v.max_frame_bytes !== undefined && { max_frame_bytes: v.max_frame_bytes }),
    ...(v.max_connections !== undefined && { max_connections: v.max_connections }),
    ...(v.max_output_bytes !== undefined && { max_output_bytes: v.max_output_bytes }),
    ...(v.shutdown_timeout !== undefined && { shutdown_timeout_ms: v.shutdown_timeout * 1000 }),
    auth_token: v.auth_token_file === undefined ? undefined : readToken(v.auth_token_file),
    http: v.http === undefined ? undefined : parseListen("--http", v.http),
    http_allow_public: v.http_allow_public ?? false,
    resp: v.resp === undefined ? undefined : parseListen("--resp", v.resp),
    resp_allow_public: v.resp_allow_public ?? false,
  });
}

/** Runs `walkv serve`; resolves with the exit code. */
export async function serve(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  startWithAllocatorSettings(argv, env, runtimeExec()); // under Bun, at most once, before any file is read
  const config = serveConfig(argv, env);
  const log = (line: string) => console.error(`${new Date().toISOString()} ${line}`);
  return await runDaemon(config, { log, inherited_fd: listenFd(env), onReady: (line) => console.log(line) });
}

/**
 * I/O workers by default: one per core but one. Clients of a Unix socket share the machine, and the
 * WAL writer needs a core; on 2 cores one I/O worker served 20–25 % more than two
 * (scripts/bench-daemon.ts, docs/BENCHMARKS.md).
 */
export function defaultWorkers(): number {
  return Math.max(1, availableParallelism() - 1);
}

/** systemd socket activation: fd 3 when LISTEN_FDS ≥ 1 and LISTEN_PID is this process. */
export function listenFd(env: Record<string, string | undefined>): number | undefined {
  if (env.LISTEN_FDS === undefined || Number(env.LISTEN_FDS) < 1) return undefined;
  if (env.LISTEN_PID !== undefined && Number(env.LISTEN_PID) !== process.pid) return undefined;
  return 3;
}

function octal(text: string): number {
  if (!/^0?[0-7]{3}$/.test(text))
    throw new UsageError(`--socket-mode: "${text}" is not an octal mode like 0660`);
  return Number.parseInt(text, 8);
}

function readToken(path: string): string {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`--auth-token-file: cannot read ${path}: ${(error as Error).message}`);
  }
  const token = text.replace(/\r?\n$/, "");
  if (token.length === 0) throw new UsageError(`--auth-token-file: ${path} is empty`);
  if ((fs.statSync(path).mode & 0o077) !== 0) {
    console.error(`warning: ${path} is readable by group or others; chmod 600 it`);
  }
  return token;
}

/** `HOST:PORT` (`[::1]:PORT` for IPv6) or a Unix socket path (anything with a `/`). */
function parseListen(flag: string, text: string): ListenAddress {
  if (text.includes("/")) return { path: text };
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (match === null || port > 65535)
    throw new UsageError(`${flag}: "${text}" is not HOST:PORT or a socket PATH`);
  return { host: match[1]!.replace(/^\[|\]$/g, ""), port };
}

export type ServeValues = FlagValues<typeof SERVE_FLAGS>;
