/**
 * The RESP2 server commands: INFO (a Redis-shaped subset of walkv's stats), CONFIG GET (the settings
 * redis-cli and redis-benchmark ask about at start) and COMMAND (the command table, for clients that
 * introspect). Not on the hot path: strings are built freely here.
 *
 * @example
 * infoReply(ctx, [], out);                  // every section, as one bulk string
 * configReply(ctx, [GET, "save"], out);     // ["save", ""]
 * commandReply(COMMANDS, [COUNT], out);     // :16
 */
import { VERSION } from "../cli/version.ts";
import type { WorkerContext } from "./ops.ts";
import type { RespCommand } from "./resp_commands.ts";
import { latin1 } from "./resp_request.ts";
import { RespError, type RespWriter } from "./resp_writer.ts";

function lowercase(arg: Uint8Array): string {
  return latin1.decode(arg).toLowerCase();
}

// ------------------------------------------------------------------------------------- INFO

type Lines = Array<[string, string | number]>;

interface Section {
  readonly name: string;
  readonly lines: (ctx: WorkerContext, facts: Facts) => Lines;
}

interface Facts {
  readonly engine: ReturnType<WorkerContext["engine"]["stats"]>;
  readonly server: ReturnType<WorkerContext["metrics"]["summary"]>;
}

const SECTIONS: readonly Section[] = [
  {
    name: "server",
    lines: (ctx) => {
      const uptime_s = Math.max(0, Math.floor((Date.now() - ctx.started_unix_ms) / 1000));
      return [
        ["walkv_version", VERSION],
        ["redis_mode", "standalone"],
        ["process_id", process.pid],
        ["tcp_port", ctx.resp_tcp_port()],
        ["uptime_in_seconds", uptime_s],
        ["uptime_in_days", Math.floor(uptime_s / 86_400)],
      ];
    },
  },
  {
    name: "clients",
    lines: (ctx, f) => [
      ["connected_clients", f.server.connections],
      ["maxclients", ctx.config.max_connections],
    ],
  },
  {
    name: "memory",
    lines: (ctx, f) => {
      const m = f.engine.memory;
      const used = m.arena_live_bytes + m.index_bytes;
      const max = ctx.config.engine.memory_limit_bytes;
      return [
        ["used_memory", used],
        ["used_memory_human", humanBytes(used)],
        ["used_memory_rss", process.memoryUsage().rss],
        ["maxmemory", max],
        ["maxmemory_human", humanBytes(max)],
        ["walkv_arena_reserved_bytes", m.arena_reserved_bytes],
        ["walkv_arena_live_bytes", m.arena_live_bytes],
        ["walkv_index_bytes", m.index_bytes],
        ["walkv_wal_buffer_bytes", m.wal_buffer_bytes],
      ];
    },
  },
  {
    name: "persistence",
    lines: (ctx, f) => {
      const { wal, lsn, checkpoint } = f.engine;
      return [
        ["loading", 0],
        ["aof_enabled", 1],
        ["walkv_fsync", ctx.config.engine.fsync],
        ["aof_last_write_status", wal.state === "running" ? "ok" : "err"],
        ["walkv_wal_state", wal.state],
        ["walkv_wal_bytes_written", wal.bytes_written],
        ["walkv_wal_fsyncs", wal.fsyncs],
        ["walkv_lsn_visible", lsn.visible],
        ["walkv_lsn_durable", lsn.durable],
        ["rdb_changes_since_last_save", Math.max(0, lsn.visible - checkpoint.redo_lsn)],
        ["rdb_last_save_time", Math.floor(checkpoint.finished_unix_ms / 1000)],
        ["walkv_checkpoints", checkpoint.count],
        ["walkv_checkpoint_failures", checkpoint.failures],
        ["walkv_last_checkpoint_lsn", checkpoint.redo_lsn],
        ["walkv_last_checkpoint_bytes", checkpoint.bytes],
        ["walkv_last_checkpoint_duration_ms", checkpoint.duration_ms],
      ];
    },
  },
  {
    name: "stats",
    lines: (_ctx, f) => {
      let commands = 0;
      for (const op of Object.values(f.server.ops)) commands += op.count;
      return [
        ["total_connections_received", f.server.connections_accepted],
        ["total_commands_processed", commands],
        ["rejected_connections", f.server.connections_rejected],
        ["walkv_connections_cut_off", f.server.connections_cut_off],
      ];
    },
  },
  {
    name: "keyspace",
    lines: (_ctx, f) => (f.engine.keys > 0 ? [["db0", `keys=${f.engine.keys},expires=0,avg_ttl=0`]] : []),
  },
];

/** INFO [section …]: the named sections (all of them for none, `all`, `default` or `everything`). */
export function infoReply(ctx: WorkerContext, args: Uint8Array[], out: RespWriter): undefined {
  const wanted = args.map(lowercase);
  const every =
    wanted.length === 0 || wanted.some((w) => w === "all" || w === "default" || w === "everything");
  const facts: Facts = { engine: ctx.engine.stats(), server: ctx.metrics.summary() };
  const text = SECTIONS.filter((s) => every || wanted.includes(s.name))
    .map((s) => {
      const title = `# ${s.name[0]!.toUpperCase()}${s.name.slice(1)}\r\n`;
      return (
        title +
        s
          .lines(ctx, facts)
          .map(([key, value]) => `${key}:${value}\r\n`)
          .join("")
      );
    })
    .join("\r\n");
  out.bulkString(text);
  return undefined;
}

/** Redis's used_memory_human: B, then K, M, G, T with two decimals. */
export function humanBytes(bytes: number): string {
  const units = ["K", "M", "G", "T"];
  if (bytes < 1024) return `${bytes}B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(2)}${units[unit]}`;
}

// ------------------------------------------------------------------------------------- CONFIG

/** The settings CONFIG GET knows, in Redis's names. */
function settings(ctx: WorkerContext): Array<[string, string]> {
  const c = ctx.config;
  return [
    ["save", ""],
    ["appendonly", "yes"],
    ["appendfsync", c.engine.fsync],
    ["databases", "1"],
    ["maxclients", String(c.max_connections)],
    ["maxmemory", String(c.engine.memory_limit_bytes)],
    ["port", String(ctx.resp_tcp_port())],
    ["proto-max-bulk-len", String(c.max_frame_bytes)],
  ];
}

/** CONFIG GET pattern [pattern …]: matching settings as a flat name, value array. */
export function configReply(ctx: WorkerContext, args: Uint8Array[], out: RespWriter): undefined {
  const subcommand = lowercase(args[0]!);
  if (subcommand !== "get") {
    throw new RespError(
      `ERR CONFIG ${subcommand.slice(0, 32).toUpperCase()} is not supported: walkv answers CONFIG GET only`,
    );
  }
  if (args.length < 2) throw new RespError("ERR wrong number of arguments for 'config|get' command");
  const patterns = args.slice(1).map(lowercase);
  const matches = settings(ctx).filter(([name]) => patterns.some((p) => globMatch(p, name)));
  out.arrayHeader(matches.length * 2);
  for (const [name, value] of matches) {
    out.bulkString(name);
    out.bulkString(value);
  }
  return undefined;
}

/** Glob matching with `*` and `?` (the patterns of CONFIG GET); both sides already lowercase. */
export function globMatch(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1; // position in pattern after the last `*`
  let star_t = 0; // position in text that `*` is matched up to
  while (t < text.length) {
    if (p < pattern.length && (pattern[p] === "?" || pattern[p] === text[t])) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = ++p;
      star_t = t;
    } else if (star >= 0) {
      p = star;
      t = ++star_t;
    } else return false;
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

// ------------------------------------------------------------------------------------- COMMAND

/** COMMAND [COUNT | LIST | INFO name… | DOCS [name…]]. */
export function commandReply(
  commands: readonly RespCommand[],
  args: Uint8Array[],
  out: RespWriter,
): undefined {
  const subcommand = args.length === 0 ? "" : lowercase(args[0]!);
  const named = (names: Uint8Array[]) => names.map((n) => commands.find((c) => c.name === lowercase(n)));
  if (subcommand === "") {
    out.arrayHeader(commands.length);
    for (const c of commands) commandInfo(c, out);
  } else if (subcommand === "count" && args.length === 1) out.integer(commands.length);
  else if (subcommand === "list" && args.length === 1) {
    out.arrayHeader(commands.length);
    for (const c of commands) out.bulkString(c.name);
  } else if (subcommand === "info") {
    const found = named(args.slice(1));
    out.arrayHeader(found.length);
    for (const c of found) {
      if (c === undefined) out.arrayHeaderNil();
      else commandInfo(c, out);
    }
  } else if (subcommand === "docs") {
    const found = (args.length === 1 ? [...commands] : named(args.slice(1))).filter((c) => c !== undefined);
    out.arrayHeader(found.length * 2);
    for (const c of found) commandDocs(c, out);
  } else {
    throw new RespError(
      `ERR unknown subcommand or wrong number of arguments for '${subcommand.slice(0, 32)}'. Try COMMAND HELP.`,
    );
  }
  return undefined;
}

/** Redis 7's command info: name, arity, flags, first key, last key, step, ACL categories, tips, key specs, subcommands. */
function commandInfo(c: RespCommand, out: RespWriter): void {
  out.arrayHeader(10);
  out.bulkString(c.name);
  out.integer(c.arity);
  out.arrayHeader(c.flags.length);
  for (const flag of c.flags) out.simple(flag);
  out.integer(c.first_key);
  out.integer(c.last_key);
  out.integer(c.key_step);
  for (let i = 0; i < 4; i++) out.arrayHeader(0);
}

/** COMMAND DOCS entry (a RESP2 map as a flat array): name → {summary, since, group}. */
function commandDocs(c: RespCommand, out: RespWriter): void {
  out.bulkString(c.name);
  out.arrayHeader(6);
  for (const text of ["summary", c.summary, "since", VERSION, "group", c.group]) out.bulkString(text);
}
