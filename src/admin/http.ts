/**
 * Admin HTTP (hono), off unless `--http HOST:PORT|PATH` is given. Loopback or a Unix socket only,
 * unless `--http-allow-public` says otherwise.
 *
 * - `GET /health`  200 `{"status":"ok"}` while writes are accepted; 503 once writes are stopped
 *   (after a failed fsync) — reads still work, but the node needs attention.
 * - `GET /metrics` Prometheus text: ops and latency histograms by op, WAL bytes, fsyncs, group-commit
 *   size, checkpoint age and duration, keys, memory, connections.
 * - `GET /stats`   the same as the `stats` op, as JSON.
 *
 * @example
 * const admin = await startAdminHttp(config, engine, metrics, console.error);
 * await admin.close();
 */
import { Hono } from "hono";
import type { Engine, EngineStats } from "../engine/engine.ts";
import { WAL_STOPPED } from "../engine/wal/wal_buffer.ts";
import type { HttpListen, ServerConfig } from "../server/config.ts";
import { LATENCY_BUCKETS_US, type Metrics, type MetricsSummary } from "../server/metrics.ts";

export interface AdminServer {
  readonly address: string;
  close(): Promise<void>;
}

/** Builds the hono app (exported for tests: `app.request("/health")`). */
export function adminApp(engine: Engine, metrics: Metrics): Hono {
  const app = new Hono();
  app.get("/health", (c) => {
    if (engine.wal.state() === WAL_STOPPED) {
      return c.json({ status: "writes stopped", error: engine.wal.lastError() }, 503);
    }
    return c.json({ status: "ok" });
  });
  app.get("/stats", (c) => c.json({ ...engine.stats(), server: metrics.summary() }));
  app.get("/metrics", (c) =>
    c.text(prometheusText(engine.stats(), metrics.summary()), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    }),
  );
  return app;
}

/** Starts serving on `config.http` (validated by serverConfig: loopback unless allowed). */
export async function startAdminHttp(
  config: ServerConfig,
  engine: Engine,
  metrics: Metrics,
  log: (line: string) => void,
): Promise<AdminServer> {
  const listen = config.http!;
  const app = adminApp(engine, metrics);
  const server = serve(listen, app.fetch);
  const address = "path" in listen ? listen.path : `http://${listen.host}:${server.port ?? listen.port}`;
  log(`admin HTTP on ${address}`);
  return { address, close: server.close };
}

type Fetch = (request: Request) => Response | Promise<Response>;

declare const Deno: {
  serve(
    options: Record<string, unknown>,
    handler: Fetch,
  ): { shutdown(): Promise<void>; addr: { port?: number } };
};

/** Bun.serve under Bun, Deno.serve under Deno. */
function serve(listen: HttpListen, fetch: Fetch): { port: number | undefined; close: () => Promise<void> } {
  const bun = (
    globalThis as unknown as {
      Bun?: { serve(o: Record<string, unknown>): { port?: number; stop(force?: boolean): unknown } };
    }
  ).Bun;
  if (bun !== undefined) {
    const options =
      "path" in listen ? { unix: listen.path, fetch } : { hostname: listen.host, port: listen.port, fetch };
    const server = bun.serve(options);
    return { port: server.port, close: async () => void (await server.stop(true)) };
  }
  const options =
    "path" in listen
      ? { path: listen.path, transport: "unix", onListen: () => {} }
      : { hostname: listen.host, port: listen.port, onListen: () => {} };
  const server = Deno.serve(options, fetch);
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** Prometheus text exposition format 0.0.4. */
export function prometheusText(stats: EngineStats, server: MetricsSummary): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: Array<[string, number]>) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  const ops = Object.entries(server.ops).filter(([, s]) => s.count > 0);
  metric(
    "walkv_ops_total",
    "counter",
    "Requests by op.",
    ops.map(([op, s]) => [`{op="${op}"}`, s.count]),
  );
  metric(
    "walkv_op_errors_total",
    "counter",
    "Requests answered with an error, by op.",
    ops.map(([op, s]) => [`{op="${op}"}`, s.errors]),
  );
  lines.push(
    "# HELP walkv_op_duration_seconds Request latency by op, from the arrival of its bytes at the worker to its answer.",
    "# TYPE walkv_op_duration_seconds histogram",
  );
  for (const [op, s] of ops) {
    for (const [i, le] of LATENCY_BUCKETS_US.entries()) {
      lines.push(`walkv_op_duration_seconds_bucket{op="${op}",le="${le / 1e6}"} ${s.buckets[i]}`);
    }
    lines.push(`walkv_op_duration_seconds_bucket{op="${op}",le="+Inf"} ${s.count}`);
    lines.push(`walkv_op_duration_seconds_sum{op="${op}"} ${s.sum_us / 1e6}`);
    lines.push(`walkv_op_duration_seconds_count{op="${op}"} ${s.count}`);
  }
  metric("walkv_wal_bytes_total", "counter", "Bytes written to the WAL since start.", [
    ["", stats.wal.bytes_written],
  ]);
  metric("walkv_wal_fsyncs_total", "counter", "fdatasync calls on the WAL since start.", [
    ["", stats.wal.fsyncs],
  ]);
  metric("walkv_wal_group_commit_records", "gauge", "Records in the last WAL batch (group commit size).", [
    ["", stats.wal.last_group_records],
  ]);
  metric("walkv_wal_writes_stopped", "gauge", "1 once writes are stopped after a failed fsync.", [
    ["", stats.wal.state === "stopped" ? 1 : 0],
  ]);
  metric("walkv_lsn", "gauge", "Log sequence numbers.", [
    ['{kind="visible"}', stats.lsn.visible],
    ['{kind="durable"}', stats.lsn.durable],
    ['{kind="written"}', stats.lsn.written],
  ]);
  const finished = stats.checkpoint.finished_unix_ms;
  metric(
    "walkv_checkpoint_age_seconds",
    "gauge",
    "Seconds since the last checkpoint finished (-1: none yet).",
    [["", finished === 0 ? -1 : (Date.now() - finished) / 1000]],
  );
  metric("walkv_checkpoint_duration_seconds", "gauge", "Duration of the last checkpoint.", [
    ["", stats.checkpoint.duration_ms / 1000],
  ]);
  metric("walkv_checkpoint_bytes", "gauge", "Size of the last data.db.", [["", stats.checkpoint.bytes]]);
  metric("walkv_checkpoints_total", "counter", "Checkpoints completed.", [["", stats.checkpoint.count]]);
  metric("walkv_checkpoint_failures_total", "counter", "Checkpoints failed.", [
    ["", stats.checkpoint.failures],
  ]);
  metric("walkv_keys", "gauge", "Keys in the table.", [["", stats.keys]]);
  metric("walkv_memory_bytes", "gauge", "Memory by kind.", [
    ['{kind="arena_reserved"}', stats.memory.arena_reserved_bytes],
    ['{kind="arena_live"}', stats.memory.arena_live_bytes],
    ['{kind="index"}', stats.memory.index_bytes],
    ['{kind="wal_buffer"}', stats.memory.wal_buffer_bytes],
  ]);
  metric("walkv_connections", "gauge", "Open client connections.", [["", server.connections]]);
  metric("walkv_connections_accepted_total", "counter", "Connections accepted.", [
    ["", server.connections_accepted],
  ]);
  metric("walkv_connections_rejected_total", "counter", "Connections refused at max_connections.", [
    ["", server.connections_rejected],
  ]);
  metric("walkv_connections_cut_off_total", "counter", "Connections cut off for unread replies.", [
    ["", server.connections_cut_off],
  ]);
  return `${lines.join("\n")}\n`;
}
