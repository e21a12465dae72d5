/**
 * End-to-end tests of the admin HTTP endpoint (`--http`): /health, /metrics (Prometheus text with
 * per-op counters and latency histograms), /stats; a public address is refused without
 * `--http-allow-public`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { Daemon, stopAllDaemons } from "./daemon.ts";

let daemon: Daemon;
let base_url: string;

beforeAll(async () => {
  daemon = await Daemon.start({ args: ["--fsync", "no", "--http", "127.0.0.1:0"] });
  // Port 0: the daemon logs the address it got.
  base_url = (await daemon.waitForLog(/admin HTTP on (http:\/\/127\.0\.0\.1:\d+)/))[1]!;
  const c = await daemon.client();
  for (let i = 0; i < 5; i++) expect((await c.call("set", `h${i}`, i))[1]).toBe(0);
  expect(await c.call("get", "h1")).toEqual([6, 0, 1]);
  expect((await c.call("get", 7))[1]).toBe(1); // one error
  c.close();
});

afterAll(async () => {
  if (daemon !== undefined) expect(await daemon.stop()).toBe(0);
  await stopAllDaemons();
});

describe("admin HTTP", () => {
  test("/health is 200 {status: ok}", async () => {
    const response = await fetch(`${base_url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: "ok" });
  });

  test("/metrics has per-op counters and latency histograms", async () => {
    const response = await fetch(`${base_url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    const lines = text.split("\n");
    expect(lines).toContain("# TYPE walkv_ops_total counter");
    expect(lines).toContain('walkv_ops_total{op="set"} 5');
    expect(lines).toContain('walkv_ops_total{op="get"} 2');
    expect(lines).toContain('walkv_op_errors_total{op="get"} 1');
    expect(lines).toContain("# TYPE walkv_op_duration_seconds histogram");
    expect(lines).toContain('walkv_op_duration_seconds_bucket{op="set",le="+Inf"} 5');
    expect(lines).toContain('walkv_op_duration_seconds_count{op="set"} 5');
    expect(text).toMatch(/^walkv_op_duration_seconds_sum\{op="set"\} \d/m);
    // Buckets are cumulative: non-decreasing up to the count.
    const buckets = lines
      .filter((l) => l.startsWith('walkv_op_duration_seconds_bucket{op="set"'))
      .map((l) => Number(l.split(" ")[1]));
    expect(buckets.length).toBeGreaterThan(2);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!).toBeGreaterThanOrEqual(buckets[i - 1]!);
    expect(lines).toContain("walkv_keys 5");
    expect(text).toMatch(/^walkv_wal_bytes_total [1-9]\d*$/m);
    expect(lines).toContain("walkv_connections_accepted_total 1");
  });

  test("/stats is the stats op as JSON", async () => {
    const response = await fetch(`${base_url}/stats`);
    expect(response.status).toBe(200);
    const stats = (await response.json()) as {
      keys: number;
      lsn: { visible: number };
      wal: { bytes_written: number };
      server: { ops: Record<string, { count: number; errors: number }> };
    };
    expect(stats.keys).toBe(5);
    expect(stats.lsn.visible).toBe(5);
    expect(stats.wal.bytes_written).toBeGreaterThan(0);
    expect(stats.server.ops.set).toMatchObject({ count: 5, errors: 0 });
    expect(stats.server.ops.get).toMatchObject({ count: 2, errors: 1 });
  });

  test("an unknown path is 404", async () => {
    expect((await fetch(`${base_url}/nope`)).status).toBe(404);
  });

  test("--http 0.0.0.0:PORT without --http-allow-public is refused at start", async () => {
    const refused = Daemon.spawn({ args: ["--http", "0.0.0.0:0"] });
    const code = await refused.exited;
    expect(code).not.toBe(0);
    expect(refused.stderr).toMatch(/--http 0\.0\.0\.0: not a loopback address; add --http-allow-public/);
    expect(refused.stdout).not.toMatch(/ready/);
    // Nothing is left behind that looks like a live daemon.
    expect(fs.existsSync(refused.socket_path)).toBe(false);
    expect(fs.existsSync(path.join(refused.data_dir, "walkv.pid"))).toBe(false);
  });

  // BUG (src/server/daemon.ts runDaemon): the admin HTTP server starts only after the engine and the
  // I/O workers, and a failure there is not cleaned up: the process dies with a stack trace, the
  // socket (accepting for a moment) and DATA/walkv.pid are left behind. Drop `.failing` once fixed.
  test("--http on a port in use: refused with a clear message, nothing left behind", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const refused = Daemon.spawn({ args: ["--http", `127.0.0.1:${port}`] });
      expect(await refused.exited).toBe(1);
      expect(refused.stderr).toMatch(new RegExp(`${port}.*in use`));
      expect(refused.stdout).not.toMatch(/ready/);
      expect(fs.existsSync(refused.socket_path)).toBe(false);
      expect(fs.existsSync(path.join(refused.data_dir, "walkv.pid"))).toBe(false);
    } finally {
      taken.close();
    }
  });
});
