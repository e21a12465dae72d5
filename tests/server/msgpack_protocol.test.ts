import { describe, expect, test } from "bun:test";
import { Unpackr } from "msgpackr";
import { Final } from "../../src/server/connection.ts";
import { MsgWriter } from "../../src/server/msgpack.ts";
import { MsgpackProtocol } from "../../src/server/msgpack_protocol.ts";
import type { WorkerContext } from "../../src/server/ops.ts";
import { frame, packr } from "./raw_client.ts";

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
