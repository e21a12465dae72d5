/**
 * `walkv bench` as a process against real daemons (and, for --protocol resp, a real redis-server on a
 * temporary Unix socket): exact request counts, the op mix of --read-ratio, the values it wrote in
 * the store, error responses counted by code (exit 1), auth, connection failures (exit 4) and flag
 * validation (exit 2). Short runs only: figures are for scripts, never asserted here.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import type { BenchReport } from "../../src/cli/bench/report.ts";
import {
  connectionQuota,
  connectionSeed,
  keyText,
  OP_GET,
  RequestStream,
  valuePayload,
} from "../../src/cli/bench/workload.ts";
import { killAll, ServeProcess, tempDir as serveTempDir } from "../dist/serve_process.ts";
import { Daemon, startDaemonPair, stopAllDaemons, tempDir } from "../server/daemon.ts";
import { type Run, runWalkv } from "./walkv_process.ts";

// Spawning daemons and CLI processes is slow on a loaded machine.
setDefaultTimeout(60_000);

const TOKEN = "bench-token";

let plain: Daemon;
let guarded: Daemon;
let token_file: string;

beforeAll(async () => {
  ({ plain, guarded, token_file } = await startDaemonPair(TOKEN, [
    "--fsync",
    "no",
    "--max-value-bytes",
    "64",
  ]));
});

afterAll(async () => {
  await stopAllDaemons();
  await killAll();
});

/** Runs `walkv bench ...args` to completion. */
function bench(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runWalkv(["bench", ...args], env);
}

/** Runs `walkv bench --json ...args`, expects `code`, returns the report. */
async function benchJson(args: string[], code = 0): Promise<BenchReport> {
  const run = await bench(["--json", ...args]);
  expect({ code: run.code, stderr: run.code === code ? "" : run.stderr }).toEqual({ code, stderr: "" });
  return JSON.parse(run.stdout) as BenchReport;
}

interface Plan {
  gets: number;
  sets: number;
  /** Keys some SET wrote. */
  written: Set<number>;
}

/** What a `--requests` run sends, drawn from the same seeded streams as the bench. */
function plan(requests: number, connections: number, seed: number, read_ratio: number, keys: number): Plan {
  const result: Plan = { gets: 0, sets: 0, written: new Set() };
  for (let c = 0; c < connections; c++) {
    const stream = new RequestStream(connectionSeed(seed, c), read_ratio, keys);
    for (let i = connectionQuota(requests, connections, c); i > 0; i--) {
      const op = stream.nextOp();
      const key = stream.nextKey();
      if (op === OP_GET) result.gets++;
      else {
        result.sets++;
        result.written.add(key);
      }
    }
  }
  return result;
}

describe("walkv bench, msgpack", () => {
  test("--requests: exact counts, the planned op mix, pipeline 1 and 16, several connections", async () => {
    for (const [pipeline, connections] of [
      [1, 4],
      [16, 3],
      [16, 7],
    ] as const) {
      const args = ["--socket", plain.socket_path, "--requests", "2000", "--seed", "7"];
      const report = await benchJson([
        ...args,
        "--pipeline",
        `${pipeline}`,
        "--connections",
        `${connections}`,
      ]);
      const expected = plan(2000, connections, 7, 0.5, 100_000);
      expect(report.requests).toBe(2000);
      expect(report.ops.all.count).toBe(2000);
      expect([report.ops.get.count, report.ops.set.count]).toEqual([expected.gets, expected.sets]);
      expect(Math.abs(report.ops.get.count / 2000 - 0.5)).toBeLessThan(0.05);
      expect(report.error_count).toBe(0);
      expect(report.settings).toMatchObject({ protocol: "msgpack", pipeline, connections, read_ratio: 0.5 });
      const l = report.ops.all.latency_us;
      expect(0 <= l.p50 && l.p50 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.max).toBe(true);
    }
  });

  test("--read-ratio 1 sends no SET; 0.9 about 90 % GETs", async () => {
    const reads = await benchJson(["--socket", plain.socket_path, "--requests", "2000", "--read-ratio", "1"]);
    expect([reads.ops.get.count, reads.ops.set.count]).toEqual([2000, 0]);
    const mostly = await benchJson([
      "--socket",
      plain.socket_path,
      "--requests",
      "2000",
      "--read-ratio",
      ".9",
    ]);
    expect(Math.abs(mostly.ops.get.count / 2000 - 0.9)).toBeLessThan(0.03);
  });

  test("the values written land in the store, under the planned keys only", async () => {
    const daemon = await Daemon.start({ args: ["--fsync", "no"] });
    const [requests, connections, seed, keys, value_bytes] = [2000, 5, 11, 3000, 40];
    const args = [
      "--socket",
      daemon.socket_path,
      "--requests",
      `${requests}`,
      "--connections",
      `${connections}`,
    ];
    args.push(
      "--seed",
      `${seed}`,
      "--keys",
      `${keys}`,
      "--value-bytes",
      `${value_bytes}`,
      "--read-ratio",
      "0.25",
    );
    const report = await benchJson([...args, "--pipeline", "8"]);
    const expected = plan(requests, connections, seed, 0.25, keys);
    expect(report.ops.set.count).toBe(expected.sets);
    const client = await daemon.client();
    const all_keys = Array.from({ length: keys }, (_, k) => keyText(k));
    const [, code, values] = await client.call("mget", all_keys);
    expect(code).toBe(0);
    const value = new TextDecoder().decode(valuePayload(seed, value_bytes - 2)); // a str8 header: 2 bytes
    const want = all_keys.map((_, k) => (expected.written.has(k) ? value : null));
    expect(values).toEqual(want);
    expect(expected.written.size).toBeGreaterThan(1000);
    client.close();
    expect(await daemon.stop()).toBe(0);
  });

  test("--duration: runs until the time is up, a progress line on stderr; text output", async () => {
    const run = await bench(["--socket", plain.socket_path, "--duration", "1.5", "--connections", "2"]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^walkv bench: 1\.\d s, [\d,]+ requests, [\d,]+ ops\/s so far$/m);
    expect(run.stdout).toMatch(/^walkv bench: msgpack on .*, 2 connections × pipeline 1, 100,000 keys/);
    expect(run.stdout).toMatch(/^op +count +ops\/s +p50 ms +p99 ms +p99\.9 ms +max ms$/m);
    expect(run.stdout).toMatch(/^all +[\d,]+ +[\d,]+ +\d+\.\d{3} /m);
    const seconds = Number(run.stdout.match(/requests in ([\d.]+) s/)![1]);
    expect(seconds).toBeGreaterThanOrEqual(1.5);
  });

  test("error responses are counted by code and exit 1; --token-file authenticates", async () => {
    const base = ["--socket", guarded.socket_path, "--requests", "500", "--connections", "2"];
    const no_auth = await benchJson([...base, "--read-ratio", "1"], 1);
    expect(no_auth.error_count).toBe(500);
    expect(Object.keys(no_auth.errors)).toEqual(["auth_required (code 4)"]);
    expect(no_auth.errors["auth_required (code 4)"]!.message).toMatch(/authentication required/);

    const too_large = await benchJson([...base, "--token-file", token_file, "--value-bytes", "100"], 1);
    const expected = plan(500, 2, 1, 0.5, 100_000);
    expect(too_large.errors).toEqual({
      "too_large (code 2)": { count: expected.sets, message: expect.stringMatching(/64/) },
    });
    expect(too_large.ops.all.count).toBe(500);

    const fine = await benchJson([...base, "--token-file", token_file, "--value-bytes", "64"]);
    expect([fine.requests, fine.error_count]).toEqual([500, 0]);

    const text = await bench([...base, "--read-ratio", "1"]);
    expect(text.stdout).toMatch(/^errors: 500\n {2}auth_required \(code 4\): 500 \(first: ".*"\)$/m);
  });

  test("a wrong token is refused before the load; no daemon: exit 4", async () => {
    const wrong = path.join(tempDir(), "wrong");
    fs.writeFileSync(wrong, "nope");
    const refused = await bench(["--socket", guarded.socket_path, "--requests", "10", "--token-file", wrong]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/walkv bench: auth refused: /);
    const missing = await bench(["--socket", path.join(tempDir(), "none.sock"), "--requests", "10"]);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/walkv bench: cannot connect to .*none\.sock/);
  });
});

describe("walkv bench flags", () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [["--read-ratio", "1.5"], {}, /--read-ratio: 1\.5 is out of range \[0, 1\]/],
    [["--read-ratio", "half"], {}, /--read-ratio: "half" is not a number/],
    [["--connections", "0"], {}, /--connections: 0 is out of range/],
    [["--pipeline", "1025"], {}, /--pipeline: 1025 is out of range/],
    [["--keys", "1e3"], {}, /--keys: "1e3" is not a whole number/],
    [["--value-bytes", "0"], {}, /--value-bytes: 0 is out of range/],
    [["--duration", "0"], {}, /--duration: 0 is out of range/],
    [["--protocol", "http"], {}, /--protocol: "http" is not one of msgpack, resp/],
    [["--requests", "10", "--duration", "1"], {}, /give --requests or --duration, not both/],
    [["--requests", "10"], { WALKV_DURATION: "2" }, /not both/],
    [[], { WALKV_PIPELINE: "0" }, /WALKV_PIPELINE: 0 is out of range/],
    [["stray"], {}, /unexpected argument "stray"/],
    [["--conections", "5"], {}, /Unknown option '--conections'/],
    [["--connections", "10000", "--pipeline", "1024"], {}, /over the limit of 268435456/],
    [["--token-file", "/nonexistent/token"], {}, /--token-file: cannot read/],
  ];
  for (const [args, env, message] of cases) {
    test(`${[...args, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(" ")}: exit 2`, async () => {
      const run = await bench(["--socket", "/nonexistent.sock", ...args], env);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).toContain("usage: walkv bench");
      expect(run.stdout).toBe("");
    });
  }

  test("walkv help lists bench; walkv bench --help explains the flags", async () => {
    const help = Bun.spawnSync(["node_modules/.bin/bun", "src/cli/main.ts", "help"]);
    expect(help.stdout.toString()).toMatch(/^ {2}bench +load a daemon/m);
    const usage = await bench(["--help"]);
    expect(usage.code).toBe(0);
    expect(usage.stdout).toContain("--read-ratio N");
    expect(usage.stdout).toContain("[env WALKV_VALUE_BYTES]");
  });
});

describe("walkv bench --protocol resp, against redis-server", () => {
  test("counts, values in Redis, NOAUTH errors counted, AUTH with --token-file", async () => {
    const redis_server = Bun.which("redis-server");
    const redis_cli = Bun.which("redis-cli");
    if (redis_server === null || redis_cli === null) {
      throw new Error("redis-server and redis-cli are needed on the PATH (apt-get install redis-server)");
    }
    const dir = serveTempDir("bench-redis");
    const socket = path.join(dir, "redis.sock");
    const redis = await ServeProcess.start({
      argv: [redis_server, "--port", "0", "--unixsocket", socket, "--save", "", "--appendonly", "no"].concat([
        "--requirepass",
        TOKEN,
        "--dir",
        dir,
      ]),
    });
    const base = ["--protocol", "resp", "--socket", socket, "--requests", "2000", "--seed", "3"];
    const report = await benchJson([
      ...base,
      "--pipeline",
      "16",
      "--connections",
      "4",
      "--token-file",
      token_file,
    ]);
    const expected = plan(2000, 4, 3, 0.5, 100_000);
    expect([report.requests, report.ops.get.count, report.ops.set.count]).toEqual([
      2000,
      expected.gets,
      expected.sets,
    ]);
    expect(report.error_count).toBe(0);

    const cli = (...args: string[]) =>
      Bun.spawnSync([redis_cli, "-s", socket, "--no-auth-warning", "-a", TOKEN, ...args]).stdout.toString();
    expect(Number(cli("DBSIZE"))).toBe(expected.written.size);
    const some_key = [...expected.written][0]!;
    expect(cli("GET", keyText(some_key))).toBe(`${new TextDecoder().decode(valuePayload(3, 100))}\n`);

    const no_auth = await benchJson([...base, "--connections", "2", "--read-ratio", "1"], 1);
    expect(Object.keys(no_auth.errors)).toEqual(["NOAUTH"]);
    expect(no_auth.error_count).toBe(2000);
    expect(await redis.stop()).toBe(0);
  });
});
