import { describe, expect, test } from "bun:test";
import { Unpackr } from "msgpackr";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import { Final } from "../../src/server/connection.ts";
import { MsgWriter } from "../../src/server/msgpack.ts";
import { findGetKeys, MsgpackProtocol } from "../../src/server/msgpack_protocol.ts";
import type { WorkerContext } from "../../src/server/ops.ts";
import { frame, packr, testSeed } from "./raw_client.ts";
import { concatBytes } from "./resp_client.ts";
import { watched } from "./watched_bytes.ts";

/** A worker context whose engine's read throws (a fault mid-response); the rest is what `get` needs. */
function failingContext(): WorkerContext {
  return {
    engine: {
      read: () => {
        throw new Error("the read failed");
      },
    },
    config: { auth_token: undefined, max_frame_bytes: 1 << 20, engine: { max_key_bytes: 1024 } },
    metrics: { record: () => {} },
  } as unknown as WorkerContext;
}

describe("msgpack protocol", () => {
  test("a get whose read throws mid-response answers one well-formed error frame, nothing half written", () => {
    const protocol = new MsgpackProtocol(failingContext());
    const bytes = frame(packr.pack([7, "get", "k"]));
    const request = protocol.next(bytes, 0, bytes.length, performance.now());
    if (request === undefined || request instanceof Final) throw new Error("the frame did not parse");
    const out = new MsgWriter(64);
    out.raw(new Uint8Array([1, 2, 3])); // an earlier response's bytes stay as they are
    const responder = { respond: () => expect.unreachable("a get answers at once") };
    expect(protocol.execute(request, out, responder, 0)).toBe(false);
    const written = out.take();
    expect([...written.subarray(0, 3)]).toEqual([1, 2, 3]);
    const length = new DataView(written.buffer, written.byteOffset + 3).getUint32(0);
    expect(3 + 4 + length).toBe(written.length); // exactly one frame follows
    const [id, code, message] = new Unpackr().unpack(written.subarray(7)) as [number, number, string];
    expect(id).toBe(7);
    expect(code).not.toBe(0);
    expect(message).toMatch(/read failed|internal/);
  });
});

describe("MsgWriter.trueResponse", () => {
  test("writes the same frame as the general writer, at each id encoding's bounds", () => {
    for (const id of [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffff_ffff]) {
      const fast = new MsgWriter(4); // small: the frame makes its own room
      fast.raw(new Uint8Array([9]));
      fast.trueResponse(id);
      const general = new MsgWriter(64);
      general.raw(new Uint8Array([9]));
      const start = general.beginFrame();
      general.arrayHeader(3);
      general.uint(id);
      general.uint(0);
      general.bool(true);
      general.endFrame(start);
      const bytes = fast.take();
      expect([...bytes]).toEqual([...general.take()]);
      expect(new Unpackr().unpack(bytes.subarray(5))).toEqual([id, 0, true]);
    }
  });

  test("refuses an id that is not a uint32", () => {
    for (const id of [-1, 0x1_0000_0000, 1.5])
      expect(() => new MsgWriter(64).trueResponse(id)).toThrow(/uint32/);
  });
});

describe("findGetKeys", () => {
  const encoder = new TextEncoder();
  const frames = (...requests: unknown[][]) => concatBytes(requests.map((r) => frame(packr.pack(r))));
  const keysOf = (bytes: Uint8Array, end = bytes.length, max = 64) => {
    const starts = new Int32Array(max);
    const ends = new Int32Array(max);
    const n = findGetKeys(bytes, 0, end, starts, ends);
    return Array.from({ length: n }, (_, i) => new TextDecoder().decode(bytes.subarray(starts[i], ends[i])));
  };

  test("finds the key of each whole GET frame (str or bin key, any uint id) and skips other frames", () => {
    const bytes = frames(
      [7, "get", "a"],
      [300, "set", "b", "1"],
      [70_000, "get", encoder.encode("key:000000012345")],
      [1, "get", "a", "extra"],
      [2, "exists", "c"],
      [3, "get", "x".repeat(40)],
      [4, "get", ""],
    );
    expect(keysOf(bytes)).toEqual(["a", "key:000000012345", "x".repeat(40), ""]);
    expect(keysOf(bytes, bytes.length, 2)).toEqual(["a", "key:000000012345"]);
  });

  test("reads no byte outside [start, end) nor past a frame's end, whatever the bytes", () => {
    const seed = testSeed(0x5e5_0004);
    const rng = prng(seed);
    const gets = frames([7, "get", "a"], [300, "get", encoder.encode("key:1")], [1, "set", "b", "v"]);
    for (let round = 0; round < 1000; round++) {
      const bytes = gets.slice();
      for (let flips = randomInt(rng, 3); flips > 0; flips--)
        bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
      const end = randomInt(rng, bytes.length + 1);
      const outside: number[] = [];
      findGetKeys(watched(bytes, 0, end, outside), 0, end, new Int32Array(8), new Int32Array(8));
      expect(outside, `seed ${seed} round ${round} end ${end}`).toEqual([]);
    }
    // Frames cut short right after their first bytes, at the end of the chunk: nothing read past it.
    for (const body of [[0x93], [0x93, 0xce], [0x93, 0x07, 0xa3], [0x93, 0x07, 0xa3, 0x67, 0x65, 0x74]]) {
      const bytes = new Uint8Array([0, 0, 0, body.length, ...body]);
      const outside: number[] = [];
      findGetKeys(
        watched(bytes, 0, bytes.length, outside),
        0,
        bytes.length,
        new Int32Array(8),
        new Int32Array(8),
      );
      expect(outside, JSON.stringify(body)).toEqual([]);
    }
  });

  test("stops at a frame that is not all there, or of length 0", () => {
    const bytes = frames([1, "get", "a"], [2, "get", "b"]);
    expect(keysOf(bytes, bytes.length - 1)).toEqual(["a"]);
    expect(keysOf(bytes, 3)).toEqual([]);
    const empty = new Uint8Array(bytes.length + 4);
    empty.set(bytes, 4); // a zero length first
    expect(keysOf(empty)).toEqual([]);
  });
});
