/**
 * The admin app without a daemon: /health turns 503 once writes are stopped by a failed fdatasync
 * (reads still work), and /metrics reports it.
 */
import { expect, test } from "bun:test";
import { adminApp } from "../../src/admin/http.ts";
import { createMetricsBuffer, Metrics } from "../../src/server/metrics.ts";
import { openSim, settle, utf8 } from "../engine/sim_host.ts";

test("/health is 200 while writes are accepted and 503 after a failed fdatasync", async () => {
  const { host, engine, disk } = await openSim();
  const app = adminApp(engine, new Metrics(createMetricsBuffer(1), -1));
  await settle(host, engine.set(utf8("k"), utf8("v")));
  const healthy = await app.request("/health");
  expect(healthy.status).toBe(200);
  expect(await healthy.json()).toEqual({ status: "ok" });

  disk.injectFault((call) => (call.op === "sync" ? "EIO" : undefined));
  const failed = engine.set(utf8("k"), utf8("v2"));
  host.step();
  await expect(failed).rejects.toThrow(/not applied/);
  const stopped = await app.request("/health");
  expect(stopped.status).toBe(503);
  const body = (await stopped.json()) as { status: string; error: string };
  expect(body.status).toBe("writes stopped");
  expect(body.error).toContain("EIO");
  expect(new TextDecoder().decode(engine.get(utf8("k")))).toBe("v"); // reads go on
  expect(await (await app.request("/metrics")).text()).toContain("walkv_wal_writes_stopped 1");
});
