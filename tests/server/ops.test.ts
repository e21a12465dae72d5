/**
 * End-to-end tests of protocol v1 over the real socket: every op and its exact result, byte-exact
 * values, request ordering under pipelining, every error code of a request, and hostile input.
 * One daemon (fsync always, small limits) serves the whole file.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { Daemon, stopAllDaemons } from "./daemon.ts";
import {
  concat,
  frame,
  msgBin,
  msgStr,
  okBody,
  packr,
  type RawClient,
  type Response,
  rawRequest,
  testSeed,
} from "./raw_client.ts";

const MAX_KEY_BYTES = 100;
const MAX_VALUE_BYTES = 4000;
const MAX_BATCH_BYTES = 8192;
const MAX_FRAME_BYTES = 65536;

let daemon: Daemon;

/** The fields of the `stats` result these tests read. */
interface Stats {
  keys: number;
  connections: number;
  ops: Record<string, number>;
  memory: Record<string, number>;
  lsn: Record<string, number>;
  wal: { bytes_written: number; fsyncs: number; state: string };
  checkpoint: Record<string, number>;
}

beforeAll(async () => {
  daemon = await Daemon.start({
    args: [
      "--fsync",
      "always",
      "--max-key-bytes",
      String(MAX_KEY_BYTES),
      "--max-value-bytes",
      String(MAX_VALUE_BYTES),
      "--max-batch-bytes",
      String(MAX_BATCH_BYTES),
      "--max-frame-bytes",
      String(MAX_FRAME_BYTES),
    ],
  });
});

afterAll(async () => {
  if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
  await stopAllDaemons();
});

/** Runs `body` with a fresh connection, closed afterwards. */
async function withClient<T>(body: (c: RawClient) => Promise<T>): Promise<T> {
  const c = await daemon.client();
  try {
    return await body(c);
  } finally {
    c.close();
  }
}

/** Sends one hand-encoded request body and returns its raw response body. */
async function rawCall(c: RawClient, body: Uint8Array): Promise<Uint8Array> {
  c.sendFrame(body);
  return await c.nextFrame();
}

describe("ops", () => {
  // First test of the file: the daemon is fresh, so counts are exact.
  test("stats on a fresh daemon counts exactly what was done", async () => {
    await withClient(async (c) => {
      for (const k of ["s1", "s2", "s3"]) expect((await c.call("set", k, 1))[1]).toBe(0);
      expect((await c.call("get", "s1"))[2]).toBe(1);
      const [, code, stats] = (await c.call("stats")) as [number, number, Stats];
      expect(code).toBe(0);
      expect(stats.keys).toBe(3);
      expect(stats.connections).toBe(1);
      expect(stats.ops.set).toBe(3);
      expect(stats.ops.get).toBe(1);
      expect(stats.memory.arena_reserved_bytes).toBeGreaterThan(0);
      expect(stats.memory.arena_live_bytes).toBeGreaterThan(0);
      expect(stats.memory.index_bytes).toBeGreaterThan(0);
      expect(stats.memory.wal_buffer_bytes).toBeGreaterThan(0);
      expect(stats.lsn.visible).toBe(3);
      expect(stats.lsn.durable).toBe(3);
      expect(stats.lsn.next).toBe(4);
      expect(stats.wal.bytes_written).toBeGreaterThan(0);
      expect(stats.wal.fsyncs).toBeGreaterThanOrEqual(1);
      expect(stats.wal.state).toBe("running");
      expect(stats.checkpoint.failures).toBe(0);
    });
  });

  test("ping", async () => {
    await withClient(async (c) => expect(await c.call("ping")).toEqual([1, 0, "pong"]));
  });

  test("get, set (with nil and empty-map opts), exists, del", async () => {
    await withClient(async (c) => {
      expect(await c.call("get", "k")).toEqual([1, 0, null]);
      expect(await c.call("exists", "k")).toEqual([2, 0, false]);
      expect(await c.call("set", "k", "v1")).toEqual([3, 0, true]);
      expect(await c.call("get", "k")).toEqual([4, 0, "v1"]);
      expect(await c.call("exists", "k")).toEqual([5, 0, true]);
      expect(await c.call("set", "k", { a: [1, 2] }, {})).toEqual([6, 0, true]);
      expect(await c.call("get", "k")).toEqual([7, 0, { a: [1, 2] }]);
      expect(await c.call("set", "k", 42, null)).toEqual([8, 0, true]);
      expect(await c.call("get", "k")).toEqual([9, 0, 42]);
      expect(await c.call("del", "k")).toEqual([10, 0, true]);
      expect(await c.call("del", "k")).toEqual([11, 0, false]);
      expect(await c.call("get", "k")).toEqual([12, 0, null]);
      expect(await c.call("exists", "k")).toEqual([13, 0, false]);
      expect(await c.call("set", "nil-value", null)).toEqual([14, 0, true]);
      expect(await c.call("exists", "nil-value")).toEqual([15, 0, true]);
    });
  });

  test("mget returns nil for missing keys, in key order", async () => {
    await withClient(async (c) => {
      await c.call("set", "mg1", "one");
      await c.call("set", "mg3", 3);
      expect(await c.call("mget", ["mg1", "mg2", "mg3", "mg1"])).toEqual([3, 0, ["one", null, 3, "one"]]);
      expect(await c.call("mget", [])).toEqual([4, 0, []]);
    });
  });

  test("mset is atomic: all pairs or none", async () => {
    await withClient(async (c) => {
      expect(await c.call("mset", ["ms1", 1, "ms2", "two"])).toEqual([1, 0, true]);
      expect(await c.call("mget", ["ms1", "ms2"])).toEqual([2, 0, [1, "two"]]);
      // A bad key in the middle: nothing is written.
      expect((await c.call("mset", ["ms3", 3, 7, 4]))[1]).toBe(1);
      // A value over the limit after a good pair: nothing is written.
      expect((await c.call("mset", ["ms4", 4, "ms5", "x".repeat(MAX_VALUE_BYTES)]))[1]).toBe(2);
      expect(await c.call("mget", ["ms3", "ms4", "ms5"])).toEqual([5, 0, [null, null, null]]);
      // Later pairs of one mset win over earlier ones for the same key.
      expect(await c.call("mset", ["ms6", 1, "ms6", 2])).toEqual([6, 0, true]);
      expect(await c.call("get", "ms6")).toEqual([7, 0, 2]);
    });
  });

  test("checkpoint returns {lsn, bytes, ms} and writes data.db", async () => {
    await withClient(async (c) => {
      await c.call("set", "cp", "x");
      const [id, code, result] = (await c.call("checkpoint")) as [number, number, Record<string, number>];
      expect([id, code]).toEqual([2, 0]);
      expect(Object.keys(result).sort()).toEqual(["bytes", "lsn", "ms"]);
      expect(result.lsn).toBeGreaterThan(0);
      expect(result.bytes).toBeGreaterThan(0);
      expect(result.ms).toBeGreaterThanOrEqual(0);
      const data_db = path.join(daemon.data_dir, "data.db");
      expect(fs.statSync(data_db).size).toBe(result.bytes!);
      const [, , stats] = (await c.call("stats")) as [number, number, Stats];
      expect(stats.ops.checkpoint).toBe(1);
      expect(stats.checkpoint.redo_lsn).toBe(result.lsn!);
      expect(stats.checkpoint.bytes).toBe(result.bytes!);
      expect(stats.checkpoint.failures).toBe(0);
      expect(stats.checkpoint.finished_unix_ms).toBeGreaterThan(0);
    });
  });
});

describe("byte-exact values", () => {
  const values: Array<[string, number[]]> = [
    ["float32 1.5", [0xca, 0x3f, 0xc0, 0x00, 0x00]],
    ["float64 1.5", [0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]],
    ["uint8-encoded 5", [0xcc, 0x05]],
    ["int64-encoded 5", [0xd3, 0, 0, 0, 0, 0, 0, 0, 0x05]],
    ["str8-encoded short string", [0xd9, 0x03, 0x61, 0x62, 0x63]],
    ["map {b:1, a:2} in that order", [0x82, 0xa1, 0x62, 0x01, 0xa1, 0x61, 0x02]],
    ["map16 with one entry", [0xde, 0x00, 0x01, 0xa1, 0x7a, 0xc0]],
    ["array32 of two", [0xdd, 0, 0, 0, 2, 0xc2, 0xc3]],
    [
      "nested ext types",
      [
        0x93, // [fixext1, {x: ext8}, [fixext16, ext32]]
        0xd4,
        0x05,
        0x01,
        0x81,
        0xa1,
        0x78,
        0xc7,
        0x03,
        0x07,
        0xaa,
        0xbb,
        0xcc,
        0x92,
        0xd8,
        0x7f,
        ...new Array<number>(16).fill(0xee),
        0xc9,
        0,
        0,
        0,
        2,
        0x09,
        0x01,
        0x02,
      ],
    ],
    ["timestamp ext -1", [0xd6, 0xff, 0, 0, 0, 0]],
  ];

  for (const [name, bytes] of values) {
    test(`${name} comes back byte for byte (get and mget)`, async () => {
      await withClient(async (c) => {
        const key = msgStr(`exact:${name}`);
        expect(await rawCall(c, rawRequest([1], msgStr("set"), key, bytes))).toEqual(okBody(1, [0xc3]));
        expect(await rawCall(c, rawRequest([2], msgStr("get"), key))).toEqual(okBody(2, bytes));
        const mget = rawRequest([3], msgStr("mget"), concat([0x92], key, key));
        expect(await rawCall(c, mget)).toEqual(okBody(3, concat([0x92], bytes, bytes)));
      });
    });
  }

  test("a str key and a bin key with the same bytes are the same key", async () => {
    await withClient(async (c) => {
      const name = new TextEncoder().encode("same-key");
      const as_str = msgStr("same-key");
      const as_bin = msgBin(name);
      const as_str8 = concat([0xd9, name.length], name);
      expect(await rawCall(c, rawRequest([1], msgStr("set"), as_str, [0x07]))).toEqual(okBody(1, [0xc3]));
      expect(await rawCall(c, rawRequest([2], msgStr("get"), as_bin))).toEqual(okBody(2, [0x07]));
      expect(await rawCall(c, rawRequest([3], msgStr("get"), as_str8))).toEqual(okBody(3, [0x07]));
      expect(await rawCall(c, rawRequest([4], msgStr("set"), as_bin, [0x08]))).toEqual(okBody(4, [0xc3]));
      expect(await rawCall(c, rawRequest([5], msgStr("get"), as_str))).toEqual(okBody(5, [0x08]));
      expect(await rawCall(c, rawRequest([6], msgStr("del"), as_bin))).toEqual(okBody(6, [0xc3]));
      expect(await rawCall(c, rawRequest([7], msgStr("exists"), as_str))).toEqual(okBody(7, [0xc2]));
    });
  });

  test("binary keys with every byte value round-trip", async () => {
    await withClient(async (c) => {
      const key = Uint8Array.from({ length: 100 }, (_, i) => (i * 37) & 0xff);
      expect(await c.call("set", key, "bin")).toEqual([1, 0, true]);
      expect(await c.call("get", key)).toEqual([2, 0, "bin"]);
    });
  });
});

describe("ordering", () => {
  test("10,000 pipelined mixed requests are answered in order with the right results", async () => {
    const seed = testSeed(20240701);
    const rng = prng(seed);
    const model = new Map<string, number>();
    const requests: unknown[] = [];
    const expected: Response[] = [];
    for (let id = 1; id <= 10_000; id++) {
      const key = `order:${randomInt(rng, 50)}`;
      const pick = randomInt(rng, 100);
      if (pick < 40) {
        requests.push([id, "set", key, id]);
        model.set(key, id);
        expected.push([id, 0, true]);
      } else if (pick < 70) {
        requests.push([id, "get", key]);
        expected.push([id, 0, model.get(key) ?? null]);
      } else if (pick < 80) {
        requests.push([id, "del", key]);
        expected.push([id, 0, model.delete(key)]);
      } else if (pick < 88) {
        requests.push([id, "exists", key]);
        expected.push([id, 0, model.has(key)]);
      } else if (pick < 94) {
        const other = `order:${randomInt(rng, 50)}`;
        requests.push([id, "mget", [key, other]]);
        expected.push([id, 0, [model.get(key) ?? null, model.get(other) ?? null]]);
      } else {
        requests.push([id, "ping"]);
        expected.push([id, 0, "pong"]);
      }
    }
    await withClient(async (c) => {
      c.sendRaw(concat(...requests.map((r) => framed(r))));
      for (let i = 0; i < expected.length; i++) {
        const got = await c.next();
        if (!Bun.deepEquals(got, expected[i])) {
          throw new Error(
            `seed ${seed}: response ${i}: got ${JSON.stringify(got)}, want ${JSON.stringify(expected[i])}`,
          );
        }
      }
    });
  }, 30_000);

  test("read-after-write in one pipeline sees the write", async () => {
    await withClient(async (c) => {
      c.sendRaw(
        concat(
          framed([1, "set", "raw-k", "a"]),
          framed([2, "get", "raw-k"]),
          framed([3, "mset", ["raw-k", "b", "raw-j", "c"]]),
          framed([4, "mget", ["raw-k", "raw-j"]]),
          framed([5, "del", "raw-k"]),
          framed([6, "exists", "raw-k"]),
          framed([7, "set", "raw-k", "d"]),
          framed([8, "get", "raw-k"]),
        ),
      );
      const got: Response[] = [];
      for (let i = 0; i < 8; i++) got.push(await c.next());
      expect(got).toEqual([
        [1, 0, true],
        [2, 0, "a"],
        [3, 0, true],
        [4, 0, ["b", "c"]],
        [5, 0, true],
        [6, 0, false],
        [7, 0, true],
        [8, 0, "d"],
      ]);
    });
  });
});

function framed(request: unknown): Uint8Array {
  return frame(packr.pack(request));
}

const TRAILING = /exactly one msgpack value: bytes after the request/;

describe("error code 1: bad request (the connection stays usable)", () => {
  const cases: Array<[string, Uint8Array, number, RegExp]> = [
    ["not an array", packr.pack("hello"), 0, /array/],
    ["a map", packr.pack({ id: 1 }), 0, /array/],
    ["an array of one", packr.pack([1]), 0, /array/],
    ["id a string", packr.pack(["x", "ping"]), 0, /id/],
    ["id negative", packr.pack([-1, "ping"]), 0, /id/],
    ["id over uint32", rawRequest([0xcf, 0, 0, 0, 1, 0, 0, 0, 0], msgStr("ping")), 0, /id/],
    ["op not a string", packr.pack([6, 7]), 6, /op/],
    ["unknown op", packr.pack([7, "frobnicate"]), 7, /unknown op "frobnicate"/],
    ["op in upper case", packr.pack([8, "PING"]), 8, /unknown op/],
    ["get without key", packr.pack([9, "get"]), 9, /get takes 1 argument, got 0/],
    ["ping with an argument", packr.pack([10, "ping", "x"]), 10, /ping takes 0 arguments, got 1/],
    ["set with one argument", packr.pack([11, "set", "k"]), 11, /set takes 2 to 3 arguments, got 1/],
    ["set with four arguments", packr.pack([12, "set", "k", 1, {}, 2]), 12, /set takes 2 to 3/],
    ["mget with two arguments", packr.pack([13, "mget", ["a"], ["b"]]), 13, /mget takes 1/],
    ["key an integer", packr.pack([14, "get", 5]), 14, /key must be a msgpack str or bin/],
    ["key nil", packr.pack([15, "del", null]), 15, /key must be/],
    ["key an array", packr.pack([16, "exists", ["a"]]), 16, /key must be/],
    ["mget keys not an array", packr.pack([17, "mget", "a"]), 17, /mget takes an array/],
    ["mget key not a key", packr.pack([18, "mget", ["a", 1]]), 18, /key must be/],
    ["mset odd array", packr.pack([19, "mset", ["a", 1, "b"]]), 19, /mset takes an array/],
    ["mset empty array", packr.pack([20, "mset", []]), 20, /mset takes an array/],
    ["value is 0xc1 (never used)", rawRequest([21], msgStr("set"), msgStr("k"), [0xc1]), 21, /value/],
    ["value truncated", rawRequest([22], msgStr("set"), msgStr("k"), [0xd9, 0x05, 0x61]), 22, /value/],
    [
      "value nested over 256 deep",
      rawRequest([23], msgStr("set"), msgStr("k"), new Array<number>(300).fill(0x91).concat([0xc0])),
      23,
      /value/,
    ],
    ["set opts an integer", packr.pack([24, "set", "k", "v", 5]), 24, /options/],
    ["set opts a non-empty map", packr.pack([25, "set", "k", "v", { ttl: 5 }]), 25, /options/],
    ["set opts an array", packr.pack([26, "set", "k", "v", []]), 26, /options/],
    ["trailing garbage after ping", concat(packr.pack([27, "ping"]), [0x01, 0x02]), 27, TRAILING],
    ["trailing garbage after get", concat(packr.pack([28, "get", "k"]), [0xc0]), 28, TRAILING],
    [
      "trailing garbage after set",
      concat(packr.pack([29, "set", "trailing", "v"]), [0xa1, 0x78]),
      29,
      TRAILING,
    ],
    ["auth when no token is configured", packr.pack([30, "auth", "t"]), 30, /no token/],
  ];

  for (const [name, body, id, message] of cases) {
    test(name, async () => {
      await withClient(async (c) => {
        c.sendFrame(body);
        const [got_id, code, result] = await c.next();
        expect([got_id, code]).toEqual([id, 1]);
        expect(typeof result).toBe("string");
        expect(result as string).toMatch(message);
        expect(await c.call("ping")).toEqual([1, 0, "pong"]);
      });
    });
  }

  test("a set with trailing garbage does not write", async () => {
    await withClient(async (c) => {
      c.sendFrame(concat(packr.pack([1, "set", "trailing-2", "v"]), [0xc0]));
      expect((await c.next())[1]).toBe(1);
      expect(await c.call("get", "trailing-2")).toEqual([1, 0, null]);
    });
  });
});

describe("error code 2: too large", () => {
  test("key over --max-key-bytes (get and set)", async () => {
    await withClient(async (c) => {
      const key = "k".repeat(MAX_KEY_BYTES + 1);
      const [, code, message] = await c.call("get", key);
      expect(code).toBe(2);
      expect(message).toBe(`key of ${MAX_KEY_BYTES + 1} bytes is over the limit of ${MAX_KEY_BYTES}`);
      expect((await c.call("set", key, 1))[1]).toBe(2);
      expect(await c.call("set", "k".repeat(MAX_KEY_BYTES), 1)).toEqual([3, 0, true]);
    });
  });

  test("value over --max-value-bytes", async () => {
    await withClient(async (c) => {
      const value = "x".repeat(MAX_VALUE_BYTES); // str16: 3 + MAX_VALUE_BYTES bytes
      const [, code, message] = await c.call("set", "big", value);
      expect(code).toBe(2);
      expect(message).toMatch(/value of \d+ bytes is over the limit of 4000/);
      expect(await c.call("get", "big")).toEqual([2, 0, null]);
      expect(await c.call("set", "big", "x".repeat(MAX_VALUE_BYTES - 3))).toEqual([3, 0, true]);
    });
  });

  test("mset over --max-batch-bytes writes nothing", async () => {
    await withClient(async (c) => {
      const v = "y".repeat(3000);
      const [, code] = await c.call("mset", ["b1", v, "b2", v, "b3", v]);
      expect(code).toBe(2);
      expect(await c.call("mget", ["b1", "b2", "b3"])).toEqual([2, 0, [null, null, null]]);
    });
  });

  test("a frame over --max-frame-bytes gets [0, 2, msg], then the connection is closed", async () => {
    await withClient(async (c) => {
      c.sendRaw(Uint8Array.from([0x00, 0x01, 0x00, 0x01])); // 65537 bytes announced
      const [id, code, message] = await c.next();
      expect([id, code]).toEqual([0, 2]);
      expect(message).toMatch(/65537 bytes is over the limit of 65536/);
      await c.closed;
    });
  });

  test("a frame of exactly --max-frame-bytes is accepted", async () => {
    await withClient(async (c) => {
      // [1, "set", "edge", <bin padding>] filling the frame exactly; the value is then over
      // --max-value-bytes, so the answer is code 2 — but as a response, not a cut connection.
      const head = rawRequest([1], msgStr("set"), msgStr("edge"), []);
      const pad = MAX_FRAME_BYTES - head.length - 5;
      const body = concat(head, [0xc6, 0, 0, pad >>> 8, pad & 0xff], new Uint8Array(pad));
      expect(body.length).toBe(MAX_FRAME_BYTES);
      c.sendFrame(body);
      expect((await c.next()).slice(0, 2)).toEqual([1, 2]);
      expect(await c.call("ping")).toEqual([1, 0, "pong"]);
    });
  });
});

describe("hostile input", () => {
  test("a zero-length frame gets [0, 2, msg] and the connection is closed", async () => {
    await withClient(async (c) => {
      c.sendRaw(new Uint8Array(4));
      const [id, code, message] = await c.next();
      expect([id, code]).toEqual([0, 2]);
      expect(message).toMatch(/empty frame/);
      await c.closed;
    });
  });

  test("a garbage body gets an error with id 0 and the connection stays usable", async () => {
    await withClient(async (c) => {
      c.sendFrame(Uint8Array.from([0xc1, 0xff, 0x00, 0x13]));
      const [id, code] = await c.next();
      expect([id, code]).toEqual([0, 1]);
      expect(await c.call("ping")).toEqual([1, 0, "pong"]);
    });
  });

  test("half a frame, then disconnect: the daemon carries on", async () => {
    const c = await daemon.client();
    c.sendRaw(Uint8Array.from([0, 0, 0, 100, 0x93, 0x01, 0xa3]));
    c.close();
    await c.closed;
    await withClient(async (d) => expect(await d.call("ping")).toEqual([1, 0, "pong"]));
  });

  test("random frame bodies (seeded) on several connections: one answer each, daemon unaffected", async () => {
    const seed = testSeed(20240702);
    const rng = prng(seed);
    const observer = await daemon.client();
    try {
      const fuzzers = await Promise.all([0, 1, 2, 3].map(() => daemon.client()));
      const counts: number[] = [];
      for (const f of fuzzers) {
        const frames: Uint8Array[] = [];
        const n = 100 + randomInt(rng, 100);
        for (let i = 0; i < n; i++) {
          const body = Uint8Array.from({ length: 1 + randomInt(rng, 200) }, () => randomInt(rng, 256));
          if (isArrayHead(body[0]!)) body[0] = 0xc1; // never a request: every answer is [0, 1, msg]
          frames.push(frame(body));
        }
        f.sendRaw(concat(...frames, framed([4242, "ping"])));
        counts.push(n);
      }
      for (const [i, f] of fuzzers.entries()) {
        for (let k = 0; k < counts[i]!; k++) {
          const [id, code] = await f.next();
          if (id !== 0 || code !== 1)
            throw new Error(`seed ${seed}: fuzzer ${i} frame ${k}: [${id}, ${code}]`);
        }
        expect(await f.next()).toEqual([4242, 0, "pong"]);
        f.close();
      }
      expect(await observer.call("ping")).toEqual([1, 0, "pong"]);
    } finally {
      observer.close();
    }
  });

  test("mutated valid requests (seeded): every frame answered, codes 0-2, daemon unaffected", async () => {
    const seed = testSeed(20240703);
    const rng = prng(seed);
    const templates = [
      packr.pack([1, "set", "fuzz:a", { x: [1, 2, 3], y: "text" }]),
      packr.pack([2, "mset", ["fuzz:b", 1, "fuzz:c", [true, null]]]),
      packr.pack([3, "mget", ["fuzz:a", "fuzz:b"]]),
      packr.pack([4, "get", "fuzz:c"]),
      packr.pack([5, "del", "fuzz:b"]),
    ];
    const c = await daemon.client();
    try {
      const frames: Uint8Array[] = [];
      const n = 2000;
      for (let i = 0; i < n; i++) {
        const body = templates[randomInt(rng, templates.length)]!.slice();
        for (let flips = 1 + randomInt(rng, 3); flips > 0; flips--) {
          body[randomInt(rng, body.length)] = randomInt(rng, 256);
        }
        frames.push(frame(body));
      }
      c.sendRaw(concat(...frames, framed([4242, "ping"])));
      for (let k = 0; k < n; k++) {
        const [, code] = await c.next();
        if (code !== 0 && code !== 1 && code !== 2) throw new Error(`seed ${seed}: frame ${k}: code ${code}`);
      }
      expect(await c.next()).toEqual([4242, 0, "pong"]);
    } finally {
      c.close();
    }
  }, 20_000);

  test("random raw bytes (seeded) on several connections: cut off, another connection unaffected", async () => {
    const seed = testSeed(20240704);
    const rng = prng(seed);
    const observer = await daemon.client();
    try {
      const garbage = await Promise.all([0, 1, 2].map(() => daemon.client()));
      for (const g of garbage) {
        const bytes = Uint8Array.from({ length: 4096 + randomInt(rng, 60_000) }, () => randomInt(rng, 256));
        bytes[0] = 1 + randomInt(rng, 255); // the first length is then ≥ 16 MiB: over the frame limit
        g.sendRaw(bytes);
      }
      for (const g of garbage) {
        expect((await g.next()).slice(0, 2)).toEqual([0, 2]);
        await g.closed;
      }
      expect(await observer.call("ping")).toEqual([1, 0, "pong"]);
      expect(daemon.proc.exitCode).toBeNull();
    } finally {
      observer.close();
    }
  });
});

function isArrayHead(byte: number): boolean {
  return (byte >= 0x90 && byte <= 0x9f) || byte === 0xdc || byte === 0xdd;
}
