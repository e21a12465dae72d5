/**
 * Protocol v1 (docs/protocol.md) as a {@link Protocol} of a Connection: frames of a 4-byte big-endian
 * length and one msgpack value; requests `[id, op, ...args]`, responses `[id, code, result]`. The ops
 * themselves (limits, engine calls, auth) are ops.ts's; this module decodes and encodes.
 *
 * - A frame whose length is 0 or over `max_frame_bytes` gets `[0, 2, message]` and the connection is
 *   closed (the stream can no longer be trusted to be in step).
 * - A body that is not a well-formed envelope gets code 1 with the request's id (0 if unreadable).
 *
 * @example
 * new Connection(socket, new MsgpackProtocol(ctx), ctx, onClose);
 */

import { readU32BE } from "../engine/bytes.ts";
import type { KeyFinder } from "../engine/engine.ts";
import { assert } from "../engine/errors.ts";
import { setEntryIn, type WalEntry } from "../engine/wal/record.ts";
import { Final, type Protocol, type Responder, respondWhenSettled, type SetGroupSlot } from "./connection.ts";
import { OPS } from "./metrics.ts";
import { MsgReader, MsgWriter } from "./msgpack.ts";
import {
  authenticate,
  CODE_AUTH_REQUIRED,
  CODE_BAD_REQUEST,
  CODE_OK,
  CODE_TOO_LARGE,
  CODE_UNAVAILABLE,
  checkKey,
  checkKeySize,
  checkValueSize,
  classify,
  deleteKeys,
  groupEntryBytes,
  newSession,
  OP_OTHER,
  opIndex,
  RequestError,
  recordOp,
  type Session,
  SetAnswer,
  type WorkerContext,
  writeAll,
} from "./ops.ts";
import { packr } from "./pack.ts";
import type { ValueSource } from "./slab_writer.ts";

const FRAME_HEADER_BYTES = 4;

/**
 * A request whose envelope `[id, op, ...args]` was decoded; `reader` is positioned at the args. A
 * connection decodes every frame into the same object ({@link MsgpackProtocol.retain} copies one that
 * must wait).
 */
export class ParsedRequest {
  id = 0;
  op = "";
  op_index = OP_OTHER;
  argc = 0;
  readonly reader: MsgReader;
  started_ms = 0;
  /** Set if the envelope is malformed: the request is answered with code 1 and this message. */
  bad: string | undefined = undefined;

  constructor(reader = new MsgReader(new Uint8Array(0), 0, 0)) {
    this.reader = reader;
  }

  /** A copy that keeps this request's fields and reader position. */
  copy(): ParsedRequest {
    const r = this.reader;
    const copy = new ParsedRequest(new MsgReader(r.bytes, r.pos, r.end));
    copy.id = this.id;
    copy.op = this.op;
    copy.op_index = this.op_index;
    copy.argc = this.argc;
    copy.started_ms = this.started_ms;
    copy.bad = this.bad;
    return copy;
  }
}

/** The ops' names as msgpack fixstr payloads: a request's op is recognised without decoding it. */
const OP_NAMES = OPS.map((name) => ({ name, bytes: new TextEncoder().encode(name) }));

/**
 * Responses of writes (settled later than the request): their bytes are views of this writer's slab,
 * never overwritten, so one writer serves every connection of this worker without a copy each.
 */
const settled = new MsgWriter(64 * 1024);

/** Ops that only read: on a connection they wait for the writes sent before them. */
const OP_GET = opIndex("get");
/** The SETs {@link MsgpackProtocol.takeSets} starts as one group, their ids, and its reader (reused). */
const set_group: WalEntry[] = [];
const set_ids: number[] = [];
const set_reader = new MsgReader(new Uint8Array(0), 0, 0);
const READS = new Set(["ping", "get", "exists", "mget", "stats", "auth"]);

export class MsgpackProtocol implements Protocol<ParsedRequest, MsgWriter> {
  next_start = 0;
  private readonly session: Session;
  /** Every frame is decoded into this object: no allocation per request. */
  private readonly current = new ParsedRequest();

  constructor(private readonly ctx: WorkerContext) {
    this.session = newSession(ctx);
  }

  next(bytes: Uint8Array, start: number, end: number, arrived_ms: number): ParsedRequest | Final | undefined {
    this.next_start = start;
    if (end - start < FRAME_HEADER_BYTES) return undefined;
    const length = readU32BE(bytes, start);
    const max = this.ctx.config.max_frame_bytes;
    if (length === 0 || length > max) {
      const reason = length === 0 ? "empty frame" : `frame of ${length} bytes is over the limit of ${max}`;
      return new Final(responseBytes(0, CODE_TOO_LARGE, `${reason}; closing the connection`));
    }
    const body = start + FRAME_HEADER_BYTES;
    if (end - body < length) return undefined;
    this.next_start = body + length;
    return parseRequest(this.current, bytes, body, body + length, arrived_ms);
  }

  /** Touches the table lines of the chunk's GETs (findGetKeys). */
  prefetch(bytes: Uint8Array, start: number, end: number): void {
    this.ctx.engine.touchKeys(bytes, start, end, findGetKeys);
  }

  /**
   * Answers the whole GET frames `[id, "get", key]` that open the chunk as `execute` would:
   * `[id, 0, value]`, or `[id, 0, nil]`. Stops at a frame of any other shape (an id that is not a
   * uint32 included), or one whose key is over `--max-key-bytes` or whose response would pass
   * `--max-frame-bytes`: `next` and `execute` answer those with their error. Before authentication
   * it answers nothing (GET needs it).
   */
  answerReads(bytes: Uint8Array, start: number, end: number, out: MsgWriter, arrived_ms: number): number {
    const { ctx } = this;
    if (!this.session.authenticated) return start;
    const { max_frame_bytes } = ctx.config;
    const { max_key_bytes } = ctx.config.engine;
    let pos = start;
    let answered = 0;
    while (pos + FRAME_HEADER_BYTES <= end) {
      const length = readU32BE(bytes, pos);
      const body = pos + FRAME_HEADER_BYTES;
      const frame_end = body + length;
      if (length > max_frame_bytes || frame_end > end) break;
      const key = getKeyStart(bytes, body, frame_end);
      const id = key < 0 ? -1 : requestId(bytes, body + 1);
      if (id < 0 || frame_end - key > max_key_bytes) break;
      const frame = out.beginFrame();
      out.arrayHeader(3);
      out.uint(id);
      out.uint(CODE_OK);
      if (!out.stored(ctx.engine, bytes, key, frame_end - key)) out.nil();
      if (out.endFrame(frame) > max_frame_bytes) {
        out.truncate(frame);
        break;
      }
      answered++;
      pos = frame_end;
    }
    if (answered === 0) return start;
    const done_ms = performance.now();
    for (let i = 0; i < answered; i++) recordOp(ctx, OP_GET, arrived_ms, false, done_ms);
    return pos;
  }

  /**
   * Starts the whole SET frames `[id, "set", key, value]` that open the chunk as one coalesced
   * group, answered `[id, 0, true]` each once visible, or each with the batch's failure: an id of a
   * uint32 encoding, a key a str or bin, a value one well-formed msgpack value that ends the frame. Stops
   * before any other frame, one over `--max-frame-bytes`, or one whose key or value is over its
   * limit (`next` and `execute` answer those with their error), or that would make the group larger
   * than one batch; before authentication it takes nothing.
   */
  takeSets(bytes: Uint8Array, start: number, end: number, answer: SetGroupSlot): number {
    const { ctx } = this;
    if (!this.session.authenticated) return 0;
    const { max_frame_bytes } = ctx.config;
    const group = set_group;
    let size_bytes = 0;
    let pos = start;
    const r = set_reader;
    while (group.length < answer.max_count && pos + FRAME_HEADER_BYTES <= end) {
      const length = readU32BE(bytes, pos);
      const body = pos + FRAME_HEADER_BYTES;
      const frame_end = body + length;
      if (length > max_frame_bytes || frame_end > end) break;
      // [id, "set", key, value]: read as parseRequest and setPair read it.
      r.reset(bytes, body, frame_end);
      if (r.arrayHeader() !== 4) break;
      const id = r.uint();
      if (id < 0 || !atOp(r, SET_OP)) break;
      const key_length = r.payload();
      const value = r.pos;
      if (key_length < 0 || !r.skip() || !r.atEnd()) break;
      const value_length = frame_end - value;
      const entry_bytes = groupEntryBytes(ctx, group.length, size_bytes, key_length, value_length);
      if (entry_bytes < 0) break;
      group.push(setEntryIn(bytes, value - key_length, key_length, bytes, value, value_length, 0));
      set_ids.push(id);
      size_bytes += entry_bytes;
      pos = frame_end;
    }
    const count = group.length;
    this.next_start = pos;
    if (count === 0) return 0;
    const ids = consecutive(set_ids) ? set_ids[0]! : set_ids.slice();
    ctx.sets.addGroup(
      group,
      size_bytes,
      new TrueWhenDone(ctx, answer.responder, answer.slot, answer.arrived_ms, ids, count),
    );
    group.length = 0;
    set_ids.length = 0;
    return count;
  }

  /** The decoded request is reused for the next frame: one that must wait is copied. */
  retain(request: ParsedRequest): ParsedRequest {
    return request.copy();
  }

  /** A malformed envelope is answered at once, in order; reads and unknown ops follow writes. */
  mustFollowWrites(request: ParsedRequest): boolean {
    if (request.bad !== undefined) return false;
    return READS.has(request.op) || request.op_index === OP_OTHER;
  }

  execute(request: ParsedRequest, out: MsgWriter, responder: Responder, slot: number): boolean {
    return execute(this.ctx, this.session, request, out, responder, slot);
  }

  writer(initial_bytes: number): MsgWriter {
    return new MsgWriter(initial_bytes);
  }
}

/** `[0xa3 "get"]`: the op of a GET. */
const GET_OP = [0xa3, 0x67, 0x65, 0x74];

/**
 * Finds the keys of the GETs among the whole frames that open `bytes[start, end)`: key i is
 * `bytes[key_starts[i], key_ends[i])`, for i < the count returned (a KeyFinder). A
 * GET is a frame `[id, "get", key]`: a fixarray of 3, a uint id, the op as a fixstr, the key a str or
 * bin whose payload ends the frame; other frames are skipped. A hint for Engine.touchKeys that reads
 * ahead of `next`, which reads (and checks) the requests themselves.
 *
 * @example
 * engine.touchKeys(bytes, start, end, findGetKeys); // in a protocol's prefetch
 */
export const findGetKeys: KeyFinder = (bytes, start, end, key_starts, key_ends) => {
  let n = 0;
  for (let pos = start; n < key_starts.length && pos + FRAME_HEADER_BYTES <= end; ) {
    const body = pos + FRAME_HEADER_BYTES;
    const frame_end = body + readU32BE(bytes, pos);
    if (frame_end <= body || frame_end > end) return n;
    const key = getKeyStart(bytes, body, frame_end);
    if (key >= 0) {
      key_starts[n] = key;
      key_ends[n] = frame_end;
      n++;
    }
    pos = frame_end;
  }
  return n;
};

/** Where the key's payload starts in a GET frame's body `bytes[body, frame_end)`, or -1 if it is not one. */
function getKeyStart(bytes: Uint8Array, body: number, frame_end: number): number {
  if (frame_end - body < 2 || bytes[body] !== 0x93) return -1;
  const id = bytes[body + 1]!;
  const id_bytes = id < 0x80 ? 1 : id >= 0xcc && id <= 0xcf ? 1 + (1 << (id - 0xcc)) : -1;
  // Then the op and at least the key's header byte: all inside the frame, or it is not a GET.
  if (id_bytes < 0 || body + 1 + id_bytes + GET_OP.length + 1 > frame_end) return -1;
  let pos = body + 1 + id_bytes;
  for (let i = 0; i < GET_OP.length; i++) if (bytes[pos + i] !== GET_OP[i]) return -1;
  pos += GET_OP.length;
  const header = bytes[pos]!;
  const key = header >= 0xa0 && header <= 0xbf ? pos + 1 : header === 0xc4 || header === 0xd9 ? pos + 2 : -1;
  if (key < 0 || key > frame_end) return -1;
  const length = key === pos + 1 ? header - 0xa0 : bytes[pos + 1]!;
  return key + length === frame_end ? key : -1;
}

/** `[0xa3 "set"]`: the op of a SET. */
const SET_OP = [0xa3, 0x73, 0x65, 0x74];

/** True if `r` is at the op `op` (its fixstr bytes), which it then consumes. */
function atOp(r: MsgReader, op: readonly number[]): boolean {
  if (r.pos + op.length > r.end) return false;
  for (let i = 0; i < op.length; i++) if (r.bytes[r.pos + i] !== op[i]) return false;
  r.pos += op.length;
  return true;
}

/**
 * The request id whose first byte is at `at`, as MsgReader.uint reads it (a positive fixint or a
 * uint8/16/32; the caller knows its bytes are in the frame), or -1 for any other encoding.
 */
function requestId(bytes: Uint8Array, at: number): number {
  const b = bytes[at]!;
  if (b <= 0x7f) return b;
  if (b === 0xcc) return bytes[at + 1]!;
  if (b === 0xcd) return (bytes[at + 1]! << 8) | bytes[at + 2]!;
  if (b === 0xce) return readU32BE(bytes, at + 1);
  return -1;
}

/** The answer that refuses a connection (too many, shutting down): `[0, 3, reason]`. */
export function msgpackRefusal(reason: string): Uint8Array {
  return responseBytes(0, CODE_UNAVAILABLE, reason);
}

/** Decodes the envelope of the frame body `bytes[start, end)` into `request`. */
function parseRequest(
  request: ParsedRequest,
  bytes: Uint8Array,
  start: number,
  end: number,
  arrived_ms: number,
): ParsedRequest {
  request.started_ms = arrived_ms;
  const reader = request.reader;
  reader.reset(bytes, start, end);
  const argc = reader.arrayHeader() - 2;
  const id = argc >= 0 ? reader.uint() : -1;
  const op = id >= 0 ? opName(reader) : undefined;
  if (argc < 0 || id < 0 || op === undefined) {
    request.id = Math.max(0, id);
    request.op = "";
    request.op_index = OP_OTHER;
    request.argc = 0;
    request.bad = "request must be an array [id, op, ...args] with id a uint32 and op a string";
    return request;
  }
  request.id = id;
  request.op = op;
  request.op_index = opIndex(op);
  request.argc = argc;
  request.bad = hasTrailingBytes(reader, argc)
    ? "a frame must hold exactly one msgpack value: bytes after the request"
    : undefined;
  return request;
}

/** The op name at the reader: a known op's interned name (no decoding), else the decoded str. */
function opName(r: MsgReader): string | undefined {
  const head = r.bytes[r.pos];
  if (head !== undefined && head >= 0xa0 && head <= 0xbf && r.pos < r.end) {
    const length = head & 0x1f;
    const at = r.pos + 1;
    if (at + length <= r.end) {
      for (const op of OP_NAMES) {
        if (op.bytes.length === length && sameBytesAt(r.bytes, at, op.bytes)) {
          r.pos = at + length;
          return op.name;
        }
      }
    }
  }
  return r.string();
}

function sameBytesAt(bytes: Uint8Array, at: number, expected: Uint8Array): boolean {
  for (let i = 0; i < expected.length; i++) if (bytes[at + i] !== expected[i]) return false;
  return true;
}

/**
 * True if the frame has bytes after the request's `argc` arguments. A malformed argument gives
 * false: the op itself reports it, with a precise message.
 */
function hasTrailingBytes(r: MsgReader, argc: number): boolean {
  const args_pos = r.pos;
  let trailing = true;
  for (let i = 0; i < argc && trailing; i++) trailing = r.skip();
  trailing &&= !r.atEnd();
  r.pos = args_pos;
  return trailing;
}

/**
 * Runs one request. Sync ops write their response into `out` and return false; writes return true
 * and answer `slot` through `responder` once visible (the connection keeps responses in order).
 */
function execute(
  ctx: WorkerContext,
  session: Session,
  request: ParsedRequest,
  out: MsgWriter,
  responder: Responder,
  slot: number,
): boolean {
  const { id, op, op_index, started_ms } = request;
  const mark = out.length;
  try {
    if (request.bad !== undefined) throw new RequestError(CODE_BAD_REQUEST, request.bad);
    if (!session.authenticated && op !== "auth") {
      throw new RequestError(CODE_AUTH_REQUIRED, 'authentication required: send [id, "auth", token] first');
    }
    if (op === "set") {
      const entry = setRequest(ctx, request.reader, request.argc);
      ctx.sets.add(entry, new TrueWhenDone(ctx, responder, slot, started_ms, id, 1));
      return true;
    }
    const result = run(ctx, session, op, request.reader, request.argc);
    if (result instanceof Acknowledged) {
      return respondWhenSettled(
        settle(ctx, id, op_index, started_ms, result.write, alwaysTrue),
        responder,
        slot,
      );
    }
    if (result instanceof Promise) {
      return respondWhenSettled(settle(ctx, id, op_index, started_ms, result, asResult), responder, slot);
    }
    writeResponse(out, id, CODE_OK, result, ctx.config.max_frame_bytes);
    recordOp(ctx, op_index, started_ms, false);
  } catch (error) {
    out.truncate(mark); // a response half written when the error came (a StoredRead) goes
    writeError(out, id, error);
    recordOp(ctx, op_index, started_ms, true);
  }
  return false;
}

/** `set`'s arguments `key, value[, options]` as a validated SET entry (coalesced: see SetCoalescer). */
function setRequest(ctx: WorkerContext, r: MsgReader, argc: number): WalEntry {
  arity("set", argc, 2, 3);
  const entry = setPair(ctx, r);
  if (argc === 3) options(r);
  return entry;
}

/**
 * A key and a value as a SET entry whose ranges are the request's bytes (no view, no copy), each
 * checked against its limit, the key's before the value is read.
 */
function setPair(ctx: WorkerContext, r: MsgReader): WalEntry {
  const key_length = r.payload();
  if (key_length < 0) throw new RequestError(CODE_BAD_REQUEST, "a key must be a msgpack str or bin");
  checkKeySize(ctx, key_length);
  const key_start = r.pos - key_length;
  const value_start = r.pos;
  if (!r.skip()) throw new RequestError(CODE_BAD_REQUEST, "a value must be one well-formed msgpack value");
  checkValueSize(ctx, r.pos - value_start);
  return setEntryIn(r.bytes, key_start, key_length, r.bytes, value_start, r.pos - value_start, 0);
}

/**
 * A coalesced `set`'s answer: `[id, 0, true]` once visible, else `[id, code, message]`, for each of
 * the `count` SETs it answers (one, or a group's: takeSets). `ids` is their ids, or the first of
 * them when they run on by one (as a client numbering its requests sends them: no array then).
 */
class TrueWhenDone extends SetAnswer {
  constructor(
    ctx: WorkerContext,
    responder: Responder,
    slot: number,
    started_ms: number,
    private readonly ids: number | readonly number[],
    count: number,
  ) {
    super(ctx, responder, slot, started_ms, count);
    assert(typeof ids === "number" || ids.length === count, "one id per SET answered");
  }

  protected response(failure: unknown): Uint8Array {
    const { ids } = this;
    for (let i = 0; i < this.requests; i++) {
      const id = typeof ids === "number" ? ids + i : ids[i]!;
      if (failure === undefined) settled.trueResponse(id);
      else writeError(settled, id, failure);
    }
    return settled.take();
  }
}

/** True if `ids` run on by one from the first (each the one before plus 1). */
function consecutive(ids: readonly number[]): boolean {
  for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[0]! + i) return false;
  return true;
}

function settle(
  ctx: WorkerContext,
  id: number,
  op_index: number,
  started_ms: number,
  result: Promise<unknown>,
  toResult: (value: unknown) => Result,
): Promise<Uint8Array> {
  return result.then(
    (value) => {
      recordOp(ctx, op_index, started_ms, false);
      writeResponse(settled, id, CODE_OK, toResult(value), ctx.config.max_frame_bytes);
      return settled.take();
    },
    (error: unknown) => {
      recordOp(ctx, op_index, started_ms, true);
      writeError(settled, id, error);
      return settled.take();
    },
  );
}

/**
 * A result: a stored value to read as the response is written, raw msgpack bytes (stored values),
 * an array of them (mget), or a plain JS value.
 */
type Result =
  | StoredRead
  | RawValue
  | Array<RawValue | undefined>
  | string
  | boolean
  | null
  | Record<string, unknown>;

class RawValue {
  constructor(readonly bytes: Uint8Array) {}
}

/** A write whose response is `true` once it is visible, whatever it resolves to (set, mset). */
class Acknowledged {
  constructor(readonly write: Promise<unknown>) {}
}

const alwaysTrue = (): Result => true;
const asResult = (value: unknown): Result => value as Result;

/**
 * `get`'s result: the key's value, copied from the table straight into the response when it is
 * written — at once, in the same call as the request runs (reads never wait once running).
 */
class StoredRead {
  constructor(
    readonly source: ValueSource,
    readonly key: Uint8Array,
  ) {}
}

function run(
  ctx: WorkerContext,
  session: Session,
  op: string,
  r: MsgReader,
  argc: number,
): Result | Promise<Result> | Acknowledged {
  const e = ctx.engine;
  switch (op) {
    case "ping":
      arity(op, argc, 0, 0);
      return "pong";
    case "get": {
      arity(op, argc, 1, 1);
      return new StoredRead(e, readKey(ctx, r));
    }
    case "exists":
      arity(op, argc, 1, 1);
      return e.exists(readKey(ctx, r));
    case "del":
      arity(op, argc, 1, 1);
      return deleteKeys(ctx, [key(ctx, r)]).then((removed) => removed === 1);
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
      return new Acknowledged(writeAll(ctx, pairs(ctx, r)));
    case "stats":
      arity(op, argc, 0, 0);
      return { ...e.stats(), ...ctx.serverStats() } as Record<string, unknown>;
    case "checkpoint":
      arity(op, argc, 0, 0);
      return ctx.checkpoint();
    case "auth":
      return auth(ctx, session, r, argc);
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

/** A key: msgpack str or bin, compared as bytes (a view of the frame). */
function key(ctx: WorkerContext, r: MsgReader): Uint8Array {
  return checkKey(ctx, keyBytes(r.bytesOrString()));
}

/** A key the engine reads at once and does not keep (get, exists): in a scratch array, valid until the next. */
function readKey(ctx: WorkerContext, r: MsgReader): Uint8Array {
  return checkKey(ctx, keyBytes(r.bytesOrStringScratch()));
}

function keyBytes(bytes: Uint8Array | undefined): Uint8Array {
  if (bytes === undefined) throw new RequestError(CODE_BAD_REQUEST, "a key must be a msgpack str or bin");
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
  for (let i = 0; i < n; i += 2) entries.push(setPair(ctx, r));
  return entries;
}

function auth(ctx: WorkerContext, session: Session, r: MsgReader, argc: number): boolean {
  arity("auth", argc, 1, 1);
  const outcome = authenticate(ctx, session, r.bytesOrString());
  if (outcome === "not_configured")
    throw new RequestError(CODE_BAD_REQUEST, "auth: no token is configured on this server");
  if (outcome === "wrong") throw new RequestError(CODE_AUTH_REQUIRED, "auth: wrong token");
  return true;
}

/** One response frame, as bytes. */
function responseBytes(id: number, code: number, result: Result): Uint8Array {
  const w = new MsgWriter(128);
  writeResponse(w, id, code, result);
  return w.take();
}

/**
 * Writes one response frame `[id, code, result]`. A response over the frame limit is replaced by
 * `[id, 2, message]`.
 */
function writeResponse(
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
  if (result instanceof StoredRead) {
    if (!w.stored(result.source, result.key)) w.nil();
  } else if (result instanceof RawValue) w.raw(result.bytes);
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
function writeError(w: MsgWriter, id: number, error: unknown): void {
  const [code, message] = classify(error);
  writeResponse(w, id, code, message);
}
