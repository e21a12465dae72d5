/**
 * Load and limits (issue [3/4] item 6): 10,000 idle connections plus a busy few, on one daemon.
 * The busy clients must be served correctly while the idle ones are held open, the daemon must count
 * every connection, its memory must stay bounded (reported per idle connection), and closing the idle
 * connections must bring the count back down. WALKV_IDLE_CONNECTIONS changes the number.
 */
import { afterAll, expect, test } from "bun:test";
import * as net from "node:net";
import { procStatusBytes } from "../../scripts/proc_status.ts";
import { connect } from "../../src/client/index.ts";
import { Daemon, stopAllDaemons, waitUntil } from "../server/daemon.ts";

const IDLE = Number(process.env.WALKV_IDLE_CONNECTIONS ?? 10_000);
const BUSY_CLIENTS = 4;
const BUSY_OPS_PER_CLIENT = 2_000;
/** Memory the daemon may add for the idle connections (kernel socket buffers are not in its RSS). */
const RSS_BOUND_BYTES = 256 * 1024 * 1024;

afterAll(stopAllDaemons);

const rssBytes = (pid: number): number => procStatusBytes(pid);

/**
 * Opens `count` raw connections that never send anything, `batch` at a time. A connect refused
 * because the listen backlog is momentarily full (Bun's is 512) is retried in the next round.
 */
async function openIdle(
  path: string,
  count: number,
  batch = 256,
): Promise<{ sockets: net.Socket[]; retried: number }> {
  const sockets: net.Socket[] = [];
  let retried = 0;
  while (sockets.length < count) {
    const want = Math.min(batch, count - sockets.length);
    const attempts = Array.from(
      { length: want },
      () =>
        new Promise<net.Socket | undefined>((resolve) => {
          const socket = net.createConnection(path, () => resolve(socket));
          socket.on("error", () => resolve(undefined));
        }),
    );
    for (const socket of await Promise.all(attempts)) {
      if (socket === undefined) retried++;
      else sockets.push(socket);
    }
    expect(retried).toBeLessThan(count); // the daemon keeps accepting
  }
  return { sockets, retried };
}

test(`${IDLE.toLocaleString("en-US")} idle connections plus ${BUSY_CLIENTS} busy clients`, async () => {
  const daemon = await Daemon.start({
    workers: 1,
    args: ["--max-connections", String(IDLE + 100), "--fsync", "everysec"],
  });
  const rss_before = rssBytes(daemon.proc.pid);
  const { sockets: idle, retried } = await openIdle(daemon.socket_path, IDLE);
  const control = await connect({ path: daemon.socket_path });
  await waitUntil(
    async () => (await control.stats()).connections === IDLE + 1,
    "the daemon counts every idle connection",
    20_000,
  );
  const busy = await Promise.all(
    Array.from({ length: BUSY_CLIENTS }, () => connect({ path: daemon.socket_path })),
  );
  const started = performance.now();
  await Promise.all(
    busy.map(async (client, c) => {
      const pending: Promise<unknown>[] = [];
      for (let i = 0; i < BUSY_OPS_PER_CLIENT; i++) pending.push(client.set(`busy:${c}:${i}`, i));
      await Promise.all(pending);
      const values = await client.mget(
        Array.from({ length: BUSY_OPS_PER_CLIENT }, (_, i) => `busy:${c}:${i}`),
      );
      expect(values).toEqual(Array.from({ length: BUSY_OPS_PER_CLIENT }, (_, i) => i));
    }),
  );
  const busy_ms = performance.now() - started;
  const rss_with_idle = rssBytes(daemon.proc.pid);
  const stats = await control.stats();
  expect(stats.connections).toBe(IDLE + 1 + BUSY_CLIENTS);
  expect(rss_with_idle - rss_before).toBeLessThan(RSS_BOUND_BYTES);
  console.log(
    `load: ${IDLE} idle connections: daemon RSS ${(rss_before / 2 ** 20).toFixed(0)} → ${(rss_with_idle / 2 ** 20).toFixed(0)} MiB ` +
      `(${((rss_with_idle - rss_before) / IDLE).toFixed(0)} B per idle connection); ` +
      `${BUSY_CLIENTS * BUSY_OPS_PER_CLIENT} busy sets + mgets in ${busy_ms.toFixed(0)} ms; ${retried} connects retried (backlog full)`,
  );
  for (const socket of idle) socket.destroy();
  await waitUntil(
    async () => (await control.stats()).connections === 1 + BUSY_CLIENTS,
    "closed idle connections are no longer counted",
    20_000,
  );
  await Promise.all([...busy, control].map((c) => c.close()));
  expect(await daemon.stop()).toBe(0);
}, 120_000);
