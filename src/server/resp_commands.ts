/**
 * The RESP2 commands walkv answers (docs/resp.md), as a table: name, Redis-style arity, whether it
 * writes, what it may run before AUTH, its metric, and its `run`. Data commands call the shared ops
 * (ops.ts: limits, engine calls, auth); server commands (INFO, CONFIG, COMMAND) are in
 * resp_server.ts. Commands are found by their name's bytes, case-insensitively, without decoding.
 *
 * A `run` answers into `out` and returns undefined, or returns a promise (a write) whose result the
 * command's `reply` encodes. It throws to fail: a RespError carries its own error code (WRONGTYPE…);
 * other errors are mapped by their ops.ts code (resp_writer.ts respErrorText).
 *
 * @example
 * const command = findCommand(bytes, start, end); // undefined: unknown
 * command.run(session, request, out);
 */
import { VERSION } from "../cli/version.ts";
import type { WalEntry } from "../engine/wal/record.ts";
import {
  authenticate,
  checkKey,
  checkKeySize,
  checkValueSize,
  deleteKeys,
  opIndex,
  type Session,
  type SetWaiter,
  type WorkerContext,
  writeAll,
} from "./ops.ts";
import { latin1, type RespRequest, scratchKey } from "./resp_request.ts";
import { commandReply, configReply, infoReply } from "./resp_server.ts";
import { binSize, payloadStart } from "./resp_values.ts";
import { REPLY_OK, RespError, type RespWriter, replyBytes } from "./resp_writer.ts";

/** What a command runs with: the worker's context and this connection's session. */
export interface RespSession {
  readonly ctx: WorkerContext;
  readonly session: Session;
  /** A number naming this connection within its worker (HELLO's `id`). */
  readonly connection_id: number;
  /** A waiter that answers the running request with `+OK` or its failure (a coalesced SET). */
  readonly okWhenDone: () => SetWaiter;
}

/** `run`'s result for a request answered later through a {@link SetWaiter} it registered. */
export const ANSWERED_LATER = 1;

export interface RespCommand {
  /** Lowercase name. */
  readonly name: string;
  readonly name_bytes: Uint8Array;
  /** Redis's convention, the name included: n = exactly n, -n = at least n. */
  readonly arity: number;
  /** Writes start at once; every other command waits for the connection's earlier writes. */
  readonly writes: boolean;
  /** Runs on a connection that has not authenticated yet. */
  readonly before_auth: boolean;
  /** Metric (ops by name in `stats` and /metrics). */
  readonly op_index: number;
  /** For COMMAND and COMMAND DOCS. */
  readonly flags: readonly string[];
  readonly first_key: number;
  readonly last_key: number;
  readonly key_step: number;
  readonly group: string;
  readonly summary: string;
  readonly run: (
    s: RespSession,
    request: RespRequest,
    out: RespWriter,
  ) => Promise<unknown> | undefined | typeof ANSWERED_LATER;
  /** Encodes a write's result. */
  readonly reply: (result: unknown) => Uint8Array;
}

// ------------------------------------------------------------------------------------- data

function get(s: RespSession, request: RespRequest, out: RespWriter): undefined {
  const key_length = request.length(0);
  checkKeySize(s.ctx, key_length);
  out.storedBulk(s.ctx.engine, request.bytes, request.offset(0), key_length); // read in place: no copy
}

function set(s: RespSession, request: RespRequest): typeof ANSWERED_LATER {
  if (request.count > 2) {
    throw new RespError("ERR SET options (EX, PX, EXAT, PXAT, NX, XX, KEEPTTL, GET) are not supported yet");
  }
  s.ctx.sets.add(setArguments(s.ctx, request, 0), s.okWhenDone());
  return ANSWERED_LATER;
}

/**
 * Arguments `i` (the key) and `i + 1` (the value) as a SET entry, the limits checked (key first)
 * before anything is copied.
 */
function setArguments(ctx: WorkerContext, request: RespRequest, i: number): WalEntry {
  checkKeySize(ctx, request.length(i));
  checkValueSize(ctx, binSize(request.length(i + 1)));
  return request.setEntry(i, i + 1);
}

function del(s: RespSession, request: RespRequest): Promise<number> {
  return deleteKeys(s.ctx, distinct(request.views())); // deleteKeys checks every key first
}

/** `keys` without repeats (DEL a a removes one key), in first-seen order. */
function distinct(keys: Uint8Array[]): Uint8Array[] {
  if (keys.length === 1) return keys;
  const seen = new Set<string>();
  return keys.filter((key) => {
    const text = latin1.decode(key); // one code unit per byte, distinct per byte: injective
    if (seen.has(text)) return false;
    seen.add(text);
    return true;
  });
}

function exists(s: RespSession, request: RespRequest, out: RespWriter): undefined {
  let count = 0;
  for (let i = 0; i < request.count; i++) {
    checkKeySize(s.ctx, request.length(i)); // a reply is written only after every key passed
    if (s.ctx.engine.exists(scratchKey(request, i))) count++;
  }
  out.integer(count);
}

function mget(s: RespSession, request: RespRequest, out: RespWriter): undefined {
  const keys = request.views();
  for (const key of keys) checkKey(s.ctx, key);
  const values = s.ctx.engine.mget(keys);
  out.arrayHeader(values.length);
  for (const value of values) {
    const start = value === undefined ? -1 : payloadStart(value);
    if (start < 0) out.nil();
    else out.bulk(value!, start);
  }
}

function mset(s: RespSession, request: RespRequest): Promise<unknown> {
  if (request.count % 2 !== 0) throw new RespError("ERR wrong number of arguments for 'mset' command");
  const entries = [];
  for (let i = 0; i < request.count; i += 2) {
    entries.push(setArguments(s.ctx, request, i));
  }
  return writeAll(s.ctx, entries);
}

function dbsize(s: RespSession, _request: RespRequest, out: RespWriter): undefined {
  out.integer(s.ctx.engine.stats().keys);
}

// ------------------------------------------------------------------------------------- connection

function ping(_s: RespSession, request: RespRequest, out: RespWriter): undefined {
  if (request.count > 1) throw new RespError("ERR wrong number of arguments for 'ping' command");
  if (request.count === 0) out.raw(REPLY_PONG);
  else out.bulk(request.bytes, request.offset(0), request.offset(0) + request.length(0));
}

function echo(_s: RespSession, request: RespRequest, out: RespWriter): undefined {
  out.bulk(request.bytes, request.offset(0), request.offset(0) + request.length(0));
}

function select(_s: RespSession, request: RespRequest, out: RespWriter): undefined {
  const index = request.text(0);
  if (!/^-?\d{1,18}$/.test(index)) throw new RespError("ERR value is not an integer or out of range");
  if (Number(index) !== 0) throw new RespError("ERR DB index is out of range");
  out.raw(REPLY_OK);
}

/** AUTH token, or AUTH user token (the only user is `default`). */
function auth(s: RespSession, request: RespRequest, out: RespWriter): undefined {
  if (request.count > 2) throw new RespError("ERR syntax error");
  const user = request.count === 2 ? request.view(0) : undefined;
  authenticateAs(s, user, request.view(request.count - 1));
  out.raw(REPLY_OK);
}

const DEFAULT_USER = "default";

/** Authenticates `s` with `token` (as `user`, which must be `default`), or throws Redis's errors. */
function authenticateAs(s: RespSession, user: Uint8Array | undefined, token: Uint8Array): void {
  const known_user = user === undefined || latin1.decode(user) === DEFAULT_USER;
  const outcome = authenticate(s.ctx, s.session, known_user ? token : undefined);
  if (outcome === "not_configured") {
    throw new RespError(
      "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
    );
  }
  if (outcome === "wrong")
    throw new RespError("WRONGPASS invalid username-password pair or user is disabled.");
}

/** HELLO [protover [AUTH user token] [SETNAME name]]: RESP2 only; answers the server's facts. */
function hello(s: RespSession, request: RespRequest, out: RespWriter): undefined {
  if (request.count > 0 && request.text(0) !== "2") {
    throw new RespError("NOPROTO unsupported protocol version: walkv speaks RESP2 only");
  }
  for (let i = 1; i < request.count; ) {
    const option = request.text(i).toLowerCase();
    if (option === "auth" && i + 2 < request.count) {
      authenticateAs(s, request.view(i + 1), request.view(i + 2));
      i += 3;
    } else if (option === "setname" && i + 1 < request.count) i += 2;
    else throw new RespError(`ERR syntax error in HELLO option '${option.slice(0, 64)}'`);
  }
  if (!s.session.authenticated) {
    throw new RespError(
      "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
    );
  }
  const facts: Array<[string, string | number]> = [
    ["server", "walkv"],
    ["version", VERSION],
    ["proto", 2],
    ["id", s.connection_id],
    ["mode", "standalone"],
    ["role", "master"],
  ];
  out.arrayHeader(facts.length * 2 + 2);
  for (const [name, value] of facts) {
    out.bulkString(name);
    if (typeof value === "number") out.integer(value);
    else out.bulkString(value);
  }
  out.bulkString("modules");
  out.arrayHeader(0);
}

function quit(): never {
  throw new Error("QUIT is answered by the connection (resp_protocol.ts), never run");
}

// ------------------------------------------------------------------------------------- the table

const REPLY_PONG = new TextEncoder().encode("+PONG\r\n");
const replyOk = (): Uint8Array => REPLY_OK;
const replyInteger = (n: unknown): Uint8Array => replyBytes((w) => w.integer(n as number));
const replyNone = (): Uint8Array => {
  throw new Error("a command that does not write has no deferred reply");
};

type Spec = Omit<RespCommand, "name_bytes" | "op_index" | "reply" | "first_key" | "last_key" | "key_step"> & {
  readonly op: string;
  readonly keys?: readonly [number, number, number];
  readonly reply?: (result: unknown) => Uint8Array;
};

function command(spec: Spec): RespCommand {
  const [first_key, last_key, key_step] = spec.keys ?? [0, 0, 0];
  return {
    ...spec,
    name_bytes: new TextEncoder().encode(spec.name),
    op_index: opIndex(spec.op),
    first_key,
    last_key,
    key_step,
    reply: spec.reply ?? replyNone,
  };
}

const READ = { writes: false, before_auth: false } as const;
const WRITE = { writes: true, before_auth: false } as const;

/** Every command; QUIT is the connection's (resp_protocol.ts), listed for COMMAND. */
export const COMMANDS: readonly RespCommand[] = [
  command({
    name: "get",
    arity: 2,
    ...READ,
    op: "get",
    flags: ["readonly", "fast"],
    keys: [1, 1, 1],
    group: "string",
    summary: "Returns the value of a key (str or bin).",
    run: get,
  }),
  command({
    name: "set",
    arity: -3,
    ...WRITE,
    op: "set",
    flags: ["write", "denyoom"],
    keys: [1, 1, 1],
    group: "string",
    summary: "Sets a key to a value (stored as msgpack bin); answered once durable.",
    run: set,
    reply: replyOk,
  }),
  command({
    name: "del",
    arity: -2,
    ...WRITE,
    op: "del",
    flags: ["write"],
    keys: [1, -1, 1],
    group: "generic",
    summary: "Deletes keys in one atomic write; the number removed.",
    run: del,
    reply: replyInteger,
  }),
  command({
    name: "exists",
    arity: -2,
    ...READ,
    op: "exists",
    flags: ["readonly", "fast"],
    keys: [1, -1, 1],
    group: "generic",
    summary: "The number of the given keys that exist.",
    run: exists,
  }),
  command({
    name: "mget",
    arity: -2,
    ...READ,
    op: "mget",
    flags: ["readonly", "fast"],
    keys: [1, -1, 1],
    group: "string",
    summary: "The values of keys, all read at one point in time.",
    run: mget,
  }),
  command({
    name: "mset",
    arity: -3,
    ...WRITE,
    op: "mset",
    flags: ["write", "denyoom"],
    keys: [1, -1, 2],
    group: "string",
    summary: "Sets keys atomically: one WAL record, visible at once.",
    run: mset,
    reply: replyOk,
  }),
  command({
    name: "dbsize",
    arity: 1,
    ...READ,
    op: "stats",
    flags: ["readonly", "fast"],
    group: "server",
    summary: "The number of keys.",
    run: dbsize,
  }),
  command({
    name: "ping",
    arity: -1,
    ...READ,
    op: "ping",
    flags: ["fast"],
    group: "connection",
    summary: "PONG, or the argument.",
    run: ping,
  }),
  command({
    name: "echo",
    arity: 2,
    ...READ,
    op: "ping",
    flags: ["fast"],
    group: "connection",
    summary: "The argument.",
    run: echo,
  }),
  command({
    name: "select",
    arity: 2,
    ...READ,
    op: "other",
    flags: ["fast"],
    group: "connection",
    summary: "Only database 0 exists.",
    run: select,
  }),
  command({
    name: "auth",
    arity: -2,
    writes: false,
    before_auth: true,
    op: "auth",
    flags: ["noscript", "fast"],
    group: "connection",
    summary: "Authenticates with the token of --auth-token-file.",
    run: auth,
  }),
  command({
    name: "hello",
    arity: -1,
    writes: false,
    before_auth: true,
    op: "auth",
    flags: ["noscript", "fast"],
    group: "connection",
    summary: "Handshake: protocol 2 only; AUTH and SETNAME options.",
    run: hello,
  }),
  command({
    name: "info",
    arity: -1,
    ...READ,
    op: "stats",
    flags: ["loading", "stale"],
    group: "server",
    summary: "Server, clients, memory, persistence, stats and keyspace facts.",
    run: (s, request, out) => infoReply(s.ctx, request.views(), out),
  }),
  command({
    name: "config",
    arity: -2,
    ...READ,
    op: "other",
    flags: ["admin", "noscript", "loading", "stale"],
    group: "server",
    summary: "CONFIG GET: what redis-cli and redis-benchmark ask.",
    run: (s, request, out) => configReply(s.ctx, request.views(), out),
  }),
  command({
    name: "command",
    arity: -1,
    ...READ,
    op: "other",
    flags: ["loading", "stale"],
    group: "server",
    summary: "The commands walkv answers.",
    run: (_s, request, out) => commandReply(COMMANDS, request.views(), out),
  }),
  command({
    name: "quit",
    arity: -1,
    writes: false,
    before_auth: true,
    op: "other",
    flags: ["noscript", "fast"],
    group: "connection",
    summary: "Closes the connection after the earlier replies.",
    run: quit,
  }),
];

/** COMMANDS by name length: lookups compare a few names at most. */
const BY_LENGTH: RespCommand[][] = [];
for (const c of COMMANDS) {
  const same_length = BY_LENGTH[c.name.length] ?? [];
  same_length.push(c);
  BY_LENGTH[c.name.length] = same_length;
}

/** The command named by `bytes[start, end)` (any letter case), or undefined. */
export function findCommand(bytes: Uint8Array, start: number, end: number): RespCommand | undefined {
  const candidates = BY_LENGTH[end - start];
  if (candidates === undefined) return undefined;
  next: for (const candidate of candidates) {
    const name = candidate.name_bytes;
    // Names are letters only: b | 0x20 equals a lowercase letter exactly for it and its capital.
    for (let i = 0; i < name.length; i++) if ((bytes[start + i]! | 0x20) !== name[i]) continue next;
    return candidate;
  }
  return undefined;
}

export const QUIT = COMMANDS.find((c) => c.name === "quit")!;
/** GET: the command RespProtocol.answerReads answers past the general reader. */
export const GET = COMMANDS.find((c) => c.name === "get")!;
