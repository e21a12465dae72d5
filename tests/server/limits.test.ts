/**
 * End-to-end tests of the daemon's resource limits over the real socket: --socket-mode,
 * --max-connections, --max-output-bytes (a client that never reads is cut off) and
 * --max-memory-bytes (code 3 once the arena is full). One daemon serves the whole file; the tests
 * run in order and each closes every connection it opens.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Daemon, stopAllDaemons, waitUntil } from "./daemon.ts";
import { concat, frame, packr, type RawClient } from "./raw_client.ts";

const MiB = 1024 * 1024;
const MAX_CONNECTIONS = 5;
const MAX_FRAME_BYTES = 65536;
const MAX_OUTPUT_BYTES = MiB;
const MAX_VALUE_BYTES = 60_000;
const MAX_MEMORY_BYTES = 16 * MiB;

let daemon: Daemon;

beforeAll(async () => {
  daemon = await Daemon.start({
    workers: 1,
    args: [
      "--fsync",
      "no",
      "--socket-mode",
      "0660",
      "--max-connections",
      String(MAX_CONNECTIONS),
      "--max-frame-bytes",
      String(MAX_FRAME_BYTES),
      "--max-output-bytes",
      String(MAX_OUTPUT_BYTES),
      "--max-key-bytes",
      "1024",
      "--max-value-bytes",
      String(MAX_VALUE_BYTES),
      "--max-memory-bytes",
      String(MAX_MEMORY_BYTES),
    ],
  });
});

afterAll(async () => {
  if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
  await stopAllDaemons();
});

/** Open connections as the daemon counts them, asked over `c`. */
async function openConnections(c: RawClient): Promise<number> {
  const [, code, stats] = (await c.call("stats")) as [number, number, { connections: number }];
  expect(code).toBe(0);
  return stats.connections;
}

/**
 * A connection the daemon accepted. Connections closed by a client are counted as closed when the
 * server sees the close, asynchronously: until then a new one may be refused, so retry.
 */
async function acceptedClient(): Promise<RawClient> {
  let accepted: RawClient | undefined;
  await waitUntil(async () => {
    const c = await daemon.client();
    c.send([1, "ping"]);
    const [id, code] = await c.next();
    if (id === 1 && code === 0) accepted = c;
    else c.close();
    return accepted !== undefined;
  }, "a connection to be accepted");
  return accepted!;
}

describe("limits", () => {
  test("--socket-mode 0660 gives the socket mode 0660", () => {
    expect(fs.statSync(daemon.socket_path).mode & 0o777).toBe(0o660);
  });

  test("--max-connections 5: the 6th is refused and closed; after one closes, a new one is accepted", async () => {
    const clients: RawClient[] = [];
    try {
      for (let i = 0; i < MAX_CONNECTIONS; i++) {
        const c = await daemon.client();
        clients.push(c);
        expect(await c.call("ping")).toEqual([1, 0, "pong"]);
      }
      const sixth = await daemon.client();
      expect(await sixth.next()).toEqual([0, 3, `too many connections (limit ${MAX_CONNECTIONS})`]);
      await sixth.closed;
      expect(await clients[1]!.call("ping")).toEqual([2, 0, "pong"]); // the others are unaffected

      clients.shift()!.close();
      const accepted = await acceptedClient();
      clients.push(accepted);
      expect(await openConnections(accepted)).toBe(MAX_CONNECTIONS);
    } finally {
      for (const c of clients) c.close();
    }
  });

  test("a client that never reads is cut off past --max-output-bytes; the daemon stays responsive", async () => {
    const observer = await acceptedClient();
    // Wait until the previous test's connections are gone on the server side.
    await waitUntil(async () => (await openConnections(observer)) === 1, "earlier connections to close");
    const value = new Uint8Array(MAX_VALUE_BYTES - 16);
    expect((await observer.call("set", "large", value)).slice(1)).toEqual([0, true]);

    const hog = await daemon.client();
    hog.socket.pause(); // never reads
    const gets = 200; // 200 × ~60 KB of replies ≫ 1 MiB
    hog.sendRaw(
      concat(...Array.from({ length: gets }, (_, i) => frame(packr.pack([i + 1, "get", "large"])))),
    );
    await waitUntil(async () => (await openConnections(observer)) === 1, "the hog to be cut off");

    hog.socket.resume();
    let answered = 0;
    for (;;) {
      try {
        const [id, code] = await hog.next();
        expect([id, code]).toEqual([answered + 1, 0]);
        answered++;
      } catch {
        break;
      }
    }
    await hog.closed;
    expect(answered).toBeLessThan(gets);
    const [, code, got] = await observer.call("get", "large");
    expect(code).toBe(0);
    expect(new Uint8Array(got as Uint8Array)).toEqual(value);
    observer.close();
  }, 20_000);

  test("a full arena answers writes with code 3; reads still work", async () => {
    const c = await acceptedClient();
    const value = new Uint8Array(MAX_VALUE_BYTES - 16).fill(7);
    const batch = 32;
    let first_refused = -1;
    let message = "";
    let next_id = 1;
    for (let round = 0; round < 40 && first_refused < 0; round++) {
      const requests = Array.from({ length: batch }, () => {
        const id = next_id++;
        return frame(packr.pack([id, "set", `fill:${id}`, value]));
      });
      c.sendRaw(concat(...requests));
      for (let i = 0; i < batch; i++) {
        const [id, code, result] = await c.next();
        if (code === 0) continue;
        expect(code).toBe(3);
        if (first_refused < 0) {
          first_refused = id;
          message = result as string;
        }
      }
    }
    expect(first_refused).toBeGreaterThan(1);
    expect(message).toMatch(/out of memory/);
    // Reads, pings and stats still work on the same connection.
    const [, code, got] = await c.call("get", "fill:1");
    expect(code).toBe(0);
    expect(new Uint8Array(got as Uint8Array)).toEqual(value);
    expect((await c.call("exists", `fill:${first_refused}`)).slice(1)).toEqual([0, false]);
    expect((await c.call("ping"))[2]).toBe("pong");
    c.close();
  }, 30_000);
});
