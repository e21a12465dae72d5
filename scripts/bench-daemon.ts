/**
 * Compares daemon arrangements (I/O worker counts) under one load: C connections from this process,
 * each keeping P requests in flight (half `get`, half `set` of 100-byte values over a 100k-key space),
 * for D ms per arrangement. Prints ops/s per arrangement as a markdown table. A script, not a test:
 * figures go to docs/BENCHMARKS.md.
 *
 * @example
 * node_modules/.bin/bun scripts/bench-daemon.ts --workers 1,2,4 --fsync everysec --duration-ms 3000
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import { connect } from "../src/client/index.ts";
import { prng } from "../src/engine/io/prng.ts";
import { DaemonProcess } from "./daemon_process.ts";

const { values } = parseArgs({
  options: {
    workers: { type: "string", default: "1,2,4" },
    fsync: { type: "string", default: "everysec" },
    connections: { type: "string", default: "16" },
    pipeline: { type: "string", default: "32" },
    "duration-ms": { type: "string", default: "3000" },
  },
});
const connections = Number(values.connections);
const pipeline = Number(values.pipeline);
const duration_ms = Number(values["duration-ms"]);
const KEYS = 100_000;
const value = "x".repeat(97); // a 100-byte msgpack str

async function startDaemon(workers: number): Promise<{ socket: string; stop: () => Promise<void> }> {
  const dir = fs.mkdtempSync(`${os.tmpdir()}/walkv-bench-daemon-`);
  const socket = `${dir}/walkv.sock`;
  const daemon = await DaemonProcess.start([
    "--data",
    `${dir}/data`,
    "--socket",
    socket,
    "--workers",
    String(workers),
    "--fsync",
    values.fsync!,
    "--checkpoint-interval",
    "0",
  ]);
  return {
    socket,
    stop: async () => {
      await daemon.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function load(socket: string): Promise<number> {
  const clients = await Promise.all(Array.from({ length: connections }, () => connect({ path: socket })));
  let ops = 0;
  const deadline = performance.now() + duration_ms;
  const random = prng(1);
  const next = () => Math.floor(random() * 2 ** 32);
  const lane = async (c: (typeof clients)[number]) => {
    while (performance.now() < deadline) {
      const r = next();
      const key = `key:${r % KEYS}`;
      if (r & 1) await c.get(key);
      else await c.set(key, value);
      ops++;
    }
  };
  await Promise.all(clients.flatMap((c) => Array.from({ length: pipeline }, () => lane(c))));
  await Promise.all(clients.map((c) => c.close()));
  return ops / (duration_ms / 1000);
}

const rows: string[] = [];
for (const workers of values.workers!.split(",").map(Number)) {
  const daemon = await startDaemon(workers);
  const ops_per_s = await load(daemon.socket);
  await daemon.stop();
  rows.push(`| ${workers} | ${Math.round(ops_per_s).toLocaleString("en-US")} |`);
  console.error(`workers ${workers}: ${Math.round(ops_per_s)} ops/s`);
}
console.log(
  `\n${connections} connections × ${pipeline} in flight, 50% get / 50% set, fsync ${values.fsync}, ${duration_ms} ms each, nproc ${os.availableParallelism()}\n`,
);
console.log("| I/O workers | ops/s |\n| --- | --- |");
console.log(rows.join("\n"));
