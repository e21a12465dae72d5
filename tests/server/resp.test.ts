/**
 * End-to-end tests of the RESP2 listener (`walkv serve --resp`), driven by the real redis-cli and
 * redis-benchmark and by a raw RESP client (tests/server/resp_client.ts) for exact bytes: every
 * command, binary-safe values, the same keys through both protocols, errors, limits, a malformed
 * stream, pipelining, inline commands, QUIT, AUTH, TCP, shutdown. redis-cli and redis-benchmark must
 * be installed (CI installs redis-tools); the tests fail, never skip, without them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Daemon, stopAllDaemons, tempDir, waitUntil } from "./daemon.ts";
import { msgBin, msgStr, type RawClient, rawRequest } from "./raw_client.ts";
import {
  command,
  concatBytes,
  ErrorReply,
  type Reply,
  RespClient,
  redisCli,
  requireTool,
  text,
} from "./resp_client.ts";

const KiB = 1024;
const MAX_KEY_BYTES = 1024;
const MAX_VALUE_BYTES = 64 * KiB;
const MAX_FRAME_BYTES = 256 * KiB;
const TOKEN = "resp-secret-token";
const encoder = new TextEncoder();

let daemon: Daemon;
let resp_path: string;

beforeAll(async () => {
  requireTool("redis-cli");
  requireTool("redis-benchmark");
  const dir = tempDir();
  resp_path = path.join(dir, "resp.sock");
  daemon = await Daemon.start({
    dir,
    args: [
      "--fsync",
      "no",
      "--resp",
      resp_path,
      "--max-key-bytes",
      String(MAX_KEY_BYTES),
      "--max-value-bytes",
      String(MAX_VALUE_BYTES),
      "--max-frame-bytes",
      String(MAX_FRAME_BYTES),
      "--max-output-bytes",
      String(1024 * KiB),
    ],
  });
});

afterAll(async () => {
  if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
  expect(fs.existsSync(resp_path)).toBe(false); // removed at shutdown
  await stopAllDaemons();
});

/** redis-cli on the daemon's RESP socket, typed output (`--no-raw`): its stdout lines. */
async function cli(...args: string[]): Promise<string> {
  const { stdout, stderr, code } = await redisCli(["-s", resp_path, "--no-raw", ...args]);
  expect(stderr).toBe("");
  expect(code).toBe(0);
  return stdout.replace(/\n$/, "");
}

async function client(): Promise<RespClient> {
  return await RespClient.connect({ path: resp_path });
}

/** A msgpack-protocol client of the same daemon. */
async function msgpack<T>(use: (c: RawClient) => Promise<T>): Promise<T> {
  const c = await daemon.client();
  try {
    return await use(c);
  } finally {
    c.close();
  }
}

function error(reply: Reply): string {
  if (!(reply instanceof ErrorReply)) throw new Error(`not an error reply: ${JSON.stringify(reply)}`);
  return reply.message;
}

/** The visible LSN (one per WAL record), asked over msgpack. */
async function visibleLsn(): Promise<number> {
  return await msgpack(async (c) => ((await c.call("stats"))[2] as { lsn: { visible: number } }).lsn.visible);
}

describe("RESP commands through redis-cli", () => {
  test("PING, PING msg, ECHO", async () => {
    expect(await cli("PING")).toBe("PONG");
    expect(await cli("ping", "hello world")).toBe('"hello world"');
    expect(await cli("EcHo", "x")).toBe('"x"');
  });

  test("SET, GET, EXISTS, DEL (counts), DBSIZE", async () => {
    expect(await cli("GET", "cli:a")).toBe("(nil)");
    expect(await cli("SET", "cli:a", "1")).toBe("OK");
    expect(await cli("SET", "cli:b", "two")).toBe("OK");
    expect(await cli("GET", "cli:b")).toBe('"two"');
    expect(await cli("EXISTS", "cli:a", "cli:b", "cli:none", "cli:a")).toBe("(integer) 3");
    const keys = Number((await cli("DBSIZE")).replace("(integer) ", ""));
    expect(keys).toBeGreaterThanOrEqual(2);
    expect(await cli("DEL", "cli:a", "cli:none", "cli:a", "cli:b")).toBe("(integer) 2");
    expect(await cli("DEL", "cli:a")).toBe("(integer) 0");
    expect(await cli("DBSIZE")).toBe(`(integer) ${keys - 2}`);
  });

  test("MSET is one atomic WAL record; MGET returns nil for missing keys", async () => {
    const before = await visibleLsn();
    expect(await cli("MSET", "ms:1", "a", "ms:2", "b", "ms:3", "c")).toBe("OK");
    expect(await visibleLsn()).toBe(before + 1);
    expect(await cli("MGET", "ms:1", "ms:none", "ms:3")).toBe('1) "a"\n2) (nil)\n3) "c"');
    expect(await cli("DEL", "ms:1", "ms:2")).toBe("(integer) 2");
    expect(await visibleLsn()).toBe(before + 2); // several keys: one record too
    expect(await cli("MSET", "ms:1", "a", "ms:2")).toBe(
      "(error) ERR wrong number of arguments for 'mset' command",
    );
  });

  test("binary-safe values through redis-cli -x: every byte value round-trips exactly", async () => {
    const value = new Uint8Array(512).map((_, i) => i % 256);
    const set = await redisCli(["-s", resp_path, "-x", "SET", "bin:all"], value);
    expect(set.stdout).toBe("OK\n");
    const got = await redisCli(["-s", resp_path, "GET", "bin:all"]);
    expect(got.bytes.subarray(0, -1)).toEqual(value); // redis-cli ends the output with a newline
  });

  test("SELECT 0 only; unknown commands and wrong arity are errors in Redis's words", async () => {
    expect(await cli("SELECT", "0")).toBe("OK");
    expect(await cli("SELECT", "1")).toBe("(error) ERR DB index is out of range");
    expect(await cli("SELECT", "x")).toBe("(error) ERR value is not an integer or out of range");
    expect(await cli("FLUSHALL", "ASYNC")).toBe(
      "(error) ERR unknown command 'FLUSHALL', with args beginning with: 'ASYNC' ",
    );
    expect(await cli("GET")).toBe("(error) ERR wrong number of arguments for 'get' command");
    expect(await cli("GET", "a", "b")).toBe("(error) ERR wrong number of arguments for 'get' command");
    expect(await cli("SET", "opt", "v", "EX", "10")).toMatch(
      /^\(error\) ERR SET options .* not supported yet$/,
    );
    expect(await cli("GET", "opt")).toBe("(nil)"); // nothing changed
  });

  test("INFO (all sections and one), CONFIG GET, COMMAND", async () => {
    await cli("SET", "info:k", "v");
    const info = await redisCli(["-s", resp_path, "INFO"]);
    for (const field of [
      /^# Server$/m,
      /^walkv_version:\d+\.\d+\.\d+/m,
      /^process_id:\d+/m,
      /^uptime_in_seconds:\d+/m,
      /^tcp_port:0/m,
      /^connected_clients:\d+/m,
      /^used_memory:\d+/m,
      /^used_memory_human:[\d.]+[BKMG]/m,
      /^aof_enabled:1/m,
      /^walkv_fsync:no/m,
      /^rdb_last_save_time:\d+/m,
      /^total_commands_processed:\d+/m,
      /^db0:keys=\d+,expires=0,avg_ttl=0/m,
    ]) {
      expect(info.stdout).toMatch(field);
    }
    const keyspace = await redisCli(["-s", resp_path, "INFO", "keyspace"]);
    expect(keyspace.stdout).toMatch(/^# Keyspace\r?\ndb0:keys=\d+/);
    expect(keyspace.stdout).not.toMatch(/# Server/);
    expect(await cli("CONFIG", "GET", "save")).toBe('1) "save"\n2) ""');
    expect(await cli("CONFIG", "GET", "appendonly")).toBe('1) "appendonly"\n2) "yes"');
    expect(await cli("config", "get", "append*")).toBe(
      '1) "appendonly"\n2) "yes"\n3) "appendfsync"\n4) "no"',
    );
    expect(await cli("CONFIG", "GET", "no-such-setting")).toBe("(empty array)");
    expect(await cli("CONFIG", "SET", "save", "")).toMatch(/^\(error\) ERR CONFIG SET is not supported/);
    const count = Number((await cli("COMMAND", "COUNT")).replace("(integer) ", ""));
    expect(count).toBeGreaterThanOrEqual(16);
    expect((await cli("COMMAND", "LIST")).split("\n").length).toBe(count);
    expect(await cli("COMMAND", "INFO", "get")).toMatch(/^1\) {2}1\) "get"\n {4}2\) \(integer\) 2/);
    expect(await cli("COMMAND", "DOCS", "set")).toMatch(/"summary"/);
  });

  test("HELLO 2 answers the server's facts; HELLO 3 is refused (clients fall back to RESP2)", async () => {
    const facts = await cli("HELLO", "2");
    expect(facts).toMatch(/ 1\) "server"\n 2\) "walkv"\n/);
    expect(facts).toMatch(/"proto"\n 6\) \(integer\) 2\n/);
    expect(await cli("HELLO", "3")).toMatch(/^\(error\) NOPROTO/);
  });

  test("AUTH without a configured token is Redis's error", async () => {
    expect(await cli("AUTH", "x")).toMatch(
      /^\(error\) ERR AUTH <password> called without any password configured/,
    );
  });
});

describe("RESP values and the msgpack protocol: one store", () => {
  test("a key written through RESP is a msgpack bin; a msgpack str key is the same RESP key", async () => {
    const c = await client();
    expect(await c.call("SET", "both:1", "from resp")).toBe("OK");
    await msgpack(async (m) => {
      const [, code, value] = await m.call("get", "both:1");
      expect(code).toBe(0);
      expect(new Uint8Array(value as Uint8Array)).toEqual(encoder.encode("from resp"));
      // Same key as a bin: the same entry.
      m.sendFrame(rawRequest([0x01], msgStr("get"), msgBin(encoder.encode("both:1"))));
      expect(await m.next()).toEqual([1, 0, encoder.encode("from resp")]);
      expect((await m.call("set", "both:2", "from msgpack"))[1]).toBe(0);
      expect((await m.call("set", "both:3", encoder.encode("bytes")))[1]).toBe(0);
      expect((await m.call("set", "both:4", { a: [1, 2] }))[1]).toBe(0);
      expect((await m.call("set", "both:5", 42))[1]).toBe(0);
    });
    expect(text(await c.call("GET", "both:2"))).toBe("from msgpack");
    expect(text(await c.call("GET", "both:3"))).toBe("bytes");
    expect(error(await c.call("GET", "both:4"))).toMatch(
      /^WRONGTYPE .*a msgpack map written by the msgpack protocol/,
    );
    expect(error(await c.call("GET", "both:5"))).toMatch(/^WRONGTYPE .*a msgpack integer/);
    expect(await c.call("MGET", "both:2", "both:4", "both:5", "both:none")).toEqual([
      encoder.encode("from msgpack"),
      null,
      null,
      null,
    ]);
    expect(await c.call("EXISTS", "both:4")).toBe(1);
    expect(await c.call("DEL", "both:4", "both:5")).toBe(2);
    c.close();
  });

  test("stats and the metrics count RESP commands by op", async () => {
    const before = await msgpack(
      async (m) => ((await m.call("stats"))[2] as { ops: Record<string, number> }).ops,
    );
    const c = await client();
    for (let i = 0; i < 5; i++) await c.call("GET", "metrics:k");
    await c.call("SET", "metrics:k", "v");
    c.close();
    const after = await msgpack(
      async (m) => ((await m.call("stats"))[2] as { ops: Record<string, number> }).ops,
    );
    expect(after.get! - before.get!).toBe(5);
    expect(after.set! - before.set!).toBe(1);
  });
});

describe("RESP protocol handling", () => {
  test("1000 pipelined commands in one write are answered in order; a read sees the writes before it", async () => {
    const c = await client();
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 500; i++) {
      parts.push(command("SET", `pipe:${i}`, `v${i}`), command("GET", `pipe:${i}`));
    }
    c.sendRaw(concatBytes(parts));
    for (let i = 0; i < 500; i++) {
      expect(await c.next()).toBe("OK");
      expect(text(await c.next())).toBe(`v${i}`);
    }
    c.close();
  });

  test("inline commands (telnet style), blank lines skipped", async () => {
    const c = await client();
    c.sendRaw("PING\r\n\r\nSET inline:k hello\nGET inline:k\r\n  EXISTS   inline:k inline:none \r\n");
    expect(await c.next()).toBe("PONG");
    expect(await c.next()).toBe("OK");
    expect(text(await c.next())).toBe("hello");
    expect(await c.next()).toBe(1);
    c.close();
  });

  test("QUIT: +OK after every earlier reply, then the connection closes", async () => {
    const c = await client();
    c.sendRaw(
      concatBytes([
        command("SET", "quit:k", "v"),
        command("GET", "quit:k"),
        command("QUIT"),
        command("PING"),
      ]),
    );
    const replies = await c.rest();
    expect(replies.length).toBe(3);
    expect(replies[0]).toBe("OK");
    expect(text(replies[1]!)).toBe("v");
    expect(replies[2]).toBe("OK");
  });

  test("garbage: earlier replies, then -ERR Protocol error and the connection closes; others unaffected", async () => {
    const other = await client();
    const c = await client();
    c.sendRaw(concatBytes([command("PING"), encoder.encode("*2\r\n$3\r\nGET\r\nxx\r\n"), command("PING")]));
    const replies = await c.rest();
    expect(replies).toEqual(["PONG", new ErrorReply("ERR Protocol error: expected '$', got 'x'")]);
    expect(await other.call("PING")).toBe("PONG");
    other.close();
  });

  test("a request over --max-frame-bytes: protocol error and close, before its bytes arrive", async () => {
    const c = await client();
    c.sendRaw(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${MAX_FRAME_BYTES}\r\n`);
    const replies = await c.rest();
    expect(replies.length).toBe(1);
    expect(error(replies[0]!)).toMatch(/^ERR Protocol error: request over the limit of 262144 bytes/);
  });

  test("too many arguments and too long an inline line: protocol errors", async () => {
    const many = await client();
    many.sendRaw("*2000000\r\n");
    expect(error((await many.rest())[0]!)).toBe("ERR Protocol error: invalid multibulk length");
    const long = await client();
    long.sendRaw("x".repeat(70 * KiB));
    expect(error((await long.rest())[0]!)).toBe("ERR Protocol error: too big inline request");
  });

  test("a key or value over its limit is an error, nothing changes, the connection stays usable", async () => {
    const c = await client();
    const big_key = "k".repeat(MAX_KEY_BYTES + 1);
    expect(error(await c.call("SET", big_key, "v"))).toMatch(
      /^ERR key of 1025 bytes is over the limit of 1024/,
    );
    expect(error(await c.call("GET", big_key))).toMatch(/over the limit/);
    expect(error(await c.call("SET", "big:v", "x".repeat(MAX_VALUE_BYTES)))).toMatch(
      /^ERR value of 65541 bytes is over the limit of 65536/,
    );
    expect(error(await c.call("MSET", "big:a", "1", "big:b", "x".repeat(MAX_VALUE_BYTES)))).toMatch(
      /over the limit/,
    );
    expect(await c.call("MGET", "big:v", "big:a", "big:b")).toEqual([null, null, null]);
    expect(await c.call("SET", "big:v", "x".repeat(MAX_VALUE_BYTES - 3))).toBe("OK"); // exactly the limit
    expect(((await c.call("GET", "big:v")) as Uint8Array).length).toBe(MAX_VALUE_BYTES - 3);
    expect(await c.call("PING")).toBe("PONG");
    c.close();
  });

  test("a client that never reads is cut off past --max-output-bytes; the daemon stays up", async () => {
    const c = await client();
    expect(await c.call("SET", "hog:v", "x".repeat(60 * KiB))).toBe("OK");
    const hog = await client();
    hog.socket.pause(); // never reads
    hog.sendRaw(concatBytes(Array.from({ length: 100 }, () => command("GET", "hog:v")))); // ≈ 6 MiB of replies
    hog.socket.resume();
    const replies = await hog.rest();
    expect(replies.length).toBeLessThan(100);
    expect(await c.call("PING")).toBe("PONG");
    c.close();
  });

  test("redis-benchmark: SET and GET complete with no errors", async () => {
    const proc = Bun.spawn(
      [requireTool("redis-benchmark"), "-s", resp_path, "-n", "2000", "-t", "set,get", "-q"],
      {
        stdout: "pipe",
        stderr: "pipe",
      },
    );
    const [out, err, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    expect(code).toBe(0);
    const lines = out.split(/[\r\n]+/).filter((line) => / requests per second/.test(line));
    expect(lines.map((line) => line.split(":")[0]!.trim())).toEqual(["SET", "GET"]);
    expect(`${out}\n${err}`).not.toMatch(/error|WARNING/i);
  }, 60_000);
});

describe("RESP with --auth-token-file", () => {
  let auth: Daemon;
  let auth_resp: string;

  beforeAll(async () => {
    const dir = tempDir();
    const token_file = path.join(dir, "token");
    fs.writeFileSync(token_file, `${TOKEN}\n`, { mode: 0o600 });
    auth_resp = path.join(dir, "resp.sock");
    auth = await Daemon.start({
      dir,
      workers: 1,
      args: ["--fsync", "no", "--auth-token-file", token_file, "--resp", auth_resp, "--max-connections", "4"],
    });
  });

  afterAll(async () => {
    expect(await auth.stop()).toBe(0);
  });

  test("NOAUTH until AUTH; a wrong token is WRONGPASS; QUIT works unauthenticated", async () => {
    const c = await RespClient.connect({ path: auth_resp });
    expect(error(await c.call("GET", "k"))).toBe("NOAUTH Authentication required.");
    expect(error(await c.call("PING"))).toBe("NOAUTH Authentication required.");
    expect(error(await c.call("AUTH", "wrong"))).toBe(
      "WRONGPASS invalid username-password pair or user is disabled.",
    );
    expect(error(await c.call("AUTH", "someone", TOKEN))).toMatch(/^WRONGPASS/);
    expect(await c.call("AUTH", TOKEN)).toBe("OK");
    expect(await c.call("SET", "k", "v")).toBe("OK");
    expect(error(await c.call("AUTH", "wrong"))).toMatch(/^WRONGPASS/); // takes the authentication back
    expect(error(await c.call("GET", "k"))).toBe("NOAUTH Authentication required.");
    expect(await c.call("AUTH", "default", TOKEN)).toBe("OK");
    expect(text(await c.call("GET", "k"))).toBe("v");
    expect(await c.call("QUIT")).toBe("OK");
    await c.closed;
    const fresh = await RespClient.connect({ path: auth_resp });
    expect(error(await fresh.call("HELLO", "2"))).toMatch(/^NOAUTH HELLO must be called/);
    const hello = (await fresh.call("HELLO", "2", "AUTH", "default", TOKEN)) as Reply[];
    expect(text(hello[1]!)).toBe("walkv");
    expect(text(await fresh.call("GET", "k"))).toBe("v");
    fresh.close();
  });

  test("redis-cli -a and --user/--pass authenticate", async () => {
    const a = await redisCli(["-s", auth_resp, "--no-auth-warning", "-a", TOKEN, "GET", "k"]);
    expect(a.stdout).toBe("v\n");
    const user = await redisCli([
      "-s",
      auth_resp,
      "--no-auth-warning",
      "--user",
      "default",
      "--pass",
      TOKEN,
      "PING",
    ]);
    expect(user.stdout).toBe("PONG\n");
  });

  test("--max-connections counts RESP connections: one over the limit gets -ERR and is closed", async () => {
    // Connections of earlier tests count until the server has seen them close: retry until four
    // are accepted at once.
    let open: RespClient[] = [];
    await waitUntil(async () => {
      for (const c of open) c.close();
      open = await Promise.all(Array.from({ length: 4 }, () => RespClient.connect({ path: auth_resp })));
      const replies = await Promise.all(open.map((c) => c.call("AUTH", TOKEN).catch(() => undefined)));
      return replies.every((reply) => reply === "OK");
    }, "four connections to be accepted at once");
    const refused = await RespClient.connect({ path: auth_resp });
    expect(await refused.rest()).toEqual([new ErrorReply("ERR too many connections (limit 4)")]);
    for (const c of open) c.close();
    // The count falls back as the server sees the closes: a new connection is then accepted.
    await waitUntil(async () => {
      const c = await RespClient.connect({ path: auth_resp });
      const ok = (await c.call("AUTH", TOKEN).catch(() => undefined)) === "OK";
      c.close();
      return ok;
    }, "a connection to be accepted again");
  });
});

describe("RESP over TCP and its flags", () => {
  test("--resp 127.0.0.1:0: redis-cli -h -p, INFO and CONFIG GET port report the port; SIGTERM answers in-flight writes", async () => {
    const tcp = await Daemon.start({ workers: 2, args: ["--fsync", "no", "--resp", "127.0.0.1:0"] });
    const port = Number(tcp.stdout.match(/RESP on 127\.0\.0\.1:(\d+)/)?.[1]);
    expect(port).toBeGreaterThan(0);
    const run = async (...args: string[]) =>
      (await redisCli(["-h", "127.0.0.1", "-p", String(port), ...args])).stdout.replace(/\n$/, "");
    expect(await run("SET", "tcp:k", "v")).toBe("OK");
    expect(await run("GET", "tcp:k")).toBe("v");
    expect(await run("INFO", "server")).toMatch(new RegExp(`^tcp_port:${port}\\r?$`, "m"));
    expect(await run("CONFIG", "GET", "port")).toBe(`port\n${port}`);
    // Shutdown: every request already read is answered (an in-order prefix of +OK), then the end.
    const c = await RespClient.connect({ host: "127.0.0.1", port });
    c.sendRaw(concatBytes(Array.from({ length: 300 }, (_, i) => command("SET", `drain:${i}`, "v"))));
    expect(await c.next()).toBe("OK");
    const exit = tcp.stop();
    const replies = await c.rest();
    expect(replies.every((r) => r === "OK")).toBe(true);
    expect(await exit).toBe(0);
  });

  test("--resp 0.0.0.0:PORT without --resp-allow-public is refused before anything starts", async () => {
    const refused = Daemon.spawn({ args: ["--resp", "0.0.0.0:0"] });
    expect(await refused.exited).not.toBe(0);
    expect(refused.stderr).toMatch(/--resp 0\.0\.0\.0: not a loopback address; add --resp-allow-public/);
    expect(fs.existsSync(refused.socket_path)).toBe(false);
    expect(fs.existsSync(path.join(refused.data_dir, "walkv.pid"))).toBe(false);
  });

  test("--resp on the main socket's path, or not an address, is refused", async () => {
    const dir = tempDir();
    const same = Daemon.spawn({ dir, args: ["--resp", path.join(dir, "walkv.sock")] });
    expect(await same.exited).not.toBe(0);
    expect(same.stderr).toMatch(/--resp .*walkv\.sock: needs a socket path of its own/);
    const bad = Daemon.spawn({ args: ["--resp", "localhost"] });
    expect(await bad.exited).toBe(2);
    expect(bad.stderr).toMatch(/--resp: "localhost" is not HOST:PORT or a socket PATH/);
  });

  test("the RESP socket gets --socket-mode, via a private directory", async () => {
    const dir = tempDir();
    const sock = path.join(dir, "r.sock");
    const d = await Daemon.start({
      dir,
      workers: 1,
      args: ["--fsync", "no", "--resp", sock, "--socket-mode", "0660"],
    });
    expect(fs.statSync(sock).mode & 0o777).toBe(0o660);
    expect(fs.readdirSync(dir).filter((name) => name.startsWith(".walkv-bind-"))).toEqual([]);
    expect(await d.stop()).toBe(0);
    expect(fs.existsSync(sock)).toBe(false);
  });
});
