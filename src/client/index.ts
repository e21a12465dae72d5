/**
 * The walkv client: a typed promise API over protocol v1 (docs/protocol.md), for Bun, Deno and
 * Node. Calls are pipelined automatically (every call is sent at once, calls made in the same tick
 * share one socket write) and answered in order. Values are any JS value, encoded as plain msgpack
 * (msgpackr, no record extension); `getRaw`/`setRaw` give the stored msgpack bytes, byte-exact.
 *
 * Keys are strings (sent as msgpack str) or Uint8Arrays (sent as bin); the server compares them as
 * bytes, so `"a"` and `new Uint8Array([0x61])` are the same key.
 *
 * @example
 * import { connect } from "walkv/client";
 * const client = await connect({ path: "./var/walkv.sock" });
 * await client.set("user:1", { name: "Ada", langs: ["en"] });
 * const user = await client.get<{ name: string }>("user:1");
 * await Promise.all(ids.map((id) => client.get(`user:${id}`))); // one pipelined batch
 * await client.close();
 */
import { assert } from "../engine/errors.ts";
import { MsgReader, type MsgWriter } from "../server/msgpack.ts";
import { packr } from "../server/pack.ts";
import { Connection, type ConnectionLimits, type WriteArgs } from "./connection.ts";
import { BadRequestError, ConnectionError, type WalkvClientError } from "./errors.ts";

export {
  AuthRequiredError,
  BadRequestError,
  CODE_CONNECTION,
  ConnectionError,
  TimeoutError,
  TooLargeError,
  UnavailableError,
  WalkvClientError,
} from "./errors.ts";

/**
 * A key: a string (msgpack str, UTF-8) or bytes (msgpack bin).
 *
 * @example
 * const keys: Key[] = ["user:1", new Uint8Array([0x00, 0xff])];
 */
export type Key = string | Uint8Array;

/**
 * Options of `set`: reserved by protocol v1 (conditional and expiring writes); pass `{}` or nothing.
 *
 * @example
 * await client.set("k", 1, {});
 */
export type SetOptions = Record<string, never>;

/**
 * The result of `checkpoint`: the checkpoint's LSN, data.db size and duration.
 *
 * @example
 * const { lsn, bytes, ms }: CheckpointResult = await client.checkpoint();
 */
export interface CheckpointResult {
  lsn: number;
  bytes: number;
  ms: number;
}

/**
 * How the client reconnects after a dropped connection: the first attempt at once, then up to
 * `retries` more, waiting `initial_delay_ms`, doubling up to `max_delay_ms`.
 *
 * @example
 * await connect({ path, reconnect: { retries: 20, initial_delay_ms: 10, max_delay_ms: 1000 } });
 */
export interface ReconnectPolicy {
  readonly retries: number;
  readonly initial_delay_ms: number;
  readonly max_delay_ms: number;
}

/**
 * Options of {@link connect}.
 *
 * @example
 * const options: ConnectOptions = { path: "./var/walkv.sock", token, request_timeout_ms: 5000 };
 */
export interface ConnectOptions {
  /** The daemon's Unix socket path. */
  readonly path: string;
  /** Sent with `auth` on every (re)connection when given. */
  readonly token?: string | undefined;
  /** Reconnect policy; `false`: a dropped client stays closed. Default {@link DEFAULT_RECONNECT}. */
  readonly reconnect?: ReconnectPolicy | false;
  /** Largest request or response frame, in bytes; match the server's. Default 64 MiB. */
  readonly max_frame_bytes?: number;
  /** Drop the connection when a response takes longer than this. Default: no timeout. */
  readonly request_timeout_ms?: number;
}

/**
 * The default reconnect policy: 10 retries, 50 ms doubling to 2 s (about 10 s in all).
 *
 * @example
 * await connect({ path, reconnect: { ...DEFAULT_RECONNECT, retries: 100 } });
 */
export const DEFAULT_RECONNECT: ReconnectPolicy = { retries: 10, initial_delay_ms: 50, max_delay_ms: 2000 };

/**
 * The default frame limit, the same as the server's default.
 *
 * @example
 * await connect({ path, max_frame_bytes: 4 * DEFAULT_MAX_FRAME_BYTES }); // server: --max-frame-bytes
 */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;

/**
 * Connects to a walkv daemon (one attempt) and authenticates if `token` is given. Rejects with a
 * ConnectionError if the socket cannot be reached, an AuthRequiredError if the token is wrong.
 *
 * @example
 * const client = await connect({ path: "/run/walkv/walkv.sock", token: process.env.WALKV_TOKEN });
 */
export async function connect(options: ConnectOptions): Promise<Client> {
  const client = new Client(options);
  await client.ping();
  return client;
}

/** A call waiting for the client to (re)connect. */
interface Waiter {
  readonly op: string;
  readonly argc: number;
  readonly write: WriteArgs;
  readonly resolve: (result: Uint8Array) => void;
  readonly reject: (error: WalkvClientError) => void;
}

/**
 * A walkv client over one pipelined connection. Create it with {@link connect}.
 *
 * A dropped connection rejects the calls in flight with ConnectionError (never resent: a write may
 * have happened); the next calls wait while the client reconnects (and re-authenticates).
 *
 * @example
 * const client = await connect({ path: "./var/walkv.sock" });
 * await client.mset({ a: 1, b: 2 });
 * console.log(await client.mget(["a", "b", "c"])); // [1, 2, undefined]
 */
export class Client {
  private readonly path: string;
  private readonly reconnect_policy: ReconnectPolicy | false;
  private readonly limits: ConnectionLimits;
  private token: string | undefined;
  private connection: Connection | undefined;
  private readonly waiters: Waiter[] = [];
  private reconnecting = false;
  private is_closed = false;

  /** Use {@link connect}, which also checks that the daemon answers. */
  constructor(options: ConnectOptions) {
    assert(options.path.length > 0, "path must not be empty");
    const policy = options.reconnect ?? DEFAULT_RECONNECT;
    assert(policy === false || (policy.retries >= 0 && policy.initial_delay_ms >= 0), "bad reconnect policy");
    this.path = options.path;
    this.reconnect_policy = policy;
    this.limits = {
      max_frame_bytes: options.max_frame_bytes ?? DEFAULT_MAX_FRAME_BYTES,
      request_timeout_ms: options.request_timeout_ms,
    };
    this.token = options.token;
  }

  /**
   * Round trip to the daemon.
   *
   * @example
   * await client.ping(); // "pong"
   */
  async ping(): Promise<string> {
    return decode(await this.call("ping", 0, noArgs)) as string;
  }

  /**
   * The value of `key`, decoded; undefined if absent (a stored msgpack nil also reads as undefined:
   * use {@link exists} to tell them apart).
   *
   * @example
   * const n = await client.get<number>("counter");
   */
  async get<T = unknown>(key: Key): Promise<T | undefined> {
    return decodeValue(await this.getRaw(key)) as T | undefined;
  }

  /**
   * The stored msgpack bytes of `key`, byte for byte as set; undefined if absent.
   *
   * @example
   * const bytes = await client.getRaw("k"); // e.g. Uint8Array [0xca, 0x3f, 0xc0, 0x00, 0x00]
   */
  async getRaw(key: Key): Promise<Uint8Array | undefined> {
    const result = await this.call("get", 1, (w) => writeKey(w, key));
    return isNil(result) ? undefined : result.slice();
  }

  /**
   * Stores `value` (any msgpack-encodable JS value) under `key`. Resolves once the write is
   * durable (per the server's fsync policy).
   *
   * @example
   * await client.set("user:1", { name: "Ada" });
   */
  async set(key: Key, value: unknown, opts?: SetOptions): Promise<void> {
    await this.setRaw(key, packr.pack(value), opts);
  }

  /**
   * Stores `msgpack_bytes`, which must be exactly one msgpack value, under `key`; the server keeps
   * and returns these bytes unchanged. Not one value → BadRequestError, nothing sent.
   *
   * @example
   * await client.setRaw("pi", new Uint8Array([0xca, 0x40, 0x49, 0x0f, 0xdb])); // a float32
   */
  async setRaw(key: Key, msgpack_bytes: Uint8Array, opts?: SetOptions): Promise<void> {
    checkOneValue(msgpack_bytes);
    const argc = opts === undefined ? 2 : 3;
    await this.call("set", argc, (w) => {
      writeKey(w, key);
      w.raw(msgpack_bytes);
      if (opts !== undefined) w.mapHeader(0);
    });
  }

  /**
   * Deletes `key`; resolves with whether it existed.
   *
   * @example
   * const existed = await client.del("session:9");
   */
  async del(key: Key): Promise<boolean> {
    return decode(await this.call("del", 1, (w) => writeKey(w, key))) as boolean;
  }

  /**
   * Whether `key` is present.
   *
   * @example
   * if (!(await client.exists("lock"))) await client.set("lock", 1);
   */
  async exists(key: Key): Promise<boolean> {
    return decode(await this.call("exists", 1, (w) => writeKey(w, key))) as boolean;
  }

  /**
   * The values of `keys` as of one moment, decoded; undefined for absent keys.
   *
   * @example
   * const [a, b] = await client.mget<number>(["a", "b"]);
   */
  async mget<T = unknown>(keys: readonly Key[]): Promise<Array<T | undefined>> {
    const result = await this.call("mget", 1, (w) => {
      w.arrayHeader(keys.length);
      for (const key of keys) writeKey(w, key);
    });
    return splitArray(result).map((bytes) => decodeValue(isNil(bytes) ? undefined : bytes) as T | undefined);
  }

  /**
   * Stores several pairs atomically (one WAL record): all become visible together, or none.
   *
   * @example
   * await client.mset({ a: 1, b: 2 });
   * await client.mset([[new Uint8Array([1]), "bytes key"], ["c", 3]]);
   */
  async mset(pairs: Iterable<readonly [Key, unknown]> | Record<string, unknown>): Promise<void> {
    const list: Array<readonly [Key, unknown]> =
      Symbol.iterator in pairs
        ? [...(pairs as Iterable<readonly [Key, unknown]>)]
        : Object.entries(pairs as Record<string, unknown>);
    const values = list.map(([, value]) => packr.pack(value));
    await this.call("mset", 1, (w) => {
      w.arrayHeader(list.length * 2);
      list.forEach(([key], i) => {
        writeKey(w, key);
        w.raw(values[i]!);
      });
    });
  }

  /**
   * Engine and server statistics (keys, memory, WAL, connections, ops…).
   *
   * @example
   * const { keys } = await client.stats();
   */
  async stats(): Promise<Record<string, unknown>> {
    return decode(await this.call("stats", 0, noArgs)) as Record<string, unknown>;
  }

  /**
   * Runs a checkpoint now; resolves when data.db is written.
   *
   * @example
   * const { lsn, bytes, ms } = await client.checkpoint();
   */
  async checkpoint(): Promise<CheckpointResult> {
    return decode(await this.call("checkpoint", 0, noArgs)) as CheckpointResult;
  }

  /**
   * Authenticates this connection; on success the token is also used on every reconnection.
   *
   * @example
   * await client.auth(token); // AuthRequiredError if wrong
   */
  async auth(token: string): Promise<void> {
    await this.call("auth", 1, (w) => w.string(token));
    this.token = token;
  }

  /**
   * Waits for the calls in flight, then closes the connection. Later calls reject with ConnectionError.
   *
   * @example
   * await client.close();
   */
  async close(): Promise<void> {
    this.is_closed = true;
    this.failWaiters(new ConnectionError("client is closed"));
    await this.connection?.end();
    this.connection = undefined;
  }

  /** Sends a request on the live connection, or queues it until the client is connected. */
  private call(op: string, argc: number, write: WriteArgs): Promise<Uint8Array> {
    if (this.is_closed) return Promise.reject(new ConnectionError("client is closed"));
    const connection = this.connection;
    if (connection !== undefined && !connection.closed) return connection.request(op, argc, write);
    return new Promise((resolve, reject) => {
      this.waiters.push({ op, argc, write, resolve, reject });
      if (!this.reconnecting) void this.reconnect(connection === undefined);
    });
  }

  /**
   * Connects (first time: one attempt; after a drop: the reconnect policy), then sends the waiting
   * calls in the order they were made, synchronously, so that no later call overtakes them.
   */
  private async reconnect(first: boolean): Promise<void> {
    assert(!this.reconnecting, "one reconnect at a time");
    this.reconnecting = true;
    const policy = this.reconnect_policy;
    const attempts = first ? 1 : policy === false ? 0 : policy.retries + 1;
    let delay_ms = policy === false ? 0 : policy.initial_delay_ms;
    let last_error: WalkvClientError = new ConnectionError(
      `${this.path}: connection lost and reconnect is off`,
    );
    for (let attempt = 0; attempt < attempts && !this.is_closed; attempt++) {
      if (attempt > 0 && policy !== false) {
        await sleep(delay_ms);
        delay_ms = Math.min(delay_ms * 2, policy.max_delay_ms);
      }
      try {
        this.resume(await this.handshake());
        return;
      } catch (error) {
        last_error = error as WalkvClientError;
        if (!(error instanceof ConnectionError)) break; // e.g. a wrong token: retrying will not help
      }
    }
    this.reconnecting = false;
    this.failWaiters(this.is_closed ? new ConnectionError("client is closed") : last_error);
  }

  /** Makes `connection` the live one and sends the waiting calls on it. */
  private resume(connection: Connection): void {
    this.reconnecting = false;
    if (this.is_closed) {
      connection.destroy(new ConnectionError("client is closed"));
      return;
    }
    this.connection = connection;
    for (const w of this.waiters.splice(0)) {
      connection.request(w.op, w.argc, w.write).then(w.resolve, w.reject);
    }
  }

  /** Opens a connection and authenticates it if there is a token. */
  private async handshake(): Promise<Connection> {
    const connection = await Connection.open(this.path, this.limits);
    const token = this.token;
    if (token === undefined) return connection;
    try {
      await connection.request("auth", 1, (w) => w.string(token));
    } catch (error) {
      connection.destroy(new ConnectionError("authentication failed"));
      throw error;
    }
    return connection;
  }

  private failWaiters(error: WalkvClientError): void {
    for (const w of this.waiters.splice(0)) w.reject(error);
  }
}

function noArgs(): void {}

function writeKey(w: MsgWriter, key: Key): void {
  if (typeof key === "string") w.string(key);
  else w.bin(key);
}

function decode(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

function decodeValue(bytes: Uint8Array | undefined): unknown {
  return bytes === undefined ? undefined : packr.unpack(bytes);
}

function isNil(bytes: Uint8Array): boolean {
  return bytes.length === 1 && bytes[0] === 0xc0;
}

/** The elements of a msgpack array (mget's result), each as its own msgpack bytes. */
function splitArray(bytes: Uint8Array): Uint8Array[] {
  const r = new MsgReader(bytes, 0, bytes.length);
  const n = r.arrayHeader();
  if (n < 0) throw new ConnectionError("mget: the response is not an array");
  const items: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const start = r.pos;
    if (!r.skip()) throw new ConnectionError("mget: malformed response array");
    items.push(bytes.subarray(start, r.pos));
  }
  return items;
}

function checkOneValue(bytes: Uint8Array): void {
  const r = new MsgReader(bytes, 0, bytes.length);
  if (bytes.length === 0 || !r.skip() || r.pos !== bytes.length) {
    throw new BadRequestError("setRaw: the bytes must be exactly one well-formed msgpack value");
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
