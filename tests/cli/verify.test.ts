import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { type InlineHost, openEngine } from "../../src/engine/host.ts";
import { parseSegmentName } from "../../src/engine/wal/format.ts";
import { smallConfig, utf8 } from "../engine/sim_host.ts";
import { Daemon, stopAllDaemons, tempDir } from "../server/daemon.ts";
import { type Run, runWalkv } from "./walkv_process.ts";

/** Runs `walkv verify ARGS` to completion (environment: PATH only, so no WALKV_DATA leaks in). */
function walkvVerify(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runWalkv(["verify", ...args], env);
}

/** A data directory written by the engine (real disk): 400 writes, a checkpoint after 200, closed. */
async function makeDataDir(data_dir: string): Promise<void> {
  const config = smallConfig({ data_dir });
  const host = (await openEngine(config, { inline: true, log: () => {} })) as InlineHost;
  for (let i = 0; i < 400; i++) {
    const write = host.engine.set(utf8(`k${i}`), utf8(`v${i}:${"x".repeat(500)}`));
    while (host.step()) {}
    await write;
    if (i === 199) await host.checkpoint();
  }
  await host.close();
}

function segments(data_dir: string): string[] {
  return fs
    .readdirSync(path.join(data_dir, "wal"))
    .filter((name) => parseSegmentName(name) !== undefined)
    .sort()
    .map((name) => path.join(data_dir, "wal", name));
}

/** A copy of the healthy directory to damage. */
function copyOf(source: string): string {
  const target = path.join(tempDir(), "data");
  fs.cpSync(source, target, { recursive: true });
  return target;
}

function flipByte(file: string, offset_bytes: number): void {
  const bytes = fs.readFileSync(file);
  bytes[offset_bytes]! ^= 0x20;
  fs.writeFileSync(file, bytes);
}

let healthy: string;

beforeAll(async () => {
  healthy = path.join(tempDir(), "data");
  await makeDataDir(healthy);
});

afterAll(stopAllDaemons);

describe("walkv verify", () => {
  test("a healthy directory: exit 0 and a summary", async () => {
    const run = await walkvVerify(["--data", healthy]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("data.db: 200 keys, redo LSN 200");
    expect(run.stdout).toContain("next LSN 401");
    expect(run.stdout).toMatch(/healthy \(0 warnings\)\n$/);
    for (const segment of segments(healthy))
      expect(run.stdout).toContain(`wal/${path.basename(segment)}: LSN`);
  });

  test("--json prints a machine-readable report; WALKV_DATA stands in for --data", async () => {
    const run = await walkvVerify(["--json"], { WALKV_DATA: healthy });
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout);
    expect(report.healthy).toBe(true);
    expect(report.error).toBeNull();
    expect(report.data_db.keys).toBe(200);
    expect(report.data_db.redo_lsn).toBe(200);
    expect(report.totals.next_lsn).toBe(401);
    expect(report.segments.map((s: { name: string }) => s.name)).toEqual(
      segments(healthy).map((p) => path.basename(p)),
    );
  });

  test("a flipped bit in data.db: exit 3, `corruption: FILE at byte N: reason` on stderr", async () => {
    const dir = copyOf(healthy);
    flipByte(path.join(dir, "data.db"), 1000);
    const run = await walkvVerify(["--data", dir]);
    expect(run.code).toBe(3);
    expect(run.stderr).toBe(`corruption: ${path.join(dir, "data.db")} at byte 64: block CRC mismatch\n`);
    expect(run.stdout).toContain("CORRUPT");
  });

  test("a damaged older WAL segment: exit 3 naming the segment; --json carries the error", async () => {
    const dir = copyOf(healthy);
    const [oldest] = segments(dir);
    fs.truncateSync(oldest!, 1000);
    const run = await walkvVerify(["--data", dir, "--json"]);
    expect(run.code).toBe(3);
    expect(run.stderr).toMatch(new RegExp(`^corruption: ${oldest} at byte \\d+: .+\\n$`));
    const report = JSON.parse(run.stdout);
    expect(report.healthy).toBe(false);
    expect(report.error.file).toBe(oldest);
    expect(run.stderr).toContain(`at byte ${report.error.offset_bytes}:`);
  });

  test("a torn tail in the newest segment: exit 0 with a warning", async () => {
    const dir = copyOf(healthy);
    const newest = segments(dir).at(-1)!;
    const torn = new Uint8Array(100);
    torn[5] = 1; // a record header whose CRC is wrong, then zeros (zeros alone are a clean end)
    fs.appendFileSync(newest, torn);
    const run = await walkvVerify(["--data", dir]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("warning: wal/");
    expect(run.stdout).toContain("torn tail of 100 bytes");
    expect(run.stdout).toContain("healthy (1 warning)");
  });

  test("a missing directory: exit 1; usage errors: exit 2", async () => {
    const missing = await walkvVerify(["--data", path.join(tempDir(), "nope")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("ENOENT");
    expect((await walkvVerify([])).code).toBe(2);
    expect((await walkvVerify(["--data", healthy, "--bogus"])).code).toBe(2);
    expect((await walkvVerify(["--data", healthy, "extra"])).code).toBe(2);
  });

  test("works read-only while a daemon writes, rotates segments and checkpoints", async () => {
    const dir = copyOf(healthy);
    const limits = ["--max-key-bytes", "256", "--max-value-bytes", "4096", "--max-batch-bytes", "8192"];
    const daemon = await Daemon.start({
      data_dir: dir,
      args: [...limits, "--fsync", "no", "--wal-segment-bytes", "65536", "--checkpoint-wal-mb", "1"],
    });
    let writing = true;
    let written = 0;
    const writer = (async () => {
      const client = await daemon.client();
      while (writing) {
        const [, code] = await client.call("set", `d${written % 1000}`, "v".repeat(1000));
        expect(code).toBe(0);
        written++;
        if (written % 50 === 0) expect((await client.call("checkpoint"))[1]).toBe(0);
      }
    })();
    try {
      for (let run = 0; run < 5; run++) {
        const result = await walkvVerify(["--data", dir]);
        expect(result.stderr, `${result.stdout}\n${daemon.describe()}`).toBe("");
        expect(result.code).toBe(0);
        expect(result.stdout).toContain("healthy");
      }
    } finally {
      writing = false;
      await writer;
      expect(await daemon.stop()).toBe(0);
    }
    expect(written).toBeGreaterThan(0);
    expect(daemon.stderr.match(/checkpoint: redo/g)?.length ?? 0).toBeGreaterThan(2);
    const after = await walkvVerify(["--data", dir]);
    expect([after.code, after.stderr]).toEqual([0, ""]);
  });
});
