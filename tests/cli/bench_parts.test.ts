/**
 * The parts of `walkv bench` without a daemon: the HDR histogram against exact percentiles of known
 * data, the seeded workload, and both wires (requests they write, responses they scan, byte by byte).
 */
import { describe, expect, test } from "bun:test";
import { HDR_HIGHEST_US, HdrHistogram } from "../../src/cli/bench/hdr_histogram.ts";
import { MsgpackWire, msgpackValue } from "../../src/cli/bench/msgpack_wire.ts";
import { RespWire } from "../../src/cli/bench/resp_wire.ts";
import { WireError } from "../../src/cli/bench/wire.ts";
import {
  connectionQuota,
  connectionSeed,
  keyText,
  OP_GET,
  OP_SET,
  RequestStream,
  valuePayload,
} from "../../src/cli/bench/workload.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { frame, packr, testSeed } from "../server/raw_client.ts";

const text = new TextDecoder();
const encode = (s: string) => new TextEncoder().encode(s);

/** The nearest-rank percentile of sorted `values`: the smallest v with ≥ p % of values ≤ v. */
function exactPercentile(sorted: number[], percentile: number): number {
  const per_100k = Math.round(percentile * 1000); // integer arithmetic: no rounding error in the rank
  const rank = Math.max(1, Math.ceil((per_100k * sorted.length) / 100_000));
  return sorted[rank - 1]!;
}

const PERCENTILES = [0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100];

describe("HdrHistogram", () => {
  test("values below 2048 µs are exact: 1 … 1000 µs once each", () => {
    const h = new HdrHistogram();
    for (let v = 1000; v >= 1; v--) h.record(v);
    expect([h.count, h.min_us, h.max_us]).toEqual([1000, 1, 1000]);
    expect(PERCENTILES.map((p) => h.percentile(p))).toEqual([
      1, 10, 100, 250, 500, 750, 900, 990, 999, 1000, 1000,
    ]);
  });

  test("random latencies from 0 µs to 2 min: within 0.1 % above the exact percentile, max exact", () => {
    const seed = testSeed(20261127);
    const random = prng(seed);
    const h = new HdrHistogram();
    const values: number[] = [];
    for (let i = 0; i < 50_000; i++) {
      const v = Math.floor(Math.exp(random() * Math.log(120_000_000))) - 1; // log-uniform, some over 60 s
      values.push(v);
      h.record(v);
    }
    values.sort((a, b) => a - b);
    for (const p of PERCENTILES) {
      const exact = exactPercentile(values, p);
      const got = h.percentile(p);
      const bound = Math.min(exact, HDR_HIGHEST_US);
      const where = `seed ${seed} (WALKV_SEED to replay), p${p}: exact ${exact}, histogram ${got}`;
      expect(got >= bound, where).toBe(true);
      expect(got <= Math.max(bound + bound / 1000, values.at(-1)!), where).toBe(true);
      if (exact <= HDR_HIGHEST_US) expect(got <= exact + exact / 1000, where).toBe(true);
    }
    expect(h.max_us).toBe(values.at(-1)!);
    expect(h.percentile(100)).toBe(values.at(-1)!);
    expect(h.min_us).toBe(values[0]!);
  });

  test("merge equals recording everything in one", () => {
    const random = prng(5);
    const [a, b, all] = [new HdrHistogram(), new HdrHistogram(), new HdrHistogram()];
    for (let i = 0; i < 10_000; i++) {
      const v = Math.floor(random() * 5_000_000);
      (i % 3 === 0 ? a : b).record(v);
      all.record(v);
    }
    const merged = new HdrHistogram();
    merged.merge(a);
    merged.merge(new HdrHistogram()); // empty: changes nothing
    merged.merge(b);
    expect([merged.count, merged.min_us, merged.max_us]).toEqual([all.count, all.min_us, all.max_us]);
    expect(PERCENTILES.map((p) => merged.percentile(p))).toEqual(PERCENTILES.map((p) => all.percentile(p)));
  });

  test("empty: 0 everywhere; refuses negative or fractional values", () => {
    const h = new HdrHistogram();
    expect([h.percentile(50), h.percentile(100), h.max_us, h.count]).toEqual([0, 0, 0, 0]);
    expect(() => h.record(-1)).toThrow(/whole number/);
    expect(() => h.record(1.5)).toThrow(/whole number/);
    expect(() => h.percentile(101)).toThrow(/percentile/);
  });
});

describe("workload", () => {
  test("keys are key: and 12 digits", () => {
    expect(keyText(0)).toBe("key:000000000000");
    expect(keyText(12345)).toBe("key:000000012345");
    expect(keyText(999_999_999_999)).toBe("key:999999999999");
  });

  test("a stream is a function of its seed; read ratio 0 and 1 are exact", () => {
    const draw = (seed: number, ratio: number) => {
      const s = new RequestStream(seed, ratio, 1000);
      return Array.from({ length: 2000 }, () => [s.nextOp(), s.nextKey()]);
    };
    expect(draw(connectionSeed(3, 1), 0.5)).toEqual(draw(connectionSeed(3, 1), 0.5));
    expect(draw(connectionSeed(3, 1), 0.5)).not.toEqual(draw(connectionSeed(3, 2), 0.5));
    const half = draw(9, 0.5);
    const gets = half.filter(([op]) => op === OP_GET).length;
    expect(gets).toBeGreaterThan(900);
    expect(gets).toBeLessThan(1100);
    expect(half.every(([, key]) => key! >= 0 && key! < 1000 && Number.isInteger(key))).toBe(true);
    expect(draw(9, 1).every(([op]) => op === OP_GET)).toBe(true);
    expect(draw(9, 0).every(([op]) => op === OP_SET)).toBe(true);
  });

  test("connection quotas add up to the requests", () => {
    for (const [requests, connections] of [
      [10, 4],
      [2000, 3],
      [2, 5],
      [1, 1],
    ] as const) {
      const quotas = Array.from({ length: connections }, (_, c) => connectionQuota(requests, connections, c));
      expect(quotas.reduce((a, b) => a + b, 0)).toBe(requests);
      expect(Math.max(...quotas) - Math.min(...quotas)).toBeLessThanOrEqual(1);
    }
  });

  test("the value is printable, seeded, of the asked length", () => {
    const v = valuePayload(1, 97);
    expect(v.length).toBe(97);
    expect(v.every((b) => b >= 0x21 && b <= 0x7e)).toBe(true);
    expect(valuePayload(1, 97)).toEqual(v);
    expect(valuePayload(2, 97)).not.toEqual(v);
  });
});

describe("MsgpackWire", () => {
  const wire = new MsgpackWire({ value_bytes: 100, seed: 1 });

  test("requests are framed [id, op, key, value] with the id and key patched in", () => {
    const out = new Uint8Array(2 * wire.max_request_bytes);
    const n1 = wire.writeRequest(out, 0, OP_SET, 4711, 0xdead_beef);
    const n2 = wire.writeRequest(out, n1, OP_GET, 42, 7);
    expect(n1).toBe(wire.max_request_bytes);
    const body1 = out.subarray(4, n1);
    expect(new DataView(out.buffer).getUint32(0)).toBe(body1.length);
    expect(packr.unpack(body1)).toEqual([
      0xdead_beef,
      "set",
      "key:000000004711",
      text.decode(valuePayload(1, 98)),
    ]);
    expect(packr.unpack(out.subarray(n1 + 4, n1 + n2))).toEqual([7, "get", "key:000000000042"]);
  });

  test("a value takes exactly --value-bytes, header included", () => {
    for (const total of [1, 2, 32, 33, 34, 257, 258, 65_538, 65_539, 70_000]) {
      const value = msgpackValue(total, 3);
      expect(value.length).toBe(total);
      expect((packr.unpack(value) as string).length).toBe(
        total - (total <= 32 ? 1 : total <= 257 ? 2 : total <= 65_538 ? 3 : 5),
      );
    }
  });

  test("responses: -1 until complete, then their end; errors named by code", () => {
    const ok = frame(packr.pack([5, 0, "x".repeat(300)]));
    for (let cut = 0; cut < ok.length; cut++) expect(wire.scanResponse(ok, 0, cut, 5)).toBe(-1);
    expect(wire.scanResponse(ok, 0, ok.length, 5)).toBe(ok.length);
    expect(wire.error).toBeUndefined();
    const big_id = frame(packr.pack([70_000, 0, true]));
    expect(wire.scanResponse(big_id, 0, big_id.length, 70_000)).toBe(big_id.length);
    const error = frame(packr.pack([6, 3, "out of memory"]));
    expect(wire.scanResponse(error, 0, error.length, 6)).toBe(error.length);
    expect([wire.error, wire.error_message]).toEqual(["unavailable (code 3)", "out of memory"]);
  });

  test("out of order, refused or malformed responses throw", () => {
    const ok = frame(packr.pack([5, 0, null]));
    expect(() => wire.scanResponse(ok, 0, ok.length, 6)).toThrow(new WireError("response id 5, expected 6"));
    const refused = frame(packr.pack([0, 3, "too many connections (limit 1)"]));
    expect(() => wire.scanResponse(refused, 0, refused.length, 1)).toThrow(/too many connections/);
    const not_array = frame(packr.pack({ id: 1 }));
    expect(() => wire.scanResponse(not_array, 0, not_array.length, 1)).toThrow(WireError);
    expect(() => wire.scanResponse(new Uint8Array([0, 0, 0, 0]), 0, 4, 1)).toThrow(/frame of 0 bytes/);
  });
});

describe("RespWire", () => {
  const wire = new RespWire({ value_bytes: 5, seed: 1 });
  const value = text.decode(valuePayload(1, 5));

  test("requests are RESP arrays of bulk strings", () => {
    const out = new Uint8Array(2 * wire.max_request_bytes);
    const n1 = wire.writeRequest(out, 0, OP_SET, 4711, 0);
    const n2 = wire.writeRequest(out, n1, OP_GET, 42, 0);
    expect(text.decode(out.subarray(0, n1 + n2))).toBe(
      `*3\r\n$3\r\nSET\r\n$16\r\nkey:000000004711\r\n$5\r\n${value}\r\n*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000042\r\n`,
    );
    expect(text.decode(wire.authRequest("pw", 0))).toBe("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
  });

  test("replies: -1 until complete; +, :, $, $-1 succeed; - is an error named by its first word", () => {
    const replies = encode("+OK\r\n$-1\r\n$5\r\nab\r\nc\r\n:3\r\n$0\r\n\r\n-WRONGTYPE not a str\r\n");
    const ends = [5, 10, 21, 25, 31, replies.length];
    let pos = 0;
    for (const end of ends) {
      for (let cut = pos; cut < end; cut++) expect(wire.scanResponse(replies, pos, cut, 0)).toBe(-1);
      expect(wire.scanResponse(replies, pos, replies.length, 0)).toBe(end);
      pos = end;
    }
    expect([wire.error, wire.error_message]).toEqual(["WRONGTYPE", "WRONGTYPE not a str"]);
    wire.scanResponse(replies, 0, replies.length, 0);
    expect(wire.error).toBeUndefined();
  });

  test("malformed replies throw", () => {
    for (const bad of ["*1\r\n", "$x\r\n", "$3\r\nabcde\r\n", "+OK\rX", "$\r\n"]) {
      expect(() => wire.scanResponse(encode(bad), 0, bad.length, 0), bad).toThrow(WireError);
    }
  });
});
