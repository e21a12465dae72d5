/**
 * Unit tests of the RESP request reader (src/server/resp_reader.ts): requests split at every byte
 * boundary, every limit, malformed input, and seeded random bytes (it never throws, never reads
 * outside its range, never makes progress without consuming bytes).
 */
import { describe, expect, test } from "bun:test";
import { prng, randomInt } from "../../src/engine/io/prng.ts";
import {
  findLeadingGets,
  READ_INCOMPLETE,
  READ_MALFORMED,
  READ_REQUEST,
  RESP_MAX_ARGUMENTS,
  RESP_MAX_INLINE_BYTES,
  RespReader,
} from "../../src/server/resp_reader.ts";
import { testSeed } from "./raw_client.ts";
import { command, concatBytes } from "./resp_client.ts";
import { watched } from "./watched_bytes.ts";

const MAX_REQUEST_BYTES = 4096;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads every whole request in `bytes`, as lists of argument strings; stops at the first non-request. */
function readAll(
  reader: RespReader,
  bytes: Uint8Array,
): { requests: string[][]; status: number; next: number } {
  const requests: string[][] = [];
  let pos = 0;
  for (;;) {
    const status = reader.read(bytes, pos, bytes.length);
    if (status !== READ_REQUEST) return { requests, status, next: reader.next_start };
    expect(reader.next_start).toBeGreaterThan(pos);
    requests.push(args(reader, bytes));
    pos = reader.next_start;
  }
}

function args(reader: RespReader, bytes: Uint8Array): string[] {
  return Array.from({ length: reader.argc }, (_, i) =>
    decoder.decode(bytes.subarray(reader.starts[i], reader.ends[i])),
  );
}

function malformed(input: string | Uint8Array): string {
  const reader = new RespReader(MAX_REQUEST_BYTES);
  const bytes = typeof input === "string" ? encoder.encode(input) : input;
  expect(reader.read(bytes, 0, bytes.length)).toBe(READ_MALFORMED);
  return reader.error;
}

describe("RespReader", () => {
  test("multibulk and inline requests; empty ones are skipped", () => {
    const stream = concatBytes([
      command("SET", "k", "v a l"),
      encoder.encode("\r\n*0\r\n*-1\r\nPING\r\n  GET\t k \n"),
      command("ECHO", ""),
      command("GET", new Uint8Array([0, 13, 10, 255])),
    ]);
    const { requests, status, next } = readAll(new RespReader(MAX_REQUEST_BYTES), stream);
    expect(status).toBe(READ_INCOMPLETE);
    expect(next).toBe(stream.length);
    expect(requests).toEqual([
      ["SET", "k", "v a l"],
      ["PING"],
      ["GET", "k"],
      ["ECHO", ""],
      ["GET", "\0\r\n\ufffd"],
    ]);
  });

  test("split at every byte boundary: the same requests, never a false one", () => {
    const stream = concatBytes([
      command("MSET", "a", "1", "b", "two"),
      encoder.encode("PING hello\r\n\r\n"),
      command("GET", "a"),
      encoder.encode("*0\r\n"),
      command("DEL", "a", "b"),
    ]);
    const whole = readAll(new RespReader(MAX_REQUEST_BYTES), stream).requests;
    expect(whole.length).toBe(4);
    for (let split = 0; split <= stream.length; split++) {
      // What a connection does: read what the first chunk holds, keep the rest, read again.
      const reader = new RespReader(MAX_REQUEST_BYTES);
      const first = readAll(reader, stream.subarray(0, split));
      expect(first.status).toBe(READ_INCOMPLETE);
      const rest = stream.slice(first.next);
      const second = readAll(reader, rest);
      expect(second.status).toBe(READ_INCOMPLETE);
      expect(second.next).toBe(rest.length);
      expect([...first.requests, ...second.requests]).toEqual(whole);
    }
  });

  test("a request of exactly max_request_bytes is read; one byte more is refused before it arrives", () => {
    let n = MAX_REQUEST_BYTES;
    while (command("SET", "k", "x".repeat(n)).length > MAX_REQUEST_BYTES) n--;
    const exact = command("SET", "k", "x".repeat(n));
    expect(exact.length).toBe(MAX_REQUEST_BYTES);
    expect(readAll(new RespReader(MAX_REQUEST_BYTES), exact).requests.length).toBe(1);
    const over = command("SET", "k", "x".repeat(n + 1));
    expect(over.length).toBe(MAX_REQUEST_BYTES + 1);
    // Only the headers are there: the declared size alone refuses it.
    expect(malformed(over.subarray(0, over.length - (n + 1) - 2))).toMatch(
      /request over the limit of 4096 bytes/,
    );
  });

  test("a huge declared bulk length is refused at once", () => {
    expect(malformed("*2\r\n$3\r\nGET\r\n$999999999\r\n")).toMatch(/over the limit/);
  });

  test("argument count over the limit", () => {
    expect(malformed(`*${RESP_MAX_ARGUMENTS + 1}\r\n`)).toBe("invalid multibulk length");
    const reader = new RespReader(MAX_REQUEST_BYTES);
    const bytes = encoder.encode(`*${RESP_MAX_ARGUMENTS}\r\n`);
    expect(reader.read(bytes, 0, bytes.length)).toBe(READ_INCOMPLETE);
  });

  test("an inline line over the limit, with or without its newline", () => {
    expect(malformed("x".repeat(RESP_MAX_INLINE_BYTES))).toBe("too big inline request");
    expect(malformed(`${"x".repeat(RESP_MAX_INLINE_BYTES)}\n`)).toBe("too big inline request");
    const reader = new RespReader(MAX_REQUEST_BYTES);
    const fits = encoder.encode(`${"x".repeat(RESP_MAX_INLINE_BYTES - 1)}\n`);
    expect(reader.read(fits, 0, fits.length)).toBe(READ_REQUEST);
    const waiting = encoder.encode("x".repeat(RESP_MAX_INLINE_BYTES - 1));
    expect(reader.read(waiting, 0, waiting.length)).toBe(READ_INCOMPLETE);
  });

  test("malformed streams name what is wrong", () => {
    expect(malformed("*1\r\nGET\r\n")).toBe("expected '$', got 'G'");
    expect(malformed("*1\r\n\x01")).toBe("expected '$', got '\\x01'");
    expect(malformed("*x\r\n")).toBe("invalid multibulk length");
    expect(malformed("*1x\r\n")).toBe("invalid multibulk length");
    expect(malformed("*1\n")).toBe("invalid multibulk length");
    expect(malformed("*1\r\r")).toBe("invalid multibulk length");
    expect(malformed("*1234567890123456\r\n")).toBe("invalid multibulk length");
    expect(malformed("*1\r\n$-1\r\n")).toBe("invalid bulk length");
    expect(malformed("*1\r\n$\r\n")).toBe("invalid bulk length");
    expect(malformed("*1\r\n$3\r\nGETxx")).toBe("expected CRLF after a bulk string");
  });

  test("incomplete headers wait for more bytes", () => {
    for (const prefix of [
      "*",
      "*1",
      "*1\r",
      "*1\r\n",
      "*1\r\n$",
      "*1\r\n$3",
      "*1\r\n$3\r\nGE",
      "*1\r\n$3\r\nGET\r",
    ]) {
      const reader = new RespReader(MAX_REQUEST_BYTES);
      const bytes = encoder.encode(prefix);
      expect(reader.read(bytes, 0, bytes.length)).toBe(READ_INCOMPLETE);
    }
  });

  test("a request of many arguments does not keep its offsets for the next ones", () => {
    const reader = new RespReader(1024 * 1024);
    const many = command(...Array.from({ length: 5000 }, () => ""));
    expect(reader.read(many, 0, many.length)).toBe(READ_REQUEST);
    expect(reader.argc).toBe(5000);
    const ping = command("PING");
    expect(reader.read(ping, 0, ping.length)).toBe(READ_REQUEST);
    expect(reader.starts.length).toBe(1);
    expect(args(reader, ping)).toEqual(["PING"]);
  });

  test("reads only inside [start, end) of a larger buffer", () => {
    const bytes = encoder.encode("garbage*1\r\n$4\r\nPING\r\ngarbage");
    const reader = new RespReader(MAX_REQUEST_BYTES);
    expect(reader.read(bytes, 7, 21)).toBe(READ_REQUEST);
    expect(args(reader, bytes)).toEqual(["PING"]);
    expect(reader.next_start).toBe(21);
    expect(reader.read(bytes, 7, 20)).toBe(READ_INCOMPLETE);
  });

  test("random bytes (seeded): never throws, offsets stay in range, progress only by consuming", () => {
    const seed = testSeed(0x5e5_0001);
    const random = prng(seed);
    try {
      for (let round = 0; round < 3000; round++) {
        const length = Math.floor(random() * 64);
        const bytes = new Uint8Array(length);
        const alphabet = [0x2a, 0x24, 0x0d, 0x0a, 0x20, 0x2d, 0x30, 0x31, 0x39, 0x41, 0xff];
        for (let i = 0; i < length; i++) {
          bytes[i] =
            random() < 0.7 ? alphabet[Math.floor(random() * alphabet.length)]! : Math.floor(random() * 256);
        }
        const reader = new RespReader(64);
        let pos = 0;
        for (let steps = 0; steps <= length; steps++) {
          const status = reader.read(bytes, pos, length);
          expect([READ_REQUEST, READ_INCOMPLETE, READ_MALFORMED]).toContain(status);
          if (status === READ_MALFORMED) break;
          expect(reader.next_start).toBeGreaterThanOrEqual(pos);
          expect(reader.next_start).toBeLessThanOrEqual(length);
          if (status === READ_INCOMPLETE) break;
          expect(reader.argc).toBeGreaterThan(0);
          for (let i = 0; i < reader.argc; i++) {
            expect(reader.starts[i]!).toBeGreaterThanOrEqual(pos);
            expect(reader.ends[i]!).toBeLessThanOrEqual(reader.next_start);
            expect(reader.starts[i]!).toBeLessThanOrEqual(reader.ends[i]!);
          }
          pos = reader.next_start;
        }
      }
    } catch (error) {
      console.error(`RespReader random test failed with seed ${seed} (rerun with WALKV_SEED=${seed})`);
      throw error;
    }
  });
});

describe("findLeadingGets", () => {
  const keysOf = (bytes: Uint8Array, start = 0, end = bytes.length, max = 64) => {
    const starts = new Int32Array(max);
    const ends = new Int32Array(max);
    const n = findLeadingGets(bytes, start, end, starts, ends);
    return Array.from({ length: n }, (_, i) => decoder.decode(bytes.subarray(starts[i], ends[i])));
  };

  test("finds the keys of the leading GETs, the name in any case, and stops at the first other request", () => {
    const bytes = concatBytes([
      command("GET", "a"),
      command("get", "key:000000012345"),
      command("gEt", ""),
      command("SET", "b", "1"),
      command("GET", "c"),
    ]);
    expect(keysOf(bytes)).toEqual(["a", "key:000000012345", ""]);
  });

  test("reads only inside [start, end), at most max keys, and no request that is not all there", () => {
    const one = command("GET", "k1");
    const bytes = concatBytes([command("PING"), one, command("GET", "k2"), command("GET", "k3")]);
    const start = command("PING").length;
    expect(keysOf(bytes)).toEqual([]); // PING first: nothing
    expect(keysOf(bytes, start)).toEqual(["k1", "k2", "k3"]);
    expect(keysOf(bytes, start, bytes.length, 2)).toEqual(["k1", "k2"]);
    expect(keysOf(bytes, start, bytes.length - 1)).toEqual(["k1", "k2"]);
    expect(keysOf(bytes, start, start + one.length - 1)).toEqual([]);
  });

  test("other shapes are not GETs: more arguments, another name, inline commands, a key length over 5 digits", () => {
    for (const bytes of [
      command("GET", "a", "b"),
      command("GEX", "a"),
      command("DEL", "a"),
      encoder.encode("GET a\r\n"),
      encoder.encode("*2\r\n$3\r\nGET\r\n$100000\r\n"),
      encoder.encode("*2\r\n$3\r\nGET\r\n$\r\n\r\n"),
    ]) {
      expect(keysOf(bytes), decoder.decode(bytes)).toEqual([]);
    }
  });

  test("reads no byte outside [start, end), whatever the bytes", () => {
    const rng = prng(testSeed(0x5e5_0003));
    const gets = concatBytes(Array.from({ length: 4 }, (_, i) => command("GET", `key-${i}`)));
    for (let round = 0; round < 500; round++) {
      const bytes = gets.slice();
      for (let flips = randomInt(rng, 3); flips > 0; flips--)
        bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
      const start = randomInt(rng, 8);
      const end = start + randomInt(rng, bytes.length - start + 1);
      const outside: number[] = [];
      findLeadingGets(watched(bytes, start, end, outside), start, end, new Int32Array(8), new Int32Array(8));
      expect(outside, `round ${round} [${start}, ${end})`).toEqual([]);
    }
  });

  const SEED = testSeed(0x5e5_0002);
  test(`on random bytes and cut requests: never throws, reads nothing past end (seed ${SEED})`, () => {
    const rng = prng(SEED);
    const gets = concatBytes(Array.from({ length: 8 }, (_, i) => command("GET", `key-${i}`)));
    for (let round = 0; round < 2000; round++) {
      const bytes = gets.slice();
      for (let flips = randomInt(rng, 4); flips > 0; flips--)
        bytes[randomInt(rng, bytes.length)] = randomInt(rng, 256);
      const end = randomInt(rng, bytes.length + 1);
      const keys = keysOf(bytes, 0, end);
      expect(keys.length, `seed ${SEED} round ${round}`).toBeLessThanOrEqual(8);
      expect(keysOf(bytes.slice(0, end)), `seed ${SEED} round ${round}`).toEqual(keys);
    }
  });
});
