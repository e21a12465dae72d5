/**
 * Unit tests of the RESP reply writer (exact bytes; views handed out are never overwritten, also
 * across growth and truncation), of the msgpack mapping of RESP values (bin headers, payloads, type
 * names against msgpackr's encodings) and of CONFIG GET's glob and INFO's human sizes.
 */
import { describe, expect, test } from "bun:test";
import { Packr } from "msgpackr";
import { writeBinHeader } from "../../src/server/msgpack.ts";
import { globMatch, humanBytes } from "../../src/server/resp_server.ts";
import { binSize, binValue, msgpackTypeName, payloadStart } from "../../src/server/resp_values.ts";
import { RespWriter } from "../../src/server/resp_writer.ts";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const packr = new Packr({ useRecords: false });

function written(write: (w: RespWriter) => void): string {
  const w = new RespWriter(8);
  write(w);
  return decoder.decode(w.take());
}

describe("RespWriter", () => {
  test("encodes every reply type exactly", () => {
    expect(written((w) => w.simple("OK"))).toBe("+OK\r\n");
    expect(written((w) => w.error("ERR bad\r\nthing"))).toBe("-ERR bad  thing\r\n");
    expect(written((w) => w.integer(0))).toBe(":0\r\n");
    expect(written((w) => w.integer(-42))).toBe(":-42\r\n");
    expect(written((w) => w.integer(9007199254740991))).toBe(":9007199254740991\r\n");
    expect(written((w) => w.bulk(encoder.encode("hello"), 1, 4))).toBe("$3\r\nell\r\n");
    expect(written((w) => w.bulk(new Uint8Array(0)))).toBe("$0\r\n\r\n");
    expect(written((w) => w.bulkString("é"))).toBe("$2\r\né\r\n");
    expect(written((w) => w.nil())).toBe("$-1\r\n");
    expect(written((w) => w.arrayHeader(10))).toBe("*10\r\n");
    expect(written((w) => w.arrayHeaderNil())).toBe("*-1\r\n");
    expect(() => written((w) => w.integer(1.5))).toThrow();
  });

  test("long payloads (past the copy loop) and growth from a tiny buffer", () => {
    const payload = new Uint8Array(5000).map((_, i) => i % 251);
    const w = new RespWriter(4);
    w.bulk(payload);
    const out = w.take();
    expect(decoder.decode(out.subarray(0, 7))).toBe("$5000\r\n");
    expect(out.subarray(7, 5007)).toEqual(payload);
    expect(out.length).toBe(5009);
  });

  test("taken bytes are never overwritten: later writes, growth and truncation leave them alone", () => {
    const w = new RespWriter(16);
    w.simple("first");
    const first = w.take();
    w.simple("second");
    w.truncate(3); // a failed reply: drop what came after the first 3 bytes since the take
    expect(w.length).toBe(3);
    w.bulk(new Uint8Array(100).fill(0x61)); // grows
    const second = w.take();
    expect(decoder.decode(first)).toBe("+first\r\n");
    expect(decoder.decode(second)).toBe(`+se$100\r\n${"a".repeat(100)}\r\n`);
    expect(w.length).toBe(0);
    expect(w.take().length).toBe(0);
  });
});

describe("RESP values as msgpack", () => {
  test("binValue is msgpack bin 8/16/32, byte for byte what msgpackr encodes", () => {
    for (const n of [0, 1, 255, 256, 65535, 65536, 70000]) {
      const payload = new Uint8Array(n).map((_, i) => i % 256);
      const stored = binValue(payload, 0, n);
      expect(stored.length).toBe(binSize(n));
      expect(stored).toEqual(new Uint8Array(packr.pack(payload)));
      expect(payloadStart(stored)).toBe(binSize(n) - n);
      const header = new Uint8Array(binSize(n) - n);
      writeBinHeader(header, 0, n);
      expect(header).toEqual(stored.slice(0, header.length));
    }
  });

  test("payloadStart finds the payload of every str and bin encoding, -1 for other types", () => {
    for (const s of ["", "a", "x".repeat(31), "x".repeat(32), "x".repeat(300), "x".repeat(70000)]) {
      const stored = new Uint8Array(packr.pack(s));
      expect(decoder.decode(stored.subarray(payloadStart(stored)))).toBe(s);
    }
    for (const v of [null, true, 1, -1, 300, 1.5, [1], { a: 1 }]) {
      expect(payloadStart(new Uint8Array(packr.pack(v)))).toBe(-1);
    }
  });

  test("msgpackTypeName names every first byte", () => {
    const cases: Array<[unknown, string]> = [
      [null, "nil"],
      [false, "boolean"],
      [7, "integer"],
      [-7, "integer"],
      [70000, "integer"],
      [-70000, "integer"],
      [1.5, "float"],
      ["s", "str"],
      ["x".repeat(40), "str"],
      [new Uint8Array(3), "bin"],
      [[1, 2], "array"],
      [Array.from({ length: 20 }, () => 0), "array"],
      [{ a: 1 }, "map"],
      [new Date(0), "ext"],
    ];
    for (const [value, name] of cases)
      expect(msgpackTypeName(new Uint8Array(packr.pack(value))[0]!)).toBe(name);
    for (let b = 0; b < 256; b++) expect(typeof msgpackTypeName(b)).toBe("string");
  });
});

describe("CONFIG GET globs and INFO sizes", () => {
  test("globMatch: * and ?", () => {
    expect(globMatch("*", "save")).toBe(true);
    expect(globMatch("save", "save")).toBe(true);
    expect(globMatch("sav", "save")).toBe(false);
    expect(globMatch("append*", "appendfsync")).toBe(true);
    expect(globMatch("*only", "appendonly")).toBe(true);
    expect(globMatch("a*e*y", "appendonly")).toBe(true);
    expect(globMatch("?ave", "save")).toBe(true);
    expect(globMatch("??", "save")).toBe(false);
    expect(globMatch("*x*", "save")).toBe(false);
    expect(globMatch("", "")).toBe(true);
  });

  test("humanBytes like Redis's used_memory_human", () => {
    expect(humanBytes(0)).toBe("0B");
    expect(humanBytes(1023)).toBe("1023B");
    expect(humanBytes(1024)).toBe("1.00K");
    expect(humanBytes(1536 * 1024)).toBe("1.50M");
    expect(humanBytes(32 * 1024 ** 3)).toBe("32.00G");
  });
});
