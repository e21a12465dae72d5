/**
 * The fast paths past the general reader, Protocol.answerReads (the GETs that open a chunk) and
 * Protocol.takeSets (the SETs that open it, started as one group), answer exactly as the general
 * path (`next` + `execute`) would: the same bytes in the same order and the same metrics, for RESP and
 * msgpack. Seeded streams of GETs (hits, misses, keys over the limit, values RESP cannot show, replies
 * over the frame limit, ids of every encoding), SETs (keys and values over their limits, values of
 * every msgpack type, options), DELs and other requests are cut into chunks at random points and fed
 * to two in-process servers, one with the fast paths and one without.
 * `WALKV_SEED=n` replays a stream; a failure names its seed.
 */
import { expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import { engineConfig } from "../../src/engine/config.ts";
import { type EngineHost, openEngine, walStart } from "../../src/engine/host.ts";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { LocalWalWriter } from "../../src/engine/wal/local_wal_writer.ts";
import { setEntry } from "../../src/engine/wal/record.ts";
import type { ClientSocket } from "../../src/server/client_socket.ts";
import { serverConfig } from "../../src/server/config.ts";
import { Connection, type OutputWriter, type Protocol } from "../../src/server/connection.ts";
import { createMetricsBuffer, Metrics } from "../../src/server/metrics.ts";
import { MsgpackProtocol } from "../../src/server/msgpack_protocol.ts";
import { SetCoalescer, type WorkerContext } from "../../src/server/ops.ts";
import { packr } from "../../src/server/pack.ts";
import { RespProtocol } from "../../src/server/resp_protocol.ts";
import { testSeed } from "./raw_client.ts";
import { concatBytes } from "./resp_client.ts";

const MAX_KEY_BYTES = 48;
const MAX_FRAME_BYTES = 4096;
/** The value limit of the servers that refuse SETs for their value's size (below the frame limit). */
const SMALL_MAX_VALUE_BYTES = 1024;
const encoder = new TextEncoder();

/** A socket that keeps every byte it is given; a stalled one reports all of them unsent. */
class RecordingSocket implements ClientSocket {
  unsent_bytes = 0;
  readonly chunks: Uint8Array[] = [];
  constructor(private readonly stalled: boolean) {}
  write(bytes: Uint8Array, start = 0, end = bytes.length): void {
    this.chunks.push(bytes.slice(start, end));
    if (this.stalled) this.unsent_bytes += end - start;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  destroy(): void {}
}

/** Bytes stored as msgpack: str and bin values RESP can show, an int it cannot, one too big to send. */
const STORED: Array<[string, Uint8Array]> = [
  ["k0", packr.pack("zero")],
  ["k1", packr.pack(new Uint8Array(300).fill(7))],
  ["k2", packr.pack("")],
  ["int", packr.pack(5)],
  ["big", packr.pack(new Uint8Array(MAX_FRAME_BYTES + 100).fill(1))],
];

interface Server {
  readonly connection: Connection<unknown>;
  readonly socket: RecordingSocket;
  readonly metrics: Metrics;
  /** Bytes the fast paths consumed (0 for the server without them). */
  fast_bytes: number;
  /** SETs takeSets started (0 for the server without it). */
  fast_sets: number;
  /** The value stored for `key`, as msgpack. */
  get(key: string): Uint8Array | undefined;
  /** Closes the WAL: every later write fails. */
  failWrites(): void;
  /** Closes the engine and removes its files. */
  close(): Promise<void>;
}

/** The token of the servers that require AUTH (`auth_token`). */
const TOKEN = "secret";

interface ServerOptions {
  /** Connections must AUTH first. */
  auth?: boolean;
  max_value_bytes?: number;
  max_output_bytes?: number;
  /** The client reads nothing: every reply stays unsent. */
  stalled?: boolean;
}

async function openServer(
  kind: "resp" | "msgpack",
  fast: boolean,
  options: ServerOptions = {},
): Promise<Server> {
  const { auth = false, max_value_bytes = 64 << 10, max_output_bytes = 1 << 30, stalled = false } = options;
  const dir = fs.mkdtempSync(`${os.tmpdir()}/walkv-answer-reads-`);
  const engine_config = engineConfig({
    data_dir: `${dir}/data`,
    fsync: "no",
    checkpoint_interval_ms: 0,
    max_key_bytes: MAX_KEY_BYTES,
    // Small, so that the test leaves little for the next test file's heap measurements to count.
    max_value_bytes,
    max_batch_bytes: 1 << 20,
    memory_limit_bytes: 64 << 20,
    shard_bits: 4,
  });
  const host: EngineHost = await openEngine(engine_config, { local_wal_writer: true, log: () => {} });
  const local = new LocalWalWriter(host.shared, walStart(host.recovery), () => {});
  const engine = local.engine;
  for (const [key, value] of STORED) {
    if (value.length <= max_value_bytes) await engine.write([setEntry(encoder.encode(key), value)]);
  }
  const config = serverConfig({
    engine: engine_config,
    socket_path: `${dir}/s`,
    workers: 1,
    max_frame_bytes: MAX_FRAME_BYTES,
    max_output_bytes,
    auth_token: auth ? TOKEN : undefined,
  });
  const metrics = new Metrics(createMetricsBuffer(1), 0);
  const ctx: WorkerContext = {
    engine,
    sets: new SetCoalescer(engine),
    config,
    metrics,
    checkpoint: () => Promise.reject(new Error("no checkpoints here")),
    serverStats: () => ({}),
    draining: () => false,
    started_unix_ms: Date.now(),
    resp_tcp_port: () => 0,
  };
  const socket = new RecordingSocket(stalled);
  const server = { socket, metrics, fast_bytes: 0, fast_sets: 0 } as Server & {
    connection: Connection<unknown>;
  };
  const protocol = (kind === "resp" ? new RespProtocol(ctx) : new MsgpackProtocol(ctx)) as Protocol<
    unknown,
    OutputWriter
  >;
  const answerReads = protocol.answerReads.bind(protocol);
  protocol.answerReads = (bytes, start, end, out, arrived_ms) => {
    if (!fast) return start;
    const after = answerReads(bytes, start, end, out, arrived_ms);
    server.fast_bytes += after - start;
    return after;
  };
  const takeSets = protocol.takeSets.bind(protocol);
  protocol.takeSets = (bytes, start, end, group) => {
    if (!fast) return 0;
    const count = takeSets(bytes, start, end, group);
    server.fast_sets += count;
    if (count > 0) server.fast_bytes += protocol.next_start - start;
    return count;
  };
  (server as { connection: Connection<unknown> }).connection = new Connection(
    socket,
    protocol,
    ctx,
    () => {},
  );
  server.get = (key) => engine.get(encoder.encode(key));
  server.failWrites = () => local.close();
  server.close = async () => {
    local.close();
    await host.close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return server;
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Feeds `chunks` (a fresh copy each, as a socket gives) and waits until every reply is sent. */
async function feed(server: Server, chunks: readonly Uint8Array[], rng: () => number): Promise<Uint8Array> {
  for (const chunk of chunks) {
    server.connection.receive(chunk.slice());
    if (randomInt(rng, 3) === 0) await turn(); // sometimes a write completes between chunks
  }
  for (let turns = 0; !server.connection.flushed(); turns++) {
    if (turns > 10_000) throw new Error("replies still pending after 10,000 turns");
    await turn();
  }
  return concatBytes(server.socket.chunks);
}

/** `bytes` cut at random points into 1 to 8 chunks. */
function cut(bytes: Uint8Array, rng: () => number): Uint8Array[] {
  const points = Array.from({ length: randomInt(rng, 8) }, () => randomInt(rng, bytes.length + 1));
  points.sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let at = 0;
  for (const point of [...points, bytes.length]) {
    if (point > at) chunks.push(bytes.subarray(at, point));
    at = Math.max(at, point);
  }
  return chunks;
}

/** Keys SETs and DELs change; GETs also read the keys of values they must refuse (never changed). */
const WRITE_KEYS = ["k0", "k1", "k2", "missing"];
const KEYS = [...WRITE_KEYS, "int", "big", "k".repeat(MAX_KEY_BYTES + 1)];

function respRequest(rng: () => number): Uint8Array {
  const key = KEYS[randomInt(rng, KEYS.length)]!;
  const written = WRITE_KEYS[randomInt(rng, WRITE_KEYS.length)]!;
  const bulk = (args: string[]) =>
    `*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join("")}`;
  const get = ["GET", "get", "Get"][randomInt(rng, 3)]!;
  const set = ["SET", "set", "sEt"][randomInt(rng, 3)]!;
  switch (randomInt(rng, 10)) {
    case 0:
      return encoder.encode(bulk([set, written, randomValue(rng)]));
    case 9:
      return encoder.encode(bulk([set, randomInt(rng, 8) === 0 ? key : written, randomValue(rng)]));
    case 8:
      if (randomInt(rng, 4) === 0) return encoder.encode(bulk([set, written, "v", "EX", "10"]));
      if (randomInt(rng, 4) === 0) return encoder.encode(`${set} ${written} inline\r\n`);
      return encoder.encode(bulk([set, written, randomValue(rng)]));
    case 1:
      return encoder.encode(bulk(["DEL", written]));
    case 2:
      return encoder.encode(bulk(["PING"]));
    case 3:
      return encoder.encode(`${get} ${key}\r\n`); // inline: the general reader's
    default:
      return encoder.encode(bulk([get, key]));
  }
}

/** A value of 0 to 299 bytes (one under every limit: an over-limit request ends the connection). */
function randomValue(rng: () => number): string {
  return "v".repeat(randomInt(rng, 300));
}

/** Ids of every encoding: fixint, uint8/16/32 (valid), int64, uint64 and float64 (refused by the general path). */
const IDS: unknown[] = [0, 5, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2n ** 40n, 2n ** 63n, 1.5];

function msgpackRequest(rng: () => number): Uint8Array {
  const name = KEYS[randomInt(rng, KEYS.length)]!;
  const written = WRITE_KEYS[randomInt(rng, WRITE_KEYS.length)]!;
  const key = randomInt(rng, 2) === 0 ? name : encoder.encode(name); // str or bin
  const id = IDS[randomInt(rng, IDS.length)]!;
  let request: unknown[];
  const values: unknown[] = [
    randomInt(rng, 1000),
    randomValue(rng),
    encoder.encode(randomValue(rng)),
    null,
    [1, 2],
  ];
  switch (randomInt(rng, 8)) {
    case 0:
    case 6:
      request = [id, "set", randomInt(rng, 8) === 0 ? key : written, values[randomInt(rng, values.length)]];
      if (randomInt(rng, 8) === 0) request.push({ unknown_option: 1 });
      break;
    case 1:
      request = [id, "del", written];
      break;
    case 2:
      request = [id, "ping"];
      break;
    default:
      request = [id, "get", key];
  }
  return msgpackFrame(request);
}

/** `request` packed, after its 4-byte big-endian length. */
function msgpackFrame(request: unknown[]): Uint8Array {
  const body = packr.pack(request);
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  return frame;
}

/** A GET of `key` in the form clients send it. */
function getRequest(kind: "resp" | "msgpack", key: string): Uint8Array {
  if (kind === "resp") return encoder.encode(`*2\r\n$3\r\nGET\r\n$${key.length}\r\n${key}\r\n`);
  return msgpackFrame([1, "get", key]);
}

/** AUTH with the right token, in `kind`'s form. */
function authRequest(kind: "resp" | "msgpack"): Uint8Array {
  if (kind === "resp") return encoder.encode(`*2\r\n$4\r\nAUTH\r\n$${TOKEN.length}\r\n${TOKEN}\r\n`);
  return msgpackFrame([1, "auth", TOKEN]);
}

for (const kind of ["resp", "msgpack"] as const) {
  for (const auth of [false, true]) {
    const name = auth ? "with AUTH required (the first round's GETs come before it)" : "without AUTH";
    test(`${kind}, ${name}: answerReads and takeSets answer as the general path does: same bytes, same metrics`, async () => {
      const seed = testSeed((kind === "resp" ? 0xa115_0001 : 0xa115_0002) + (auth ? 16 : 0));
      const fast = await openServer(kind, true, { auth });
      const general = await openServer(kind, false, { auth });
      try {
        await compare(kind, auth, seed, fast, general);
      } finally {
        await fast.close();
        await general.close();
        Bun.gc(true); // the engines' buffers go now, not during a later test's heap measurements
      }
    });
  }
}

/** Feeds both servers the same 40 rounds of seeded requests; their replies and metrics must agree. */
async function compare(kind: "resp" | "msgpack", auth: boolean, seed: number, fast: Server, general: Server) {
  const rng = prng(seed);
  for (let round = 0; round < 40; round++) {
    const requests = Array.from({ length: 1 + randomInt(rng, 40) }, () =>
      kind === "resp" ? respRequest(rng) : msgpackRequest(rng),
    );
    if (auth && round === 0) requests.unshift(getRequest(kind, "k0"));
    if (auth && round === 0) requests.push(authRequest(kind));
    const chunks = cut(concatBytes(requests), rng);
    const feed_seed = randomInt(rng, 2 ** 31);
    const got = await feed(fast, chunks, prng(feed_seed));
    const expected = await feed(general, chunks, prng(feed_seed));
    expect(Buffer.from(got).toString("latin1"), `seed ${seed} round ${round}`).toBe(
      Buffer.from(expected).toString("latin1"),
    );
  }
  const counts = (s: Server) =>
    Object.fromEntries(Object.entries(s.metrics.summary().ops).map(([op, o]) => [op, [o.count, o.errors]]));
  expect(counts(fast), `seed ${seed}`).toEqual(counts(general));
  expect(counts(fast).get![0], `seed ${seed}`).toBeGreaterThan(100);
  expect(fast.fast_bytes, `seed ${seed}: the fast path answered nothing`).toBeGreaterThan(0);
  expect(counts(fast).set![0], `seed ${seed}`).toBeGreaterThan(100);
  expect(fast.fast_sets, `seed ${seed}: takeSets started too few SETs`).toBeGreaterThan(10);
}

/** GETs RespReader refuses for a missing `\n` or `\r\n`: the fast path must leave them to it. */
const MALFORMED_GETS = [
  "*2\r\n$3\r\nGET\r\n$2\rxk0\r\n", // the key length's line ends in \r alone
  "*2\r\n$3\r\nGET\r\n$2\r\nk0xx*1\r\n$4\r\nPING\r\n", // the key is not followed by \r\n
  "*2\r\n$3\r\nGET\r\n$1\r\nk0\r\n", // the key is longer than declared
];

test("resp: GETs the general reader refuses as malformed are not answered by answerReads", async () => {
  for (const malformed of MALFORMED_GETS) {
    const fast = await openServer("resp", true);
    const general = await openServer("resp", false);
    try {
      const bytes = concatBytes([getRequest("resp", "k0"), encoder.encode(malformed)]);
      const rng = () => 0;
      const got = Buffer.from(await feed(fast, [bytes], rng)).toString("latin1");
      const expected = Buffer.from(await feed(general, [bytes], rng)).toString("latin1");
      expect(got, JSON.stringify(malformed)).toBe(expected);
      expect(got, JSON.stringify(malformed)).toContain("-ERR Protocol error");
      expect(fast.fast_bytes, "the well-formed GET before it was answered by the fast path").toBe(
        getRequest("resp", "k0").length,
      );
    } finally {
      await fast.close();
      await general.close();
    }
  }
  Bun.gc(true);
});

/** A SET of `key` to `value` in the form clients send it (`id`: msgpack's request id). */
function setRequest(kind: "resp" | "msgpack", key: string, value: Uint8Array, id = 1): Uint8Array {
  if (kind === "msgpack") return msgpackFrame([id, "set", key, value]);
  const head = encoder.encode(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n`);
  return concatBytes([head, value, encoder.encode("\r\n")]);
}

/** `frame` with one byte more in its body than its value needs (trailing bytes). */
function withTrailingByte(frame: Uint8Array): Uint8Array {
  const longer = concatBytes([frame, new Uint8Array([0xc0])]);
  new DataView(longer.buffer, longer.byteOffset).setUint32(0, frame.length - 4 + 1);
  return longer;
}

/**
 * SETs after one takeSets starts, which the general path refuses: the error it gives (the stream
 * cut off for a malformed or over-frame request) must come the same with the fast path, and a GET
 * after a refused SET must see the value unchanged.
 */
interface RefusedSet {
  kind: "resp" | "msgpack";
  name: string;
  bytes: () => Uint8Array;
  /** Part of the general path's reply. */
  error: string;
  /** The servers' value limit: a frame-limit case needs one above the frame limit. */
  max_value_bytes?: number;
}

const REFUSED_SETS: RefusedSet[] = [
  {
    kind: "resp",
    name: "a key over --max-key-bytes",
    bytes: () => setRequest("resp", "k".repeat(MAX_KEY_BYTES + 1), encoder.encode("xy")),
    error: "-ERR key of",
  },
  {
    kind: "msgpack",
    name: "a key over --max-key-bytes",
    bytes: () => setRequest("msgpack", "k".repeat(MAX_KEY_BYTES + 1), encoder.encode("xy")),
    error: "key of",
  },
  {
    kind: "resp",
    name: "a value over --max-value-bytes",
    bytes: () => setRequest("resp", "k0", new Uint8Array(SMALL_MAX_VALUE_BYTES).fill(0x61)),
    error: "-ERR value of",
  },
  {
    kind: "resp",
    name: "a request over --max-frame-bytes",
    bytes: () => setRequest("resp", "k0", new Uint8Array(MAX_FRAME_BYTES).fill(0x61)),
    error: "-ERR Protocol error: request over the limit",
    max_value_bytes: 2 * MAX_FRAME_BYTES,
  },
  {
    kind: "resp",
    name: "a value not followed by \\r\\n",
    bytes: () => encoder.encode("*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$1\r\nxy\r\n"),
    error: "-ERR Protocol error",
  },
  {
    kind: "resp",
    name: "a value length line ended by a bare \\r",
    bytes: () => encoder.encode("*3\r\n$3\r\nSET\r\n$2\r\nk0\r\n$1\rx\r\n"),
    error: "-ERR Protocol error",
  },
  {
    kind: "msgpack",
    name: "a value over --max-value-bytes",
    bytes: () => setRequest("msgpack", "k0", new Uint8Array(SMALL_MAX_VALUE_BYTES).fill(0x61)),
    error: "value of",
  },
  {
    kind: "msgpack",
    name: "a frame over --max-frame-bytes",
    bytes: () => setRequest("msgpack", "k0", new Uint8Array(MAX_FRAME_BYTES).fill(0x61)),
    error: "over the limit",
    max_value_bytes: 2 * MAX_FRAME_BYTES,
  },
  {
    kind: "msgpack",
    name: "bytes after the value",
    bytes: () => withTrailingByte(setRequest("msgpack", "k0", encoder.encode("xy"))),
    error: "bytes after the request",
  },
];

for (const { kind, name, bytes, error, max_value_bytes = SMALL_MAX_VALUE_BYTES } of REFUSED_SETS) {
  test(`${kind}: a SET with ${name} is left to the general path, which refuses it`, async () => {
    const fast = await openServer(kind, true, { max_value_bytes });
    const general = await openServer(kind, false, { max_value_bytes });
    try {
      const taken = setRequest(kind, "k1", encoder.encode("taken"));
      const stream = concatBytes([taken, bytes(), getRequest(kind, "k0")]);
      const got = Buffer.from(await feed(fast, [stream], () => 0)).toString("latin1");
      const expected = Buffer.from(await feed(general, [stream], () => 0)).toString("latin1");
      expect(got).toBe(expected);
      expect(got).toContain(error);
      // Unless the stream was cut off, the GET after it finds k0 as it was stored ("zero").
      const cut_off = error.includes("Protocol error") || error.includes("over the limit");
      if (!cut_off) expect(got).toContain("zero");
      expect(fast.fast_sets, "the SET before it was started by takeSets").toBe(1);
      expect(fast.fast_bytes, "takeSets took that SET and nothing after it").toBe(taken.length);
    } finally {
      await fast.close();
      await general.close();
    }
    Bun.gc(true);
  });
}

/** Feeds `stream` to a server with and without the fast paths (`options`); both must answer alike. */
async function sameReplies(
  kind: "resp" | "msgpack",
  stream: Uint8Array,
  options: ServerOptions,
  before?: (server: Server) => void,
  after?: (fast: Server, general: Server, replies: string) => void,
): Promise<void> {
  const fast = await openServer(kind, true, options);
  const general = await openServer(kind, false, options);
  try {
    before?.(fast);
    before?.(general);
    const got = Buffer.from(await feed(fast, [stream], () => 0)).toString("latin1");
    const expected = Buffer.from(await feed(general, [stream], () => 0)).toString("latin1");
    expect(got).toBe(expected);
    after?.(fast, general, got);
  } finally {
    await fast.close();
    await general.close();
  }
  Bun.gc(true);
}

/** The msgpack replies in `bytes` (latin1 text), decoded. */
function msgpackReplies(text: string): unknown[] {
  const bytes = Buffer.from(text, "latin1");
  const replies: unknown[] = [];
  for (let at = 0; at + 4 <= bytes.length; ) {
    const length = bytes.readUInt32BE(at);
    replies.push(packr.unpack(bytes.subarray(at + 4, at + 4 + length)));
    at += 4 + length;
  }
  return replies;
}

/** The ops' counts and errors of a server's metrics. */
function opCounts(server: Server): Record<string, [number, number]> {
  return Object.fromEntries(
    Object.entries(server.metrics.summary().ops).map(([op, o]) => [op, [o.count, o.errors]]),
  );
}

for (const kind of ["resp", "msgpack"] as const) {
  test(`${kind}: more SETs in one chunk than one batch holds (entries, then bytes) are answered as the general path does`, async () => {
    const many = Array.from({ length: 3000 }, (_, i) =>
      setRequest(kind, `k${i % 40}`, encoder.encode(`v${i}`)),
    );
    await sameReplies(kind, concatBytes(many), {}, undefined, (fast, general) => {
      expect(fast.fast_sets).toBe(3000); // in groups of at most 1024 (SetCoalescer.fits)
      expect(opCounts(fast)).toEqual(opCounts(general));
      expect(fast.get("k39")).toEqual(general.get("k39"));
    });
    // 700 SETs of 3000 bytes: 2 MiB, over one record of max_batch_bytes (1 MiB).
    const large = Array.from({ length: 700 }, (_, i) =>
      setRequest(kind, `k${i % 40}`, new Uint8Array(3000).fill(i)),
    );
    await sameReplies(kind, concatBytes(large), {}, undefined, (fast, general) => {
      expect(fast.fast_sets).toBe(700);
      expect(fast.get("k19")).toEqual(general.get("k19"));
    });
  });

  test(`${kind}: a group of SETs with ids that run on by one, and one whose ids do not, answer each id in order`, async () => {
    const run_on = Array.from({ length: 20 }, (_, i) => 100 + i);
    const scattered = Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? 5000 - i : 70_000 + i));
    const ids = [...run_on, ...scattered];
    const sets = ids.map((id, i) => setRequest(kind, `k${i}`, encoder.encode("v"), id));
    await sameReplies(
      kind,
      concatBytes(sets),
      {},
      () => {},
      (fast, _general, replies) => {
        expect(fast.fast_sets).toBe(40);
        if (kind === "msgpack") expect(msgpackReplies(replies)).toEqual(ids.map((id) => [id, 0, true]));
        else expect(replies).toBe("+OK\r\n".repeat(40));
      },
    );
  });

  test(`${kind}: a failed write fails each SET of its group with the error reply, each counted as an error`, async () => {
    const sets = Array.from({ length: 20 }, (_, i) =>
      setRequest(kind, `k${i}`, encoder.encode("v"), 100 + i),
    );
    const stream = concatBytes([...sets, getRequest(kind, "k0")]);
    await sameReplies(
      kind,
      stream,
      {},
      (server) => server.failWrites(),
      (fast, general, replies) => {
        expect(fast.fast_sets).toBe(20);
        expect(opCounts(fast).set).toEqual([20, 20]);
        expect(opCounts(fast)).toEqual(opCounts(general));
        expect(replies.split("the write-ahead log is closed").length - 1).toBe(20);
        if (kind === "msgpack") {
          const ids = msgpackReplies(replies).map((reply) => (reply as unknown[])[0]);
          expect(ids.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i));
        }
        expect(replies).toContain("zero"); // the GET after them: k0 unchanged
      },
    );
  });

  test(`${kind}: a client cut off for unread replies gets no SET applied past the cut, as on the general path`, async () => {
    // 15 replies of 300 bytes wait in the output; the first SET's flush passes --max-output-bytes.
    const gets = Array.from({ length: 15 }, () => getRequest(kind, "k1"));
    const sets = ["a", "b", "c"].map((key) => setRequest(kind, key, encoder.encode("v")));
    const options = { max_output_bytes: MAX_FRAME_BYTES, stalled: true };
    await sameReplies(kind, concatBytes([...gets, ...sets]), options, undefined, (fast, general) => {
      for (const key of ["a", "b", "c"]) expect(fast.get(key), key).toEqual(general.get(key));
      expect(general.get("a")).toBeDefined(); // the general path ran the first SET before the cut
      expect(general.get("b")).toBeUndefined();
    });
  });
}
