/**
 * Hostile input on the wire (issue [3/4] item 5): fast-check properties against ONE spawned daemon.
 *
 * Four generators feed one checker: (a) arbitrary bytes as a frame body, (b) well-framed msgpack of
 * arbitrary values (deep nesting, huge declared lengths), (c) mutated valid requests (bit flips,
 * truncations, inserted and overwritten bytes), (d) raw unframed bytes (valid frames, random bytes
 * and stray length headers mixed). The checker models the framing of docs/protocol.md: every whole
 * frame gets exactly one well-formed `[id, code, result]`; a 0 or over-limit length gets
 * `[0, 2, msg]` and the connection is closed; otherwise the connection stays usable (a ping after
 * the input is answered `pong`). A case that does not finish within CASE_DEADLINE_MS fails (a hang).
 * After every case the daemon process is alive and a separate control connection reads a sentinel
 * key byte-exact; the daemon's RSS (VmRSS) before and after all properties must stay within
 * RSS_GROWTH_LIMIT_BYTES.
 *
 * Seeded: WALKV_SEED (fast-check prints seed and path on failure); WALKV_FUZZ_RUNS scales the runs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { Unpackr } from "msgpackr";
import { procStatusBytes } from "../../scripts/proc_status.ts";
import { Daemon, stopAllDaemons, waitUntil } from "../server/daemon.ts";
import { concat, frame, okBody, packr, type RawClient, testSeed } from "../server/raw_client.ts";

const SEED = testSeed(0x5eed_0005);
const RUNS = Number(process.env.WALKV_FUZZ_RUNS ?? 0) || 0;
const MiB = 1024 * 1024;
const MAX_FRAME_BYTES = MiB;
const MAX_KEY_BYTES = 1024;
const MAX_VALUE_BYTES = 64 * 1024;
/** A case that takes longer than this is a hang. */
const CASE_DEADLINE_MS = 5000;
const RSS_GROWTH_LIMIT_BYTES = 200 * MiB;
const PING_ID = 0xfffffff0;
const CONTROL_ID = 7;
const SENTINEL_KEY = "hostile:sentinel";
const SENTINEL_VALUE = packr.pack(new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x42]));
/** Decodes responses whatever the stored values hold (maps with non-string keys become Maps). */
const responseReader = new Unpackr({ mapsAsObjects: false, useRecords: false });
/** Op names (valid and near-valid) used to build envelopes. */
const OPS = ["ping", "get", "set", "del", "exists", "mget", "mset", "stats", "auth", "nope", "GET", ""];

let daemon: Daemon;
let control: RawClient;
let cases = 0;
const rss = { before_bytes: 0, after_bytes: 0, peak_bytes: 0, arena_before_bytes: 0 };

beforeAll(async () => {
  daemon = await Daemon.start({
    args: [
      "--fsync",
      "no",
      "--max-frame-bytes",
      String(MAX_FRAME_BYTES),
      "--max-key-bytes",
      String(MAX_KEY_BYTES),
      "--max-value-bytes",
      String(MAX_VALUE_BYTES),
      "--max-memory-bytes",
      String(256 * MiB),
    ],
  });
  control = await daemon.client();
  control.send([1, "set", SENTINEL_KEY, packr.unpack(SENTINEL_VALUE)]);
  expect(await control.next()).toEqual([1, 0, true]);
  rss.before_bytes = statusBytes("VmRSS");
  rss.arena_before_bytes = (await stats()).memory.arena_reserved_bytes;
});

afterAll(async () => {
  control?.close();
  if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
  await stopAllDaemons();
});

/** Runs per property: WALKV_FUZZ_RUNS if set, else `fallback` (sized to keep the file near 20 s). */
function runs(fallback: number): number {
  return RUNS > 0 ? RUNS : fallback;
}

/** A `/proc/<pid>/status` field of the daemon, in bytes. */
const statusBytes = (field: "VmRSS" | "VmHWM"): number => procStatusBytes(daemon.proc.pid!, field);

/** The daemon's `stats`, over the control connection. */
async function stats(): Promise<{
  keys: number;
  connections: number;
  memory: { arena_reserved_bytes: number };
}> {
  control.send([CONTROL_ID, "stats"]);
  const [id, code, result] = await deadline(control.next(), "control stats");
  expect([id, code]).toEqual([CONTROL_ID, 0]);
  return result as Awaited<ReturnType<typeof stats>>;
}

/** Rejects with a "hang" error if `promise` does not settle within CASE_DEADLINE_MS. */
async function deadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`hang: ${what} not within ${CASE_DEADLINE_MS} ms (seed ${SEED})`)),
      CASE_DEADLINE_MS,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What the framing rules of docs/protocol.md make of a byte stream. */
interface FrameModel {
  /** Whole frames with a valid length: each gets exactly one response. */
  readonly frames: number;
  /** A length of 0 or over the limit came after them: `[0, 2, msg]`, then the connection closes. */
  readonly refused: boolean;
}

/** Splits `stream` into frames as the daemon must; `stream` must not end inside a frame. */
function modelFrames(stream: Uint8Array): FrameModel {
  const view = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  let pos = 0;
  let frames = 0;
  while (pos < stream.length) {
    const length = view.getUint32(pos);
    if (length === 0 || length > MAX_FRAME_BYTES) return { frames, refused: true };
    pos += 4 + length;
    if (pos > stream.length) throw new Error("modelFrames: stream ends inside a frame");
    frames++;
  }
  return { frames, refused: false };
}

/**
 * `bytes` followed by zeros so that it does not end inside a frame (a partial header is completed
 * with zero bytes, a partial body with zero bytes), so every frame the daemon reads is answered.
 */
function completeStream(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  while (pos < bytes.length) {
    if (bytes.length - pos < 4)
      return completeStream(concat(bytes, new Uint8Array(4 - (bytes.length - pos))));
    const length = view.getUint32(pos);
    if (length === 0 || length > MAX_FRAME_BYTES) return bytes;
    pos += 4 + length;
  }
  return pos === bytes.length ? bytes : concat(bytes, new Uint8Array(pos - bytes.length));
}

/** Asserts `body` is a response `[id, code, result]` of protocol v1; returns it decoded. */
function expectResponse(body: Uint8Array, where: string): [number, number, unknown] {
  const response = responseReader.unpack(body) as unknown;
  const shaped =
    Array.isArray(response) &&
    response.length === 3 &&
    Number.isInteger(response[0]) &&
    response[0] >= 0 &&
    response[0] < 2 ** 32 &&
    [0, 1, 2, 3, 4].includes(response[1]) &&
    (response[1] === 0 || typeof response[2] === "string");
  if (!shaped) throw new Error(`${where}: not a protocol response: ${JSON.stringify(response)}`);
  return response as [number, number, unknown];
}

/**
 * Sends `bytes` (completed to whole frames) on a fresh connection and checks the daemon's answer
 * against {@link modelFrames}, then that the daemon is alive and the sentinel unchanged.
 */
async function checkStream(bytes: Uint8Array): Promise<void> {
  cases++;
  const stream = completeStream(bytes);
  const model = modelFrames(stream);
  const c = await deadline(daemon.client(), "connect");
  try {
    c.sendRaw(stream);
    if (!model.refused) c.sendFrame(packr.pack([PING_ID, "ping"]));
    for (let i = 0; i < model.frames; i++) {
      expectResponse(await deadline(c.nextFrame(), `response ${i + 1} of ${model.frames}`), `frame ${i}`);
    }
    if (model.refused) {
      const [id, code] = expectResponse(await deadline(c.nextFrame(), "refusal"), "refusal");
      expect([id, code]).toEqual([0, 2]);
      await deadline(c.closed, "close after a refused frame");
    } else {
      expect(await deadline(c.next(), "ping after the input")).toEqual([PING_ID, 0, "pong"]);
    }
  } finally {
    c.close();
  }
  await expectDaemonIntact();
}

/** The process runs and the control connection reads the sentinel key byte-exact. */
async function expectDaemonIntact(): Promise<void> {
  expect(daemon.proc.exitCode).toBeNull();
  control.send([CONTROL_ID, "get", SENTINEL_KEY]);
  expect(await deadline(control.nextFrame(), "control get")).toEqual(okBody(CONTROL_ID, SENTINEL_VALUE));
}

// ---- generators ----

const id = fc.oneof(fc.nat(127), fc.nat({ max: 2 ** 32 - 1 }));
const key = fc.oneof(
  fc.string({ maxLength: 24 }).map((s) => `fz:${s}`),
  fc.uint8Array({ maxLength: 24 }).map((b) => concat(new TextEncoder().encode("fz:"), b)),
);
/** Values msgpackr can pack, small enough for the value limit. */
const value = fc.anything({
  maxDepth: 4,
  maxKeys: 6,
  withTypedArray: true,
  withNullPrototype: false,
  withBigInt: false,
  withDate: true,
  withMap: true,
  withSet: true,
});

/** A valid request body. */
const validRequest: fc.Arbitrary<Uint8Array> = fc
  .oneof(
    fc.tuple(id).map(([i]) => [i, "ping"]),
    fc.tuple(id, key).map(([i, k]) => [i, "get", k]),
    fc.tuple(id, key, value).map(([i, k, v]) => [i, "set", k, v]),
    fc.tuple(id, key, value).map(([i, k, v]) => [i, "set", k, v, {}]),
    fc.tuple(id, key).map(([i, k]) => [i, "del", k]),
    fc.tuple(id, key).map(([i, k]) => [i, "exists", k]),
    fc.tuple(id, fc.array(key, { maxLength: 5 })).map(([i, ks]) => [i, "mget", ks]),
    fc
      .tuple(id, fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 4 }))
      .map(([i, kvs]) => [i, "mset", kvs.flat()]),
    fc.tuple(id).map(([i]) => [i, "stats"]),
  )
  .map((request) => packr.pack(request));

/** msgpack headers that declare far more than the frame holds (or the maximum a type allows). */
const hugeHeader = fc.constantFrom(
  [0xdb, 0xff, 0xff, 0xff, 0xff], // str32
  [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
  [0xdd, 0xff, 0xff, 0xff, 0xff], // array32
  [0xdf, 0xff, 0xff, 0xff, 0xff], // map32
  [0xdc, 0xff, 0xff], // array16
  [0xde, 0xff, 0xff], // map16
  [0xda, 0xff, 0xff], // str16
  [0xc1], // never used
);

/** `depth` nested one-element arrays (or maps) around nil: deeper than the reader's 256 limit. */
const deepValue = fc
  .tuple(fc.integer({ min: 1, max: 5000 }), fc.boolean())
  .map(([depth, maps]) =>
    concat(maps ? repeat([0x81, 0xa1, 0x6b], depth) : new Uint8Array(depth).fill(0x91), [0xc0]),
  );

function repeat(pattern: number[], times: number): Uint8Array {
  const out = new Uint8Array(pattern.length * times);
  for (let i = 0; i < times; i++) out.set(pattern, i * pattern.length);
  return out;
}

/** A request envelope `[id, op, ...]` whose last argument is raw, hostile msgpack. */
const hostileEnvelope = fc
  .tuple(
    id,
    fc.constantFrom(...OPS),
    fc.array(value, { maxLength: 2 }),
    fc.oneof(
      hugeHeader.map((h) => Uint8Array.from(h)),
      deepValue,
    ),
  )
  .map(([i, op, args, raw]) => {
    const head = packr.pack([i, op, ...args, null]);
    // Replace the trailing nil (0xc0) by the raw value; the array header already counts it.
    return concat(head.subarray(0, head.length - 1), raw);
  });

type Mutation =
  | { kind: "flip"; at: number; bit: number }
  | { kind: "truncate"; at: number }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "overwrite"; at: number; byte: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ maxLength: 8 }) }),
  fc.record({ kind: fc.constant("overwrite" as const), at: fc.nat(), byte: fc.nat(255) }),
);

function mutate(body: Uint8Array, m: Mutation): Uint8Array {
  const at = body.length === 0 ? 0 : m.at % (body.length + (m.kind === "insert" ? 1 : 0));
  switch (m.kind) {
    case "flip": {
      const out = body.slice();
      if (out.length > 0) out[at]! ^= 1 << m.bit;
      return out;
    }
    case "truncate":
      return body.subarray(0, at);
    case "insert":
      return concat(body.subarray(0, at), m.bytes, body.subarray(at));
    case "overwrite": {
      const out = body.slice();
      if (out.length > 0) out[at] = m.byte;
      return out;
    }
  }
}

/** A frame header declaring `length` bytes (0, small, near or over the limit). */
const strayHeader = fc
  .oneof(
    fc.constant(0),
    fc.integer({ min: 1, max: 64 }),
    fc.integer({ min: MAX_FRAME_BYTES - 16, max: MAX_FRAME_BYTES + 16 }),
    fc.nat({ max: 2 ** 32 - 1 }),
  )
  .map((length) => {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, length);
    return out;
  });

/** Raw stream pieces: valid frames, random bytes, stray length headers. */
const rawStream = fc
  .array(
    fc.oneof(
      { weight: 3, arbitrary: validRequest.map((body) => frame(body)) },
      { weight: 2, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 48 }) },
      { weight: 1, arbitrary: strayHeader },
    ),
    { minLength: 1, maxLength: 8 },
  )
  .map((parts) => concat(...parts));

// ---- properties ----

function check(arbitrary: fc.Arbitrary<Uint8Array>, numRuns: number) {
  return fc.assert(
    fc.asyncProperty(arbitrary, (bytes) => checkStream(bytes)),
    { seed: SEED, numRuns, endOnFailure: false },
  );
}

describe(`hostile protocol input (seed ${SEED})`, () => {
  test("a refused frame after pipelined requests: their responses first, in order, then [0, 2, msg]", async () => {
    // Found by property (d): the refusal used to overtake a pending write's response, and the
    // connection closed before the write (and a ping queued behind it) were answered.
    const c = await daemon.client();
    try {
      c.sendRaw(concat(frame(packr.pack([1, "del", "fz:x"])), frame(packr.pack([2, "ping"])), [0, 0, 0, 0]));
      expect(await deadline(c.next(), "del")).toEqual([1, 0, false]);
      expect(await deadline(c.next(), "ping")).toEqual([2, 0, "pong"]);
      expect(await deadline(c.next(), "refusal")).toEqual([0, 2, "empty frame; closing the connection"]);
      await deadline(c.closed, "close after the refusal");
    } finally {
      c.close();
    }
  });

  test("(a) arbitrary bytes as a frame body: one answer, the connection stays usable", async () => {
    await check(
      fc.uint8Array({ minLength: 1, maxLength: 256 }).map((body) => frame(body)),
      runs(1000),
    );
  }, 60_000);

  test("(b) well-framed msgpack of arbitrary values, deep nesting, huge declared lengths", async () => {
    const body = fc.oneof(
      value.map((v) => packr.pack(v)),
      fc
        .tuple(id, fc.constantFrom(...OPS), fc.array(value, { maxLength: 4 }))
        .map(([i, op, args]) => packr.pack([i, op, ...args])),
      hostileEnvelope,
      deepValue,
    );
    await check(
      body.map((b) => frame(b)),
      runs(1000),
    );
  }, 60_000);

  test("(c) mutated valid requests: bit flips, truncations, inserted bytes", async () => {
    const mutated = fc
      .tuple(validRequest, fc.array(mutation, { minLength: 1, maxLength: 4 }))
      .map(([body, ms]) => ms.reduce(mutate, body));
    // An empty body makes a 0-length frame: refused and closed, as the protocol says.
    await check(
      mutated.map((b) => frame(b)),
      runs(1000),
    );
  }, 60_000);

  test("(d) raw unframed bytes: frames, garbage and stray headers mixed", async () => {
    await check(rawStream, runs(1000));
  }, 60_000);

  test("the sentinel key kept its value; no connection leaked; memory stayed bounded", async () => {
    await expectDaemonIntact();
    // The daemon counts a connection closed when it sees the close: only the control one stays.
    await waitUntil(async () => (await stats()).connections === 1, "fuzzed connections to close");
    rss.after_bytes = statusBytes("VmRSS");
    rss.peak_bytes = statusBytes("VmHWM");
    const after = await stats();
    // Keys the fuzzed requests legitimately stored grow the arena; everything else must stay bounded.
    const arena_growth_bytes = after.memory.arena_reserved_bytes - rss.arena_before_bytes;
    console.log(
      `hostile protocol: ${cases} cases (seed ${SEED}); daemon VmRSS ${mib(rss.before_bytes)} MiB before, ` +
        `${mib(rss.after_bytes)} MiB after (VmHWM ${mib(rss.peak_bytes)} MiB); ${after.keys} keys stored, ` +
        `arena reserved +${mib(arena_growth_bytes)} MiB`,
    );
    expect(cases).toBeGreaterThan(0);
    expect(rss.after_bytes - rss.before_bytes).toBeLessThan(RSS_GROWTH_LIMIT_BYTES + arena_growth_bytes);
  });
});

function mib(bytes: number): string {
  return (bytes / MiB).toFixed(1);
}
