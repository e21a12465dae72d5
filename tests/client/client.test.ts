/**
 * The client library against real daemons (tests/server/daemon.ts spawns `walkv serve`): every op,
 * 10,000 pipelined requests, byte-exact raw values, typed errors for codes 1/2/4, timeouts, and
 * reconnection after the daemon is killed and restarted.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as net from "node:net";
import * as path from "node:path";
import {
  AuthRequiredError,
  BadRequestError,
  Client,
  ConnectionError,
  connect,
  TimeoutError,
  TooLargeError,
  type WalkvClientError,
} from "../../src/client/index.ts";
import { Daemon, startDaemonPair, stopAllDaemons, tempDir } from "../server/daemon.ts";

const TOKEN = "s3cret-token";
const MAX_VALUE_BYTES = 64;

// Spawning daemons and CLI processes is slow on a loaded machine.
setDefaultTimeout(60_000);

let plain: Daemon;
let guarded: Daemon;
let token_file: string;

beforeAll(async () => {
  ({ plain, guarded, token_file } = await startDaemonPair(TOKEN, [
    "--max-value-bytes",
    String(MAX_VALUE_BYTES),
  ]));
});

afterAll(stopAllDaemons);

/** Resolves with what `promise` rejected with; fails the test if it resolved. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("ops", () => {
  test("every op round-trips with decoded values", async () => {
    const c = await connect({ path: plain.socket_path });
    try {
      expect(await c.ping()).toBe("pong");
      const doc = { name: "Ada", langs: ["en", "fr"], n: 1.5, nested: { ok: true, none: null } };
      await c.set("doc", doc);
      expect(await c.get("doc")).toEqual(doc);
      expect(await c.get("missing")).toBeUndefined();
      expect(await c.exists("doc")).toBe(true);
      expect(await c.exists("missing")).toBe(false);
      await c.set("opts", 7, {});
      expect(await c.get<number>("opts")).toBe(7);

      await c.mset({ a: 1, b: "two" });
      await c.mset([[new Uint8Array([0xff, 0x00]), [3]]]);
      expect(await c.mget(["a", "b", new Uint8Array([0xff, 0x00]), "nope"])).toEqual([
        1,
        "two",
        [3],
        undefined,
      ]);
      // Keys compare as bytes: a str key and the bin of its UTF-8 are the same key.
      expect(await c.get(new TextEncoder().encode("a"))).toBe(1);

      const bytes = new Uint8Array([1, 2, 3]);
      await c.set("bin", bytes);
      expect(new Uint8Array((await c.get<Uint8Array>("bin"))!)).toEqual(bytes);

      expect(await c.del("a")).toBe(true);
      expect(await c.del("a")).toBe(false);
      expect(await c.get("a")).toBeUndefined();

      const stats = await c.stats();
      expect(stats).toHaveProperty("keys");
      expect(stats).toHaveProperty("connections");
      const checkpoint = await c.checkpoint();
      expect(checkpoint.lsn).toBeGreaterThan(0);
      expect(checkpoint.bytes).toBeGreaterThan(0);
      expect(typeof checkpoint.ms).toBe("number");
    } finally {
      await c.close();
    }
  });

  test("10,000 pipelined requests from one client are all answered correctly, in order", async () => {
    const c = await connect({ path: plain.socket_path });
    try {
      const count = 10_000;
      const order: number[] = [];
      const calls: Array<Promise<unknown>> = [];
      for (let i = 0; i < count; i++) {
        // Mixed reads and writes: each get must see the set sent just before it.
        const call = i % 2 === 0 ? c.set(`p:${i >> 1}`, { i: i >> 1 }) : c.get(`p:${i >> 1}`);
        calls.push(
          call.then((value) => {
            order.push(i);
            return value;
          }),
        );
      }
      const results = await Promise.all(calls);
      expect(order).toEqual(Array.from({ length: count }, (_, i) => i));
      for (let i = 1; i < count; i += 2) {
        if ((results[i] as { i: number }).i !== i >> 1) throw new Error(`request ${i}: got ${results[i]}`);
      }
      const values = await c.mget(Array.from({ length: count / 2 }, (_, i) => `p:${i}`));
      expect(values.map((v) => (v as { i: number }).i)).toEqual(
        Array.from({ length: count / 2 }, (_, i) => i),
      );
    } finally {
      await c.close();
    }
  });

  test("calls made in the same tick leave in one socket write", async () => {
    const c = await connect({ path: plain.socket_path });
    const write = net.Socket.prototype.write;
    let writes = 0;
    net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
      writes++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof write;
    try {
      const pongs = Promise.all(Array.from({ length: 100 }, () => c.ping()));
      await Promise.resolve(); // the flush is a microtask
      net.Socket.prototype.write = write;
      expect(writes).toBe(1);
      expect(await pongs).toEqual(Array.from({ length: 100 }, () => "pong"));
    } finally {
      net.Socket.prototype.write = write;
      await c.close();
    }
  });

  test("raw values survive byte for byte (float32, non-canonical map)", async () => {
    const c = await connect({ path: plain.socket_path });
    try {
      const float32 = new Uint8Array([0xca, 0x40, 0x49, 0x0f, 0xdb]); // 3.1415927 as float32
      // {b: 1, a: 0x05 as uint8}: keys out of order and an integer in a non-minimal encoding.
      const map = new Uint8Array([0x82, 0xa1, 0x62, 0x01, 0xa1, 0x61, 0xcc, 0x05]);
      await c.setRaw("f32", float32);
      await c.mset([["other", 1]]);
      await c.setRaw(new Uint8Array([0x00]), map);
      expect(await c.getRaw("f32")).toEqual(float32);
      expect(await c.getRaw(new Uint8Array([0x00]))).toEqual(map);
      expect(await c.get<number>("f32")).toBeCloseTo(Math.PI, 6);
      expect(await c.get(new Uint8Array([0x00]))).toEqual({ b: 1, a: 5 });
      expect(await c.getRaw("missing")).toBeUndefined();
      // Not exactly one msgpack value: refused before anything is sent.
      const two_values = new Uint8Array([0x01, 0x02]);
      expect(await rejection(c.setRaw("bad", two_values))).toBeInstanceOf(BadRequestError);
      expect(await rejection(c.setRaw("bad", new Uint8Array([0x92, 0x01])))).toBeInstanceOf(BadRequestError);
      expect(await c.exists("bad")).toBe(false);
    } finally {
      await c.close();
    }
  });
});

describe("errors", () => {
  test("code 4: no token, wrong token; auth() and the token option authenticate", async () => {
    const no_token = await rejection(connect({ path: guarded.socket_path }));
    expect(no_token).toBeInstanceOf(AuthRequiredError);
    expect((no_token as WalkvClientError).code).toBe(4);
    const wrong = await rejection(connect({ path: guarded.socket_path, token: "nope" }));
    expect(wrong).toBeInstanceOf(AuthRequiredError);

    const late = new Client({ path: guarded.socket_path });
    expect(await rejection(late.get("k"))).toBeInstanceOf(AuthRequiredError);
    await late.auth(TOKEN);
    expect(await late.ping()).toBe("pong");
    await late.close();

    const c = await connect({ path: guarded.socket_path, token: TOKEN });
    expect(await c.ping()).toBe("pong");
    await c.close();
  });

  test("code 2: value over --max-value-bytes; frame over the client's limit", async () => {
    const c = await connect({ path: guarded.socket_path, token: TOKEN, max_frame_bytes: 1024 });
    try {
      const big = await rejection(c.set("k", "x".repeat(MAX_VALUE_BYTES)));
      expect(big).toBeInstanceOf(TooLargeError);
      expect((big as WalkvClientError).code).toBe(2);
      expect(await c.exists("k")).toBe(false);
      const frame = await rejection(c.set("k", "x".repeat(2000)));
      expect(frame).toBeInstanceOf(TooLargeError);
      expect((frame as Error).message).toMatch(/frame limit of 1024/);
      await c.set("k", "small"); // the connection is still in step
      expect(await c.get("k")).toBe("small");
    } finally {
      await c.close();
    }
  });

  test("code 1: a request the server refuses (mset with no pairs)", async () => {
    const c = await connect({ path: plain.socket_path });
    try {
      const error = await rejection(c.mset({}));
      expect(error).toBeInstanceOf(BadRequestError);
      expect((error as WalkvClientError).code).toBe(1);
      expect((error as WalkvClientError).code_name).toBe("bad_request");
      expect(await c.ping()).toBe("pong");
    } finally {
      await c.close();
    }
  });

  test("connection errors: no daemon, closed client", async () => {
    const missing = await rejection(connect({ path: path.join(tempDir(), "none.sock") }));
    expect(missing).toBeInstanceOf(ConnectionError);
    expect((missing as WalkvClientError).code_name).toBe("connection");
    const c = await connect({ path: plain.socket_path });
    const pending = c.ping(); // in flight when close() is called: still answered
    await c.close();
    expect(await pending).toBe("pong");
    expect(await rejection(c.ping())).toBeInstanceOf(ConnectionError);
  });

  test("request_timeout_ms: a server that never answers → TimeoutError, others ConnectionError", async () => {
    const socket_path = path.join(tempDir(), "silent.sock");
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(socket_path, resolve));
    try {
      const c = new Client({ path: socket_path, request_timeout_ms: 50, reconnect: false });
      const first = rejection(c.ping());
      const second = rejection(c.get("k"));
      expect(await first).toBeInstanceOf(TimeoutError);
      const other = await second;
      expect(other).toBeInstanceOf(ConnectionError);
      expect(other).not.toBeInstanceOf(TimeoutError);
      expect(await rejection(c.ping())).toBeInstanceOf(ConnectionError); // reconnect is off
      await c.close();
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});

describe("reconnect", () => {
  test("daemon killed and restarted: in-flight request rejected, the next one waits and succeeds (re-auth)", async () => {
    const dir = tempDir();
    const args = ["--auth-token-file", token_file];
    let daemon = await Daemon.start({ dir, args });
    const c = await connect({
      path: daemon.socket_path,
      token: TOKEN,
      reconnect: { retries: 100, initial_delay_ms: 10, max_delay_ms: 200 },
    });
    await c.set("k", "durable");
    const inflight = rejection(c.get("k"));
    daemon.proc.kill("SIGKILL"); // before the request's frame is even written (a microtask)
    expect(await inflight).toBeInstanceOf(ConnectionError);
    await daemon.exited;

    const next = c.get("k"); // waits while the client retries
    daemon = await Daemon.start({ dir, args });
    expect(await next).toBe("durable");
    expect(await c.ping()).toBe("pong");
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });

  test("reconnect: false → the client stays closed after a drop", async () => {
    const dir = tempDir();
    const daemon = await Daemon.start({ dir });
    const c = await connect({ path: daemon.socket_path, reconnect: false });
    expect(await c.ping()).toBe("pong");
    expect(await daemon.stop()).toBe(0);
    expect(await rejection(c.ping())).toBeInstanceOf(ConnectionError);
    await c.close();
  });
});
