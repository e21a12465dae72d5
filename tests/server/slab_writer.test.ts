import { describe, expect, test } from "bun:test";
import type { ValueSink } from "../../src/engine/table.ts";
import type { ClientSocket } from "../../src/server/client_socket.ts";
import { RespWriter } from "../../src/server/resp_writer.ts";
import { SlabWriter, type ValueSource } from "../../src/server/slab_writer.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** A source that hands over each of `values` in turn (as a table retrying after a racing writer), then says `found`. */
function source(values: Array<string | number[]>, found: boolean): ValueSource {
  return {
    read(_key: Uint8Array, sink: ValueSink): boolean {
      for (const value of values) {
        const raw = typeof value === "string" ? [...bytes(value)] : value;
        const padded = new Uint8Array([46, 46, ...raw, 46, 46]); // in place, inside a larger buffer
        sink.value(padded, 2, raw.length);
      }
      return found;
    },
  };
}

describe("SlabWriter.sendTo", () => {
  /** A socket that keeps copies of the ranges it is given. */
  function recordingSocket(): ClientSocket & { sent: string[] } {
    const sent: string[] = [];
    return {
      sent,
      unsent_bytes: 0,
      write: (b: Uint8Array, start = 0, end = b.length) => void sent.push(text(b.slice(start, end))),
      pause: () => {},
      resume: () => {},
      end: () => {},
      destroy: () => {},
    };
  }

  test("sends the range written since the last take or send, then starts empty", () => {
    const w = new SlabWriter(16);
    const socket = recordingSocket();
    w.raw(bytes("abc"));
    expect(text(w.take())).toBe("abc");
    w.raw(bytes("def"));
    w.sendTo(socket);
    expect(w.length).toBe(0);
    w.raw(bytes("0123456789abcdefgh")); // past the slab: a new one
    w.sendTo(socket);
    w.sendTo(socket); // nothing new: an empty range
    expect(socket.sent).toEqual(["def", "0123456789abcdefgh", ""]);
  });
});

describe("SlabWriter.stored", () => {
  test("only the value's last hand-over counts, written after what came before", () => {
    const w = new SlabWriter(16);
    w.raw(bytes("head:"));
    expect(w.stored(source(["torn value", "v2"], true), bytes("k"))).toBe(true);
    w.raw(bytes(":tail"));
    expect(text(w.take())).toBe("head:v2:tail");
  });

  test("a hand-over that moved the writer to a new slab is still replaced by the next one", () => {
    const w = new SlabWriter(8);
    w.raw(bytes("abc"));
    expect(text(w.take())).toBe("abc"); // the next bytes start at 3, not 0
    w.raw(bytes("head:"));
    const long = "x".repeat(40); // more than the slab: the pending bytes move to a new one
    expect(w.stored(source([long, "v2"], true), bytes("k"))).toBe(true);
    expect(text(w.take())).toBe("head:v2");
    w.raw(bytes("h2:"));
    expect(w.stored(source([long], false), bytes("k"))).toBe(false);
    expect(text(w.take())).toBe("h2:");
  });

  test("a value handed over before the key turned out absent leaves nothing", () => {
    const w = new SlabWriter(4);
    w.raw(bytes("head"));
    expect(w.stored(source(["stale"], false), bytes("k"))).toBe(false);
    expect(text(w.take())).toBe("head");
  });

  test("RESP: a stored str or bin is a bulk of its payload; other types are WRONGTYPE, unwritten", () => {
    const w = new RespWriter(8);
    const bin = [0xc4, 3, 0x61, 0x62, 0x63]; // msgpack bin8 "abc"
    w.storedBulk(source([[0xa1, 0x78], bin], true), bytes("k")); // a fixstr "x" first, then raced

    w.storedBulk(source([], false), bytes("k"));
    expect(text(w.take())).toBe("$3\r\nabc\r\n$-1\r\n");
    expect(() => w.storedBulk(source([[0x81, 0xa1, 0x61, 0x01]], true), bytes("k"))).toThrow(
      /^WRONGTYPE .*map/,
    );
    expect(w.length).toBe(0);
  });

  test("RESP: a header longer than its value (a read torn by a writer) writes nothing and is replaced by the retry", () => {
    const w = new RespWriter(8);
    // 0xc6 is a bin32 header (5 bytes) over a 2-byte value: what a record reused mid-read can show.
    w.storedBulk(
      source(
        [
          [0xc6, 0],
          [0xc4, 1, 0x7a],
        ],
        true,
      ),
      bytes("k"),
    );
    expect(text(w.take())).toBe("$1\r\nz\r\n");
    expect(() => w.storedBulk(source([[0xc6, 0]], true), bytes("k"))).toThrow(/^WRONGTYPE/);
    expect(w.length).toBe(0);
  });
});
