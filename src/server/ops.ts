/**
 * Protocol v1 operations (docs/protocol.md): decodes one request frame, runs it on the engine, and
 * encodes its response `[id, code, result]`. Reads answer at once; writes answer when durable.
 *
 * @example
 * const request = parseRequest(context, frame, out); // undefined: a bad envelope, answered in `out`
 * const pending = request && execute(context, session, request, out);
 * // undefined: the response is already in `out`; else a promise of the encoded response bytes
 */

import type { Engine } from "../engine/engine.ts";
import { InvalidError, TooLargeError, WalkvError } from "../engine/errors.ts";
import { OP_SET } from "../engine/wal/format.ts";
import type { WalEntry } from "../engine/wal/record.ts";
import type { ServerConfig } from "./config.ts";
import { type Metrics, OPS, type OpName } from "./metrics.ts";
import { MsgReader, MsgWriter } from "./msgpack.ts";
import { packr } from "./pack.ts";

export const CODE_OK = 0;
export const CODE_BAD_REQUEST = 1;
export const CODE_TOO_LARGE = 2;
export const CODE_UNAVAILABLE = 3;
export const CODE_AUTH_REQUIRED = 4;

/** What every connection of a worker shares. */
export interface WorkerContext {
  readonly engine: Engine;
  readonly config: ServerConfig;
  readonly metrics: Metrics;
  /** Runs a checkpoint and resolves with `{lsn, bytes, ms}`. */
  readonly checkpoint: () => Promise<{ lsn: number; bytes: number; ms: number }>;
  /** Extra `stats` fields (connections, ops by type…). */
  readonly serverStats: () => Record<string, unknown>;
  /** True once the daemon is shutting down: connections finish what they have, then end. */
  readonly draining: () => boolean;
}

/** Per-connection protocol state. */
export interface Session {
  authenticated: boolean;
}

/** A request that failed validation: answered with `code` and `message`. */
class RequestError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const OP_INDEX = new Map<string, number>(OPS.map((name, i) => [name, i]));
const OTHER = OPS.indexOf("other");

/** A request whose envelope `[id, op, ...args]` was decoded; `reader` is positioned at the args. */
export interface ParsedRequest {
  readonly id: number;
  readonly op: string;
  readonly op_index: number;
  readonly argc: number;
  readonly reader: MsgReader;
  readonly started_ms: number;
}

/** Ops that only read: on a connection they wait for the writes sent before them. */
const READS = new Set(["ping", "get", "exists", "mget", "stats", "auth"]);

/** True if `request` must not run before the connection's earlier writes complete. */
export function mustFollowWrites(request: ParsedRequest): boolean {
  return READS.has(request.op) || request.op_index === OTHER;
}

/**
 * Decodes the envelope of a frame. A malformed one is answered in `out` with code 1 and the frame's
 * id (0 if unreadable); then undefined is returned.
 */
export function parseRequest(
  ctx: WorkerContext,
  frame: Uint8Array,
  out: MsgWriter,
): ParsedRequest | undefined {
  const started_ms = performance.now();
  const reader = new MsgReader(frame, 0, frame.length);
  const argc = reader.arrayHeader() - 2;
  const id = argc >= 0 ? reader.uint() : -1;
  const op = id >= 0 ? reader.string() : undefined;
  if (argc < 0 || id < 0 || op === undefined) {
    writeResponse(
      out,
      Math.max(0, id),
      CODE_BAD_REQUEST,
      "request must be an array [id, op, ...args] with id a uint32 and op a string",
    );
    ctx.metrics.record(OTHER, elapsedUs(started_ms), true);
    return undefined;
  }
  const op_index = OP_INDEX.get(op) ?? OTHER;
  if (hasTrailingBytes(reader, argc)) {
    writeResponse(
      out,
      id,
      CODE_BAD_REQUEST,
      "a frame must hold exactly one msgpack value: bytes after the request",
    );
    ctx.metrics.record(op_index, elapsedUs(started_ms), true);
    return undefined;
  }
  return { id, op, op_index, argc, reader, started_ms };
}

/**
 * True if the frame has bytes after the request's `argc` arguments. A malformed argument gives
 * false: the op itself reports it, with a precise message.
 */
function hasTrailingBytes(r: MsgReader, argc: number): boolean {
  const probe = new MsgReader(r.bytes, r.pos, r.end);
  for (let i = 0; i < argc; i++) if (!probe.skip()) return false;
  return !probe.atEnd();
}

/**
 * Runs one request. Sync ops write their response into `out` and return undefined; writes return a
 * promise of their encoded response (the caller keeps responses in request order).
 */
export function execute(
  ctx: WorkerContext,
  session: Session,
  request: ParsedRequest,
  out: MsgWriter,
): Promise<Uint8Array> | undefined {
  const { id, op, op_index, started_ms } = request;
  try {
    if (!session.authenticated && op !== "auth") {
      throw new RequestError(CODE_AUTH_REQUIRED, 'authentication required: send [id, "auth", token] first');
    }
    const result = run(ctx, session, op, request.reader, request.argc);
    if (result instanceof Promise) return settle(ctx, id, op_index, started_ms, result);
    writeResponse(out, id, CODE_OK, result, ctx.config.max_frame_bytes);
    ctx.metrics.record(op_index, elapsedUs(started_ms), false);
  } catch (error) {
    writeError(out, id, error);
    ctx.metrics.record(op_index, elapsedUs(started_ms), true);
  }
  return undefined;
}

function settle(
  ctx: WorkerContext,
  id: number,
  op_index: number,
  started: number,
  result: Promise<Result>,
): Promise<Uint8Array> {
  return result.then(
    (value) => {
      ctx.metrics.record(op_index, elapsedUs(started), false);
      const w = new MsgWriter(64);
      writeResponse(w, id, CODE_OK, value, ctx.config.max_frame_bytes);
      return w.take();
    },
    (error: unknown) => {
      ctx.metrics.record(op_index, elapsedUs(started), true);
      const w = new MsgWriter(256);
      writeError(w, id, error);
      return w.take();
    },
  );
}

/** A result: raw msgpack bytes (a stored value), an array of them (mget), or a plain JS value. */
type Result = RawValue | Array<RawValue | undefined> | string | boolean | null | Record<string, unknown>;

class RawValue {
  constructor(readonly bytes: Uint8Array) {}
}

function run(
  ctx: WorkerContext,
  session: Session,
  op: string,
  r: MsgReader,
  argc: number,
): Result | Promise<Result> {
  const e = ctx.engine;
  switch (op) {
    case "ping":
      arity(op, argc, 0, 0);
      return "pong";
    case "get": {
      arity(op, argc, 1, 1);
      const value = e.get(key(ctx, r));
      return value === undefined ? null : new RawValue(value);
    }
    case "exists":
      arity(op, argc, 1, 1);
      return e.exists(key(ctx, r));
    case "set": {
      arity(op, argc, 2, 3);
      const k = key(ctx, r).slice(); // kept until the write is durable: not a view of the frame
      const v = value(ctx, r);
      if (argc === 3) options(r);
      return e.set(k, v).then(() => true);
    }
    case "del":
      arity(op, argc, 1, 1);
      return e.del(key(ctx, r).slice());
    case "mget": {
      arity(op, argc, 1, 1);
      const n = r.arrayHeader();
      if (n < 0) throw new RequestError(CODE_BAD_REQUEST, "mget takes an array of keys");
      const keys: Uint8Array[] = [];
      for (let i = 0; i < n; i++) keys.push(key(ctx, r));
      return e.mget(keys).map((v) => (v === undefined ? undefined : new RawValue(v)));
    }
    case "mset":
      arity(op, argc, 1, 1);
      return e.write(pairs(ctx, r)).then(() => true);
    case "stats":
      arity(op, argc, 0, 0);
      return { ...e.stats(), ...ctx.serverStats() } as Record<string, unknown>;
    case "checkpoint":
      arity(op, argc, 0, 0);
      return ctx.checkpoint();
    case "auth":
      return authenticate(ctx, session, r, argc);
    default:
      throw new RequestError(CODE_BAD_REQUEST, `unknown op "${op.slice(0, 64)}"`);
  }
}

function arity(op: string, argc: number, min: number, max: number): void {
  if (argc < min || argc > max) {
    const want = min === max ? `${min}` : `${min} to ${max}`;
    throw new RequestError(
      CODE_BAD_REQUEST,
      `${op} takes ${want} argument${max === 1 ? "" : "s"}, got ${argc}`,
    );
  }
}

/** A key: msgpack str or bin, compared as bytes. Copied out of the frame. */
function key(ctx: WorkerContext, r: MsgReader): Uint8Array {
  const bytes = r.bytesOrString();
  if (bytes === undefined) throw new RequestError(CODE_BAD_REQUEST, "a key must be a msgpack str or bin");
  if (bytes.length > ctx.config.engine.max_key_bytes) {
    throw new RequestError(
      CODE_TOO_LARGE,
      `key of ${bytes.length} bytes is over the limit of ${ctx.config.engine.max_key_bytes}`,
    );
  }
  return bytes;
}

/** A value: exactly one msgpack value, kept as its encoded bytes. */
function value(ctx: WorkerContext, r: MsgReader): Uint8Array {
  const start = r.pos;
  if (!r.skip()) throw new RequestError(CODE_BAD_REQUEST, "a value must be one well-formed msgpack value");
  const bytes = r.bytes.subarray(start, r.pos);
  if (bytes.length > ctx.config.engine.max_value_bytes) {
    throw new RequestError(
      CODE_TOO_LARGE,
      `value of ${bytes.length} bytes is over the limit of ${ctx.config.engine.max_value_bytes}`,
    );
  }
  return bytes;
}

/** `set` options: reserved for conditional and expiring writes; only an empty map (or nil) for now. */
function options(r: MsgReader): void {
  if (r.nil()) return;
  const n = r.mapHeader();
  if (n !== 0) throw new RequestError(CODE_BAD_REQUEST, "set options are reserved: pass an empty map or nil");
}

function pairs(ctx: WorkerContext, r: MsgReader): WalEntry[] {
  const n = r.arrayHeader();
  if (n < 2 || n % 2 !== 0)
    throw new RequestError(
      CODE_BAD_REQUEST,
      "mset takes an array [k1, v1, k2, v2, …] with at least one pair",
    );
  const entries: WalEntry[] = [];
  for (let i = 0; i < n; i += 2) {
    entries.push({ op: OP_SET, key: key(ctx, r).slice(), value: value(ctx, r), expiry_unix_ms: 0 });
  }
  return entries;
}

function authenticate(ctx: WorkerContext, session: Session, r: MsgReader, argc: number): boolean {
  arity("auth", argc, 1, 1);
  const token = ctx.config.auth_token;
  if (token === undefined)
    throw new RequestError(CODE_BAD_REQUEST, "auth: no token is configured on this server");
  const given = r.bytesOrString();
  if (given === undefined || !sameBytes(given, new TextEncoder().encode(token))) {
    session.authenticated = false;
    throw new RequestError(CODE_AUTH_REQUIRED, "auth: wrong token");
  }
  session.authenticated = true;
  return true;
}

/** Constant-time comparison (time depends on the lengths only). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i]!;
  return diff === 0;
}

/**
 * Writes one response frame `[id, code, result]`. A response over the frame limit is replaced by
 * `[id, 2, message]`.
 */
export function writeResponse(
  w: MsgWriter,
  id: number,
  code: number,
  result: Result,
  max_frame_bytes = Infinity,
): void {
  const start = w.beginFrame();
  w.arrayHeader(3);
  w.uint(id);
  w.uint(code);
  writeResult(w, result);
  const body_bytes = w.endFrame(start);
  if (body_bytes <= max_frame_bytes) return;
  w.truncate(start);
  writeResponse(
    w,
    id,
    CODE_TOO_LARGE,
    `response of ${body_bytes} bytes is over the frame limit of ${max_frame_bytes}`,
  );
}

function writeResult(w: MsgWriter, result: Result): void {
  if (result instanceof RawValue) w.raw(result.bytes);
  else if (result === null) w.nil();
  else if (typeof result === "boolean") w.bool(result);
  else if (typeof result === "string") w.string(result);
  else if (Array.isArray(result)) {
    w.arrayHeader(result.length);
    for (const v of result) {
      if (v === undefined) w.nil();
      else w.raw(v.bytes);
    }
  } else w.raw(packr.pack(result));
}

/** Maps an error onto a response code and a human-readable message. */
export function writeError(w: MsgWriter, id: number, error: unknown): void {
  const [code, message] = classify(error);
  writeResponse(w, id, code, message);
}

function classify(error: unknown): [number, string] {
  if (error instanceof RequestError) return [error.code, error.message];
  if (error instanceof TooLargeError) return [CODE_TOO_LARGE, error.message];
  if (error instanceof InvalidError) return [CODE_BAD_REQUEST, error.message];
  if (error instanceof WalkvError && error.code === "unavailable") return [CODE_UNAVAILABLE, error.message];
  return [CODE_UNAVAILABLE, `internal error: ${error instanceof Error ? error.message : String(error)}`];
}

function elapsedUs(started: number): number {
  return (performance.now() - started) * 1000;
}

export type { OpName };
