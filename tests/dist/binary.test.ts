/**
 * The single executable: scripts/build-binary.sh (what `make build` runs) builds it once; a copy of it,
 * alone in a fresh directory, runs with an environment that has no Bun and no node_modules
 * (`PATH=/usr/bin:/bin`, `HOME` = that directory). It must serve from the embedded worker entry
 * points (I/O, WAL writer, checkpointer, shutdown watchdog), stop on SIGTERM with exit 0, and recover
 * what it wrote.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { RawClient } from "../server/raw_client.ts";
import { killAll, ServeProcess, tempDir } from "./serve_process.ts";

const REPO = path.resolve(import.meta.dir, "../..");
const PACKAGE_VERSION = (
  JSON.parse(fs.readFileSync(path.join(REPO, "package.json"), "utf8")) as { version: string }
).version;
/** The build takes about 0.5 s; the margin is for a cold disk cache. */
const BUILD_TIMEOUT_MS = 30_000;
/** A key sent as msgpack bin (keys may be str or bin). */
const BIN_KEY = new TextEncoder().encode("bin-key");

let dir = "";
let binary = "";
let clean_env: Record<string, string> = {};

beforeAll(() => {
  const out_dir = tempDir("build");
  const built = path.join(out_dir, "walkv");
  const started_ms = performance.now();
  const build = Bun.spawnSync([path.join(REPO, "scripts/build-binary.sh"), built], {
    cwd: REPO,
    stdout: "pipe",
    stderr: "pipe",
    timeout: BUILD_TIMEOUT_MS,
  });
  if (build.exitCode !== 0) {
    throw new Error(
      `build failed (${build.exitCode}):\n${build.stdout.toString()}\n${build.stderr.toString()}`,
    );
  }
  console.error(`build: ${Math.round(performance.now() - started_ms)} ms`);
  // Copy the binary alone, so nothing next to it (node_modules, sources) can be found by accident.
  dir = tempDir("bin");
  binary = path.join(dir, "walkv");
  fs.copyFileSync(built, binary);
  fs.chmodSync(binary, 0o755);
  clean_env = { HOME: dir, PATH: "/usr/bin:/bin" };
}, BUILD_TIMEOUT_MS + 5_000);

afterAll(killAll);

function serve(...args: string[]): Promise<ServeProcess> {
  const argv = [binary, "serve", "--data", path.join(dir, "data"), "--socket", path.join(dir, "walkv.sock")];
  return ServeProcess.start({ argv: [...argv, "--workers", "2", ...args], cwd: dir, env: clean_env });
}

/** `new URL("./x.ts", import.meta.url)` in every src/ file that creates a Worker: the worker URLs. */
function workerUrlsInSrc(): string[] {
  const urls: string[] = [];
  for (const file of fs.readdirSync(path.join(REPO, "src"), { recursive: true, encoding: "utf8" })) {
    if (!file.endsWith(".ts")) continue;
    const text = fs.readFileSync(path.join(REPO, "src", file), "utf8");
    if (!text.includes("new Worker(")) continue;
    for (const m of text.matchAll(/new URL\("\.\/([^"]+\.ts)", import\.meta\.url\)/g)) urls.push(m[1]!);
  }
  return urls.sort();
}

describe("dist/walkv", () => {
  test("scripts/compile has one entry point per worker URL in src/ (plus walkv.ts)", () => {
    const compile_dir = path.join(REPO, "scripts/compile");
    const entries = fs
      .readdirSync(compile_dir, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts") && f !== "walkv.ts")
      .sort();
    const urls = workerUrlsInSrc();
    expect(urls.length).toBeGreaterThanOrEqual(3);
    expect(entries).toEqual(urls);
  });

  test("--version prints the package version, with no Bun on PATH", () => {
    expect(Bun.which("bun", { PATH: clean_env.PATH })).toBeNull();
    const run = Bun.spawnSync([binary, "--version"], { cwd: dir, env: clean_env });
    expect(run.exitCode).toBe(0);
    expect(run.stdout.toString().trim()).toBe(`walkv ${PACKAGE_VERSION}`);
  });

  test("serves set/get over the socket, exits 0 on SIGTERM, recovers on restart", async () => {
    const socket_path = path.join(dir, "walkv.sock");
    const value = new Uint8Array([0, 1, 2, 255]);
    const first = await serve();
    expect(first.stdout).toContain("2 workers");
    const c = await RawClient.connect(socket_path);
    expect(await c.call("ping")).toEqual([1, 0, "pong"]);
    expect(await c.call("set", "greeting", "hello")).toEqual([2, 0, true]);
    expect(await c.call("set", BIN_KEY, value)).toEqual([3, 0, true]);
    expect(await c.call("get", "greeting")).toEqual([4, 0, "hello"]);
    c.close();
    expect(await first.stop("SIGTERM"), first.describe()).toBe(0);
    expect(first.stderr).toContain("final checkpoint written");
    expect(fs.existsSync(socket_path)).toBe(false);

    const second = await serve();
    const c2 = await RawClient.connect(socket_path);
    expect(await c2.call("get", "greeting")).toEqual([1, 0, "hello"]);
    const [, code, got] = await c2.call("get", BIN_KEY);
    expect(code).toBe(0);
    expect(new Uint8Array(got as Uint8Array)).toEqual(value);
    c2.close();
    expect(await second.stop("SIGTERM"), second.describe()).toBe(0);
  }, 60_000);

  test("a drain that times out arms the embedded shutdown watchdog, and the close still exits 0", async () => {
    const d = await serve("--shutdown-timeout", "0");
    const c = await RawClient.connect(path.join(dir, "walkv.sock"));
    const probe = await RawClient.connect(path.join(dir, "walkv.sock"));
    await c.stallReplies(probe); // the drain cannot finish within 0 ms
    probe.close();
    expect(await d.stop("SIGTERM"), d.describe()).toBe(0);
    expect(d.stderr).toMatch(/still running after 0 ms; closing anyway/);
    expect(d.stderr).not.toMatch(/watchdog did not start/);
    expect(d.stderr).toContain("shutdown complete: WAL durable, no final checkpoint");
    c.close();
  }, 60_000);
});
