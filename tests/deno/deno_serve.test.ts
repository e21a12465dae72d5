/**
 * walkv under Deno: `deno task serve [flags]` (deno.json) runs `walkv serve [flags]` from source with
 * the same flags, two I/O workers plus the WAL writer and checkpointer workers. It serves ping/set/get,
 * stops on SIGTERM (which `deno task` forwards) with exit 0, and a restart recovers what was written.
 * Deno gets no network: npm packages come from node_modules ("nodeModulesDir": "manual").
 */
import { afterAll, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { killAll, ServeProcess, tempDir } from "../dist/serve_process.ts";
import { RawClient } from "../server/raw_client.ts";

const REPO = path.resolve(import.meta.dir, "../..");

afterAll(killAll);

function denoServe(dir: string, more: string[] = ["--workers", "2"]): Promise<ServeProcess> {
  const flags = ["--data", path.join(dir, "data"), "--socket", path.join(dir, "walkv.sock"), ...more];
  return ServeProcess.start({
    argv: [path.join(REPO, "node_modules/.bin/deno"), "task", "serve", ...flags],
    cwd: REPO,
    env: { ...(process.env as Record<string, string>), DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" },
  });
}

const LONG_KEY = "a key of forty bytes, give or take a few";
const LONG_VALUE = "v".repeat(300);

test("deno task serve: ping, set, get, SIGTERM → 0, restart recovers the value", async () => {
  const dir = tempDir("deno");
  const socket_path = path.join(dir, "walkv.sock");
  const first = await denoServe(dir);
  expect(first.stdout).toContain("(2 workers, fsync always");
  const c = await RawClient.connect(socket_path);
  expect(await c.call("ping")).toEqual([1, 0, "pong"]);
  expect(await c.call("set", "runtime", "deno")).toEqual([2, 0, true]);
  expect(await c.call("get", "runtime")).toEqual([3, 0, "deno"]);
  c.close();
  expect(await first.stop("SIGTERM"), first.describe()).toBe(0);
  expect(first.stderr).toContain("final checkpoint written");
  expect(fs.existsSync(socket_path)).toBe(false);

  const second = await denoServe(dir);
  expect(second.stderr).toMatch(/recovery: /);
  const c2 = await RawClient.connect(socket_path);
  expect(await c2.call("get", "runtime")).toEqual([1, 0, "deno"]);
  c2.close();
  expect(await second.stop("SIGTERM"), second.describe()).toBe(0);
}, 90_000);

test("deno task serve, one I/O worker and fsync everysec: the I/O worker writes the WAL; a restart recovers", async () => {
  const dir = tempDir("deno-local-wal");
  const socket_path = path.join(dir, "walkv.sock");
  const flags = ["--workers", "1", "--fsync", "everysec"];
  const first = await denoServe(dir, flags);
  expect(first.stderr).toContain("wal: written by the I/O worker itself");
  const c = await RawClient.connect(socket_path);
  expect(await c.call("set", "runtime", "deno")).toEqual([1, 0, true]);
  expect(await c.call("get", "runtime")).toEqual([2, 0, "deno"]);
  // Longer than a few bytes: copied by the runtime (Buffer.prototype.copy, engine/bytes.ts) in Deno too.
  expect(await c.call("set", LONG_KEY, LONG_VALUE)).toEqual([3, 0, true]);
  expect(await c.call("get", LONG_KEY)).toEqual([4, 0, LONG_VALUE]);
  // The once-a-second fdatasync runs on the syncer worker (wal_syncer.ts), under Deno too.
  const durable = async () => {
    const [, , stats] = (await c.call("stats")) as [
      number,
      number,
      { lsn: { durable: number; written: number } },
    ];
    return stats.lsn.durable >= stats.lsn.written && stats.lsn.written > 0;
  };
  const deadline_ms = Date.now() + 5000;
  while (!(await durable())) {
    expect(Date.now()).toBeLessThan(deadline_ms);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  c.close();
  expect(await first.stop("SIGTERM"), first.describe()).toBe(0);
  expect(first.stderr).toContain("final checkpoint written");

  const second = await denoServe(dir, flags);
  const c2 = await RawClient.connect(socket_path);
  expect(await c2.call("get", "runtime")).toEqual([1, 0, "deno"]);
  expect(await c2.call("get", LONG_KEY)).toEqual([2, 0, LONG_VALUE]);
  c2.close();
  expect(await second.stop("SIGTERM"), second.describe()).toBe(0);
}, 90_000);
