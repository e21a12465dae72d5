/**
 * `walkv get|set|del|exists|mget|mset|stats|checkpoint|ping` as processes against real daemons:
 * JSON output, exit codes (0 ok, 1 server error, 2 usage, 4 connection), --json, --token-file,
 * WALKV_SOCKET.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as path from "node:path";
import { toJson } from "../../src/cli/client_commands.ts";
import { connect } from "../../src/client/index.ts";
import { type Daemon, startDaemonPair, stopAllDaemons, tempDir } from "../server/daemon.ts";
import { runWalkv as walkv } from "./walkv_process.ts";

const TOKEN = "cli-token";

// Spawning daemons and CLI processes is slow on a loaded machine.
setDefaultTimeout(60_000);

let plain: Daemon;
let guarded: Daemon;
let token_file: string;

beforeAll(async () => {
  ({ plain, guarded, token_file } = await startDaemonPair(TOKEN, ["--max-value-bytes", "16"]));
});

afterAll(stopAllDaemons);

/** Runs `walkv CMD --socket PATH ...args` on the plain daemon, expects exit 0, returns the parsed JSON. */
async function ok([name, ...args]: string[]): Promise<unknown> {
  const run = await walkv([name!, "--socket", plain.socket_path, ...args]);
  expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: "" });
  expect(run.stdout.endsWith("\n")).toBe(true);
  return JSON.parse(run.stdout);
}

describe("walkv client commands", () => {
  test("ping, set, get, exists, del, mset, mget, stats, checkpoint print JSON", async () => {
    expect(await ok(["ping"])).toBe("pong");
    expect(await ok(["set", "greeting", "hello world"])).toBe(true);
    expect(await ok(["get", "greeting"])).toBe("hello world");
    expect(await ok(["get", "nope"])).toBeNull();
    expect(await ok(["exists", "greeting"])).toBe(true);
    expect(await ok(["exists", "nope"])).toBe(false);
    expect(await ok(["set", "--json", "doc", '{"a":[1,2],"b":null}'])).toBe(true);
    expect(await ok(["get", "doc"])).toEqual({ a: [1, 2], b: null });
    expect(await ok(["set", "num", "--", "-5"])).toBe(true); // text, not a flag
    expect(await ok(["get", "num"])).toBe("-5");
    expect(await ok(["mset", "k1", "v1", "k2", "v2"])).toBe(true);
    expect(await ok(["mset", "--json", "n1", "1", "n2", "[true]"])).toBe(true);
    expect(await ok(["mget", "k1", "k2", "n1", "n2", "nope"])).toEqual(["v1", "v2", 1, [true], null]);
    expect(await ok(["del", "k1"])).toBe(true);
    expect(await ok(["del", "k1"])).toBe(false);
    expect(await ok(["stats"])).toHaveProperty("keys");
    const checkpoint = (await ok(["checkpoint"])) as { lsn: number; bytes: number };
    expect(checkpoint.lsn).toBeGreaterThan(0);
    expect(checkpoint.bytes).toBeGreaterThan(0);
  });

  test("bin values print as {$bin: base64}; WALKV_SOCKET picks the socket", async () => {
    const c = await connect({ path: plain.socket_path });
    await c.set("blob", new Uint8Array([0, 1, 2, 250]));
    await c.setRaw("big", new Uint8Array([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    await c.close();
    const run = await walkv(["mget", "blob", "big"], { WALKV_SOCKET: plain.socket_path });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('[{"$bin":"AAEC+g=="},{"$bigint":"18446744073709551615"}]\n');
  });

  test("toJson: undefined → null, nested bytes", () => {
    expect(toJson(undefined)).toBe("null");
    expect(toJson({ a: [new Uint8Array([255]), undefined] })).toBe('{"a":[{"$bin":"/w=="},null]}');
  });

  test("--token-file authenticates; without it → exit 1 auth_required", async () => {
    const denied = await walkv(["ping", "--socket", guarded.socket_path]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/walkv ping: auth_required: /);
    expect(denied.stdout).toBe("");
    const allowed = await walkv(["ping", "--socket", guarded.socket_path, "--token-file", token_file]);
    expect(allowed).toEqual({ code: 0, stdout: '"pong"\n', stderr: "" });
    const via_env = await walkv(["ping"], {
      WALKV_SOCKET: guarded.socket_path,
      WALKV_TOKEN_FILE: token_file,
    });
    expect(via_env.code).toBe(0);
  });

  test("server errors exit 1 with the code name on stderr", async () => {
    const run = await walkv([
      "set",
      "k",
      "a value longer than sixteen bytes",
      "--socket",
      guarded.socket_path,
      "--token-file",
      token_file,
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/walkv set: too_large: /);
    expect(run.stdout).toBe("");
  });

  test("usage errors exit 2; --help exits 0 for every command", async () => {
    const usage_errors = [
      ["set", "only-key"],
      ["get"],
      ["get", "a", "b"],
      ["mset", "k1", "v1", "k2"],
      ["mget"],
      ["ping", "extra"],
      ["set", "k", "{not json", "--json"],
      ["get", "k", "--json"],
      ["get", "k", "--bogus"],
      ["get", "k", "--token-file", "/nonexistent/token"],
    ];
    for (const args of usage_errors) {
      const run = await walkv([...args, "--socket", plain.socket_path]);
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: "" });
      expect(run.stderr).toMatch(/usage: walkv /);
    }
    for (const name of ["get", "set", "del", "exists", "mget", "mset", "stats", "checkpoint", "ping"]) {
      const run = await walkv([name, "--help"]);
      expect({ name, code: run.code }).toEqual({ name, code: 0 });
      expect(run.stdout).toContain(`usage: walkv ${name}`);
      expect(run.stdout).toContain("--socket PATH");
    }
  });

  test("no daemon → exit 4", async () => {
    const run = await walkv(["get", "k", "--socket", path.join(tempDir(), "none.sock")]);
    expect(run.code).toBe(4);
    expect(run.stderr).toMatch(/walkv get: connection: cannot connect/);
    expect(run.stdout).toBe("");
  });
});
