/**
 * End-to-end tests of `--auth-token-file`: every op but `auth` answers code 4 until the connection
 * sent the right token; a wrong token is code 4; each connection authenticates on its own.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { Daemon, stopAllDaemons, tempDir } from "./daemon.ts";

const TOKEN = "s3cret-token";
let daemon: Daemon;

beforeAll(async () => {
  const token_file = path.join(tempDir(), "token");
  fs.writeFileSync(token_file, `${TOKEN}\n`, { mode: 0o600 });
  daemon = await Daemon.start({ args: ["--fsync", "no", "--auth-token-file", token_file] });
});

afterAll(async () => {
  if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
  await stopAllDaemons();
});

describe("auth", () => {
  test("every op needs auth first; a wrong token is code 4; the right one is ok", async () => {
    const c = await daemon.client();
    const required = /authentication required/;
    for (const [op, ...args] of [["ping"], ["get", "k"], ["set", "k", 1], ["stats"], ["checkpoint"]]) {
      const [, code, message] = await c.call(op as string, ...args);
      expect(code).toBe(4);
      expect(message as string).toMatch(required);
    }
    expect(await c.call("auth", "wrong")).toEqual([6, 4, "auth: wrong token"]);
    expect(await c.call("auth", `${TOKEN}x`)).toEqual([7, 4, "auth: wrong token"]);
    expect(await c.call("auth", TOKEN.slice(0, -1))).toEqual([8, 4, "auth: wrong token"]);
    expect((await c.call("ping"))[1]).toBe(4);
    expect((await c.call("auth"))[1]).toBe(1); // wrong arity
    expect(await c.call("auth", TOKEN)).toEqual([11, 0, true]);
    expect(await c.call("ping")).toEqual([12, 0, "pong"]);
    expect(await c.call("set", "k", 1)).toEqual([13, 0, true]);
    expect(await c.call("get", "k")).toEqual([14, 0, 1]);
    c.close();
  });

  test("the token may be sent as bin; each connection authenticates on its own", async () => {
    const a = await daemon.client();
    const b = await daemon.client();
    expect(await a.call("auth", new TextEncoder().encode(TOKEN))).toEqual([1, 0, true]);
    expect(await a.call("get", "k")).toEqual([2, 0, 1]);
    expect((await b.call("get", "k"))[1]).toBe(4);
    a.close();
    b.close();
  });

  test("a wrong token after a right one takes the authentication back", async () => {
    const c = await daemon.client();
    expect(await c.call("auth", TOKEN)).toEqual([1, 0, true]);
    expect(await c.call("auth", "nope")).toEqual([2, 4, "auth: wrong token"]);
    expect((await c.call("ping"))[1]).toBe(4);
    c.close();
  });

  test("a pipeline sent before the auth answer is in order: earlier ops refused, later ones run", async () => {
    const c = await daemon.client();
    c.send([1, "get", "k"]);
    c.send([2, "auth", TOKEN]);
    c.send([3, "get", "k"]);
    expect((await c.next()).slice(0, 2)).toEqual([1, 4]);
    expect(await c.next()).toEqual([2, 0, true]);
    expect(await c.next()).toEqual([3, 0, 1]);
    c.close();
  });
});
