/**
 * The operations of walkv, shared by both wire protocols (msgpack, docs/protocol.md, in
 * msgpack_protocol.ts; RESP2, docs/resp.md, in resp_commands.ts): limit checks, the engine calls,
 * authentication, and the error → code classification. Protocols decode requests into byte strings,
 * call these, and encode the outcome their own way; the semantics (what is checked, in which order,
 * what changes) are defined once, here.
 *
 * Keys and values passed to the write ops may be ranges (or views) of a connection's input: input
 * bytes are never overwritten once read (see connection.ts), so they stay valid until the write
 * resolves.
 *
 * @example
 * const key = checkKey(ctx, key_bytes);          // RequestError(CODE_TOO_LARGE) over the limit
 * const value = ctx.engine.get(key);             // reads: the engine directly
 * await deleteKeys(ctx, [k1, k2]);               // → how many held a value; one WAL record
 * ctx.sets.add(setEntry(key, value), waiter);   // checked SET, coalesced: waiter.setDone once visible
 */

import type { Engine } from "../engine/engine.ts";
import { InvalidError, TooLargeError, WalkvError } from "../engine/errors.ts";
import { turn_end } from "../engine/turn_end.ts";
import { OP_SET, RECORD_HEADER_SIZE_BYTES } from "../engine/wal/format.ts";
import { delEntry, entryBytes, entrySizeBytes, type WalEntry } from "../engine/wal/record.ts";
import type { ServerConfig } from "./config.ts";
import type { Responder } from "./connection.ts";
import { type Metrics, OPS, type OpName } from "./metrics.ts";

export const CODE_OK = 0;
export const CODE_BAD_REQUEST = 1;
export const CODE_TOO_LARGE = 2;
export const CODE_UNAVAILABLE = 3;
export const CODE_AUTH_REQUIRED = 4;

/** What every connection of a worker shares. */
export interface WorkerContext {
  readonly engine: Engine;
  /** Every write of this worker goes through it (see {@link SetCoalescer}). */
  readonly sets: SetCoalescer;
  readonly config: ServerConfig;
  readonly metrics: Metrics;
  /** Runs a checkpoint and resolves with `{lsn, bytes, ms}`. */
  readonly checkpoint: () => Promise<{ lsn: number; bytes: number; ms: number }>;
  /** Extra `stats` fields (connections, ops by type…). */
  readonly serverStats: () => Record<string, unknown>;
  /** True once the daemon is shutting down: connections finish what they have, then end. */
  readonly draining: () => boolean;
  /** When the daemon started (Unix ms): uptime for RESP `INFO`. */
  readonly started_unix_ms: number;
  /** The RESP listener's TCP port, 0 when it is a Unix socket or off (RESP `INFO`). */
  readonly resp_tcp_port: () => number;
}

/** Per-connection protocol state. */
export interface Session {
  authenticated: boolean;
}

/** A session as a new connection starts it: authenticated unless a token is configured. */
export function newSession(ctx: WorkerContext): Session {
  return { authenticated: ctx.config.auth_token === undefined };
}

/** A request that failed validation: answered with `code` and `message`; nothing changed. */
export class RequestError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

const OP_INDEX = new Map<string, number>(OPS.map((name, i) => [name, i]));
/** Metric index of unknown and protocol-only requests. */
export const OP_OTHER = OPS.indexOf("other");

/** The metric index of `name`, or {@link OP_OTHER} for a name that is not an op. */
export function opIndex(name: string): number {
  return OP_INDEX.get(name) ?? OP_OTHER;
}

/**
 * Records one finished request in the worker's metrics: its latency runs from `started_ms` (when its
 * bytes arrived) to `done_ms` (now, unless the caller read the clock for a whole batch).
 */
export function recordOp(
  ctx: WorkerContext,
  op_index: number,
  started_ms: number,
  failed: boolean,
  done_ms = performance.now(),
): void {
  ctx.metrics.record(op_index, (done_ms - started_ms) * 1000, failed);
}

// ------------------------------------------------------------------------------------- limits

/** `key` if it is within `--max-key-bytes`; else RequestError(CODE_TOO_LARGE). */
export function checkKey(ctx: WorkerContext, key: Uint8Array): Uint8Array {
  checkKeySize(ctx, key.length);
  return key;
}

/** Throws RequestError(CODE_TOO_LARGE) if a key of `size_bytes` is over `--max-key-bytes`. */
export function checkKeySize(ctx: WorkerContext, size_bytes: number): void {
  checkSize("key", size_bytes, ctx.config.engine.max_key_bytes);
}

/** Throws RequestError(CODE_TOO_LARGE) if a value stored as `size_bytes` is over `--max-value-bytes`. */
export function checkValueSize(ctx: WorkerContext, size_bytes: number): void {
  checkSize("value", size_bytes, ctx.config.engine.max_value_bytes);
}

/**
 * The entry size of one more SET for a group of `count` SETs of `size_bytes` that
 * {@link Protocol.takeSets} builds: its `key_bytes`-byte key and value stored as `value_bytes`,
 * if they pass {@link checkKeySize} and {@link checkValueSize} and the group with it still fits one
 * batch ({@link SetCoalescer.fits}); -1 otherwise (the general path then reports any error).
 *
 * @example
 * const entry_bytes = groupEntryBytes(ctx, group.length, size_bytes, key_length, value_length);
 * if (entry_bytes < 0) break;
 */
export function groupEntryBytes(
  ctx: WorkerContext,
  count: number,
  size_bytes: number,
  key_bytes: number,
  value_bytes: number,
): number {
  const { max_key_bytes, max_value_bytes } = ctx.config.engine;
  if (key_bytes > max_key_bytes || value_bytes > max_value_bytes) return -1;
  const entry_bytes = entryBytes(key_bytes, value_bytes, 0);
  return ctx.sets.fits(count + 1, size_bytes + entry_bytes) ? entry_bytes : -1;
}

function checkSize(what: string, size_bytes: number, limit_bytes: number): void {
  if (size_bytes > limit_bytes) {
    throw new RequestError(
      CODE_TOO_LARGE,
      `${what} of ${size_bytes} bytes is over the limit of ${limit_bytes}`,
    );
  }
}

// ------------------------------------------------------------------------------------- writes

/** Applies `entries` as one WAL record: all or nothing, visible at once. */
export function writeAll(ctx: WorkerContext, entries: readonly WalEntry[]): Promise<unknown> {
  if (entries.length === 0) throw new RequestError(CODE_BAD_REQUEST, "a write needs at least one key");
  ctx.sets.flush();
  return ctx.engine.write(entries);
}

/**
 * Deletes `keys` (distinct) as one WAL record; resolves with how many held a value. One absent key
 * takes the engine's fast path (nothing is written).
 */
export async function deleteKeys(ctx: WorkerContext, keys: readonly Uint8Array[]): Promise<number> {
  for (const key of keys) checkKey(ctx, key);
  ctx.sets.flush();
  const entries = keys.map((key) => delEntry(key));
  return (await ctx.engine.write(entries)).removed;
}

/** Most SETs coalesced into one record (a bound on a batch's latency and memory besides its bytes). */
export const COALESCE_MAX_ENTRIES = 1024;

/** Told once what became of a coalesced SET. Must not throw. */
export interface SetWaiter {
  /**
   * `failure` is undefined when the SET is visible, else why it failed (nothing of it is visible).
   * `done_ms`: performance.now() when its batch settled (read once for the whole batch).
   */
  setDone(failure: unknown, done_ms: number): void;
}

/**
 * Coalesces the single-key SETs that one I/O worker receives in one event-loop turn, from every
 * connection, into one WAL record: the engine's cost per write (locks, LSN, visibility wait) is
 * paid once per batch instead of once per SET, as pipelined and concurrent SETs arrive together.
 * Each SET has a {@link SetWaiter} (no promise per SET): the batch's one write settles them all.
 *
 * Semantics are unchanged: each SET was validated alone before it joined; the batch's SETs take
 * effect at one instant, in arrival order (a later SET of a key wins), which is a valid order for
 * concurrent requests and keeps each connection's order. Every other write calls {@link flush}
 * first, so writes reach the engine — and get their LSNs — in the order they were received. A
 * batch is flushed at the end of the turn ({@link turn_end}), or at once when it reaches
 * COALESCE_MAX_ENTRIES or the record limit (`max_batch_bytes`). If its write fails, every SET in
 * it fails with that error (nothing of it is visible).
 *
 * @example
 * const sets = new SetCoalescer(engine);
 * sets.add(setEntry(key, value), { setDone: (failure) => reply(failure) });
 */
export class SetCoalescer {
  private entries: WalEntry[] = [];
  private waiters: SetWaiter[] = [];
  private size_bytes = RECORD_HEADER_SIZE_BYTES;
  /** A flush is scheduled for the end of this turn. */
  private scheduled = false;
  private readonly scheduledFlush = () => {
    this.scheduled = false;
    this.flush();
  };

  constructor(
    private readonly engine: Engine,
    private readonly schedule: (flush: () => void) => void = (flush) => turn_end.run(flush),
  ) {}

  /** Adds one validated SET entry; `waiter` hears once its batch is visible or failed. */
  add(entry: WalEntry, waiter: SetWaiter): void {
    if (entry.op !== OP_SET) throw new Error("SetCoalescer takes SET entries only");
    const entry_bytes = entrySizeBytes(entry);
    this.makeRoom(1, entry_bytes);
    this.entries.push(entry);
    this.waiters.push(waiter);
    this.size_bytes += entry_bytes;
  }

  /**
   * True if one batch can hold `count` SET entries whose {@link entrySizeBytes} add up to
   * `size_bytes`: the most {@link addGroup} takes.
   */
  fits(count: number, size_bytes: number): boolean {
    return (
      count <= COALESCE_MAX_ENTRIES &&
      RECORD_HEADER_SIZE_BYTES + size_bytes <= this.engine.config.max_batch_bytes
    );
  }

  /**
   * Adds validated SET entries (`size_bytes`: their entrySizeBytes summed) that one waiter answers
   * together: they join one batch, the open one flushed first if they do not all fit in it, so they
   * succeed or fail as one. They must {@link fits}.
   *
   * @example
   * if (sets.fits(group.length, size_bytes)) sets.addGroup(group, size_bytes, waiter);
   */
  addGroup(entries: readonly WalEntry[], size_bytes: number, waiter: SetWaiter): void {
    if (!this.fits(entries.length, size_bytes)) throw new Error("a SET group larger than one batch");
    this.makeRoom(entries.length, size_bytes);
    for (const entry of entries) {
      if (entry.op !== OP_SET) throw new Error("SetCoalescer takes SET entries only");
      this.entries.push(entry);
    }
    this.waiters.push(waiter);
    this.size_bytes += size_bytes;
  }

  /** Flushes the open batch if `count` more entries of `size_bytes` would overfill it; schedules the next flush. */
  private makeRoom(count: number, size_bytes: number): void {
    const full =
      this.entries.length + count > COALESCE_MAX_ENTRIES ||
      this.size_bytes + size_bytes > this.engine.config.max_batch_bytes;
    if (full) this.flush();
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.scheduledFlush);
    }
  }

  /** Issues the open batch to the engine now (its LSN is taken here). */
  flush(): void {
    if (this.entries.length === 0) return;
    const entries = this.entries;
    const waiters = this.waiters;
    this.entries = [];
    this.waiters = [];
    this.size_bytes = RECORD_HEADER_SIZE_BYTES;
    this.engine.write(entries).then(
      // async: failures are rejections
      () => settleAll(waiters, undefined),
      (error: unknown) => settleAll(waiters, error ?? new Error("the write failed")),
    );
  }
}

/**
 * The waiter of `requests` coalesced SETs of one connection (1, or a group: SetCoalescer.addGroup)
 * that answers them in one response slot: records each op in the metrics and hands the protocol's
 * encoding of their outcome to the connection's slot.
 *
 * @example
 * class OkWhenDone extends SetAnswer { protected response(failure: unknown) { return failure ? ERR : OK; } }
 * ctx.sets.add(entry, new OkWhenDone(ctx, responder, slot, started_ms, 1));
 */
export abstract class SetAnswer implements SetWaiter {
  constructor(
    protected readonly ctx: WorkerContext,
    private readonly responder: Responder,
    private readonly slot: number,
    private readonly started_ms: number,
    protected readonly requests: number,
  ) {}

  setDone(failure: unknown, done_ms: number): void {
    for (let i = 0; i < this.requests; i++) {
      recordOp(this.ctx, OP_SET_INDEX, this.started_ms, failure !== undefined, done_ms);
    }
    this.responder.respond(this.slot, this.response(failure), this.requests);
  }

  /** The encoded responses of the `requests` SETs, in order: successes when `failure` is undefined. */
  protected abstract response(failure: unknown): Uint8Array;
}

const OP_SET_INDEX = OPS.indexOf("set");

/**
 * Settles every waiter, even if one throws (a bug: waiters must not): the others are still answered,
 * then the first exception is thrown again.
 */
function settleAll(waiters: readonly SetWaiter[], failure: unknown): void {
  let thrown: { error: unknown } | undefined;
  const done_ms = performance.now();
  for (const waiter of waiters) {
    try {
      waiter.setDone(failure, done_ms);
    } catch (error) {
      thrown ??= { error };
    }
  }
  if (thrown !== undefined) throw thrown.error;
}

// ------------------------------------------------------------------------------------- auth

type AuthOutcome = "ok" | "wrong" | "not_configured";

const utf8 = new TextEncoder();

/**
 * Checks `given` against `--auth-token-file`'s token (constant time in the token's length). A right
 * token authenticates the session; a wrong one takes a previous authentication back.
 */
export function authenticate(
  ctx: WorkerContext,
  session: Session,
  given: Uint8Array | undefined,
): AuthOutcome {
  const token = ctx.config.auth_token;
  if (token === undefined) return "not_configured";
  session.authenticated = given !== undefined && sameBytes(given, utf8.encode(token));
  return session.authenticated ? "ok" : "wrong";
}

/** Constant-time comparison (time depends on the lengths only). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < b.length; i++) diff |= (a[i] ?? 0) ^ b[i]!;
  return diff === 0;
}

// ------------------------------------------------------------------------------------- errors

/** Maps an error onto a response code and a human-readable message. */
export function classify(error: unknown): [number, string] {
  if (error instanceof RequestError) return [error.code, error.message];
  if (error instanceof TooLargeError) return [CODE_TOO_LARGE, error.message];
  if (error instanceof InvalidError) return [CODE_BAD_REQUEST, error.message];
  if (error instanceof WalkvError && error.code === "unavailable") return [CODE_UNAVAILABLE, error.message];
  return [CODE_UNAVAILABLE, `internal error: ${error instanceof Error ? error.message : String(error)}`];
}

export type { OpName };
