/**
 * Soak test (`make soak`, not in CI): one daemon under a steady mixed load with periodic checkpoints
 * for `--minutes` (default 10). Every `--sample-s` seconds it records the daemon's RSS, the arena's
 * reserved and live bytes (`stats`), open file descriptors, WAL and data.db size, ops/s and
 * client-side latency p50/p99, prints a table, and at
 * the end checks that resource use is flat: after the first third (warm-up), RSS grows less than
 * 20 % (the median of the last third against that of the middle third: a leak lifts every sample, a
 * collection that comes late lifts one), open fds stay within ±16, the WAL stays under 2 × (checkpoint threshold + segment), and p99 latency
 * does not more than double. Exits 1 with the reason if anything trends.
 *
 * @example
 * node_modules/.bin/bun scripts/soak.ts --minutes 10
 * node_modules/.bin/bun scripts/soak.ts --minutes 1 --sample-s 5   # a quick look
 * node_modules/.bin/bun scripts/soak.ts --minutes 4 --checkpoint-interval-s 0 --checkpoint-wal-mb 100000  # no checkpoints
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import { connect } from "../src/client/index.ts";
import { prng } from "../src/engine/io/prng.ts";
import { DaemonProcess, describeExit } from "./daemon_process.ts";
import { procStatusBytes } from "./proc_status.ts";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    "sample-s": { type: "string", default: "10" },
    fsync: { type: "string", default: "everysec" },
    clients: { type: "string", default: "8" },
    keys: { type: "string", default: "50000" },
    "checkpoint-interval-s": { type: "string", default: "30" },
    "checkpoint-wal-mb": { type: "string", default: "16" },
  },
});
const duration_ms = Number(values.minutes) * 60_000;
const sample_ms = Number(values["sample-s"]) * 1000;
const KEYS = Number(values.keys);
const CHECKPOINT_WAL_MB = Number(values["checkpoint-wal-mb"]);
const SEGMENT_MIB = 16;

interface Sample {
  t_s: number;
  rss_mib: number;
  arena_reserved_mib: number;
  arena_live_mib: number;
  fds: number;
  wal_mib: number;
  data_db_mib: number;
  ops_per_s: number;
  p50_ms: number;
  p99_ms: number;
}

const dir = fs.mkdtempSync(`${os.tmpdir()}/walkv-soak-`);
const socket = `${dir}/walkv.sock`;
const daemon = await DaemonProcess.start([
  "--data",
  `${dir}/data`,
  "--socket",
  socket,
  "--fsync",
  values.fsync!,
  "--checkpoint-interval",
  values["checkpoint-interval-s"]!,
  "--checkpoint-wal-mb",
  String(CHECKPOINT_WAL_MB),
  "--wal-segment-bytes",
  String(SEGMENT_MIB * 2 ** 20),
  "--max-batch-bytes",
  String(8 * 2 ** 20),
  "--max-value-bytes",
  String(2 ** 20),
]);
const pid = daemon.pid;

let ops = 0;
let latencies: number[] = [];
let stopping = false;
const random = prng(12345);

const clients = await Promise.all(
  Array.from({ length: Number(values.clients) }, () => connect({ path: socket })),
);
const lanes = clients.flatMap((client) =>
  Array.from({ length: 8 }, async () => {
    while (!stopping) {
      const key = `soak:${Math.floor(random() * KEYS)}`;
      const started = performance.now();
      const r = random();
      if (r < 0.5) await client.get(key);
      else if (r < 0.85) await client.set(key, "v".repeat(100 + Math.floor(random() * 900)));
      else if (r < 0.95) await client.del(key);
      else
        await client.mset([
          [key, 1],
          [`${key}:b`, 2],
        ]);
      latencies.push(performance.now() - started);
      ops++;
    }
  }),
);

const samples: Sample[] = [];
const started = performance.now();
while (performance.now() - started < duration_ms) {
  await Bun.sleep(sample_ms); // the sampling period itself, not a synchronisation
  samples.push(await sample((performance.now() - started) / 1000));
  const s = samples[samples.length - 1]!;
  console.error(
    `t=${s.t_s.toFixed(0)}s rss=${s.rss_mib.toFixed(0)}MiB arena=${s.arena_reserved_mib.toFixed(0)}/${s.arena_live_mib.toFixed(0)}MiB fds=${s.fds} wal=${s.wal_mib.toFixed(1)}MiB ` +
      `data.db=${s.data_db_mib.toFixed(1)}MiB ${s.ops_per_s.toFixed(0)} ops/s p50=${s.p50_ms.toFixed(2)} p99=${s.p99_ms.toFixed(2)}ms`,
  );
}
stopping = true;
await Promise.all(lanes);
await Promise.all(clients.map((c) => c.close()));
const exit = await daemon.stop();

console.log(
  "\n| t (s) | RSS (MiB) | arena reserved / live (MiB) | open fds | WAL (MiB) | data.db (MiB) | ops/s | p50 (ms) | p99 (ms) |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
for (const s of samples) {
  console.log(
    `| ${s.t_s.toFixed(0)} | ${s.rss_mib.toFixed(0)} | ${s.arena_reserved_mib.toFixed(0)} / ${s.arena_live_mib.toFixed(0)} | ${s.fds} | ${s.wal_mib.toFixed(1)} | ${s.data_db_mib.toFixed(1)} | ` +
      `${s.ops_per_s.toFixed(0)} | ${s.p50_ms.toFixed(2)} | ${s.p99_ms.toFixed(2)} |`,
  );
}
const problems = flatness(samples);
if (exit.code !== 0) problems.push(`the daemon exited ${describeExit(exit)} at SIGTERM`);
fs.rmSync(dir, { recursive: true, force: true });
console.log(problems.length === 0 ? "\nflat: no resource trends" : `\nNOT FLAT:\n- ${problems.join("\n- ")}`);
process.exit(problems.length === 0 ? 0 : 1);

async function sample(t_s: number): Promise<Sample> {
  const memory = ((await clients[0]!.stats()) as { memory: Record<string, number> }).memory;
  const rss_kib = procStatusBytes(pid) / 1024;
  const wal_bytes = fs
    .readdirSync(`${dir}/data/wal`)
    .reduce((sum, f) => sum + fs.statSync(`${dir}/data/wal/${f}`).size, 0);
  const data_db = fs.existsSync(`${dir}/data/data.db`) ? fs.statSync(`${dir}/data/data.db`).size : 0;
  const sorted = latencies.sort((a, b) => a - b);
  const result = {
    t_s,
    rss_mib: rss_kib / 1024,
    arena_reserved_mib: memory.arena_reserved_bytes! / 2 ** 20,
    arena_live_mib: memory.arena_live_bytes! / 2 ** 20,
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    wal_mib: wal_bytes / 2 ** 20,
    data_db_mib: data_db / 2 ** 20,
    ops_per_s: ops / (sample_ms / 1000),
    p50_ms: sorted[Math.floor(sorted.length * 0.5)] ?? 0,
    p99_ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
  };
  ops = 0;
  latencies = [];
  return result;
}

/** Compares the last third of the samples with the middle third (the first third is warm-up). */
function flatness(all: Sample[]): string[] {
  const third = Math.floor(all.length / 3);
  if (third < 1) return ["too few samples to judge: run longer or sample more often"];
  const middle = all.slice(third, 2 * third);
  const last = all.slice(2 * third);
  const max = (xs: Sample[], f: (s: Sample) => number) => Math.max(...xs.map(f));
  const median = (xs: Sample[], f: (s: Sample) => number) => {
    const sorted = xs.map(f).sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  };
  const problems: string[] = [];
  if (median(last, (s) => s.rss_mib) > 1.2 * median(middle, (s) => s.rss_mib)) problems.push("RSS grows");
  if (max(last, (s) => s.arena_reserved_mib) > max(middle, (s) => s.arena_reserved_mib))
    problems.push("the arena grows");
  if (Math.abs(max(last, (s) => s.fds) - max(middle, (s) => s.fds)) > 16) problems.push("open fds change");
  if (max(all, (s) => s.wal_mib) > 2 * (CHECKPOINT_WAL_MB + SEGMENT_MIB))
    problems.push("the WAL is not bounded by checkpoints");
  if (max(last, (s) => s.p99_ms) > 2 * max(middle, (s) => s.p99_ms) + 1) problems.push("p99 latency grows");
  return problems;
}
