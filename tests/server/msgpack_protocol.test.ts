import { describe, expect, test } from "bun:test";
import { Unpackr } from "msgpackr";
import { Final } from "../../src/server/connection.ts";
import { MsgWriter } from "../../src/server/msgpack.ts";
import { findGetKeys, MsgpackProtocol } from "../../src/server/msgpack_protocol.ts";
import type { WorkerContext } from "../../src/server/ops.ts";
import { frame, packr } from "./raw_client.ts";
import { concatBytes } from "./resp_client.ts";

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

  test("stops at a frame that is not all there, or of length 0", () => {
    const bytes = frames([1, "get", "a"], [2, "get", "b"]);
    expect(keysOf(bytes, bytes.length - 1)).toEqual(["a"]);
    expect(keysOf(bytes, 3)).toEqual([]);
    const empty = new Uint8Array(bytes.length + 4);
    empty.set(bytes, 4); // a zero length first
    expect(keysOf(empty)).toEqual([]);
  });
});
