/**
 * The result of `walkv bench`, as an object (printed with --json) and as a text table: per op (get,
 * set) and overall, the count, ops/s and latency p50/p99/p99.9/max, then the errors by name.
 *
 * @example
 * const report = benchReport(settings, result);
 * console.log(json ? JSON.stringify(report) : formatReport(report));
 */
import { assert } from "../../engine/errors.ts";
import { HdrHistogram } from "./hdr_histogram.ts";
import type { RunResult } from "./runner.ts";
import { OP_NAMES } from "./workload.ts";

/**
 * The flags a run was made with, echoed in the report.
 *
 * @example
 * const settings: BenchSettings = { protocol: "msgpack", socket: "./var/walkv.sock", connections: 50,
 *   pipeline: 1, keys: 100_000, value_bytes: 100, read_ratio: 0.5, seed: 1 };
 */
export interface BenchSettings {
  readonly protocol: string;
  readonly socket: string;
  readonly connections: number;
  readonly pipeline: number;
  readonly keys: number;
  readonly value_bytes: number;
  readonly read_ratio: number;
  readonly seed: number;
}

/**
 * Count, rate and latency of one op (or of all).
 *
 * @example
 * const { count, ops_per_s, latency_us } = report.ops.get;
 */
export interface OpReport {
  readonly count: number;
  readonly ops_per_s: number;
  readonly latency_us: {
    readonly p50: number;
    readonly p99: number;
    readonly p99_9: number;
    readonly max: number;
  };
}

/**
 * The whole report; its JSON is what `walkv bench --json` prints.
 *
 * @example
 * if (report.error_count > 0) process.exitCode = 1;
 */
export interface BenchReport {
  readonly settings: BenchSettings;
  readonly elapsed_s: number;
  readonly requests: number;
  readonly ops_per_s: number;
  readonly ops: Readonly<Record<(typeof OP_NAMES)[number] | "all", OpReport>>;
  readonly error_count: number;
  /** By error name (msgpack: `unavailable (code 3)`; RESP: the reply's first word, e.g. `ERR`). */
  readonly errors: Readonly<Record<string, { readonly count: number; readonly message: string }>>;
}

/**
 * Summarises a run.
 *
 * @example
 * const report = benchReport(settings, await runBench(options));
 */
export function benchReport(settings: BenchSettings, result: RunResult): BenchReport {
  assert(result.elapsed_ms >= 0 && result.histograms.length === OP_NAMES.length);
  const seconds = Math.max(result.elapsed_ms, 1e-3) / 1000;
  const all = new HdrHistogram();
  for (const histogram of result.histograms) all.merge(histogram);
  assert(all.count === result.completed, "every response is in one histogram");
  const ops = Object.fromEntries(
    OP_NAMES.map((name, op) => [name, opReport(result.histograms[op]!, seconds)]),
  ) as Record<(typeof OP_NAMES)[number], OpReport>;
  let error_count = 0;
  for (const { count } of result.errors.values()) error_count += count;
  return {
    settings,
    elapsed_s: round(seconds, 3),
    requests: result.completed,
    ops_per_s: Math.round(result.completed / seconds),
    ops: { ...ops, all: opReport(all, seconds) },
    error_count,
    errors: Object.fromEntries(result.errors),
  };
}

function opReport(histogram: HdrHistogram, seconds: number): OpReport {
  return {
    count: histogram.count,
    ops_per_s: Math.round(histogram.count / seconds),
    latency_us: {
      p50: histogram.percentile(50),
      p99: histogram.percentile(99),
      p99_9: histogram.percentile(99.9),
      max: histogram.max_us,
    },
  };
}

/**
 * The report as text: a header line, a table (latencies in ms), and the errors if any.
 *
 * @example
 * console.log(formatReport(report));
 */
export function formatReport(report: BenchReport): string {
  const s = report.settings;
  const lines = [
    `walkv bench: ${s.protocol} on ${s.socket}, ${s.connections} connections × pipeline ${s.pipeline}, ` +
      `${thousands(s.keys)} keys, ${s.value_bytes}-byte values, read ratio ${s.read_ratio}, seed ${s.seed}`,
    `${thousands(report.requests)} requests in ${report.elapsed_s.toFixed(2)} s: ${thousands(report.ops_per_s)} ops/s`,
    "",
    row(["op", "count", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"]),
  ];
  for (const [name, op] of Object.entries(report.ops)) {
    const l = op.latency_us;
    lines.push(
      row([name, thousands(op.count), thousands(op.ops_per_s), ms(l.p50), ms(l.p99), ms(l.p99_9), ms(l.max)]),
    );
  }
  if (report.error_count > 0) {
    lines.push("", `errors: ${thousands(report.error_count)}`);
    for (const [name, { count, message }] of Object.entries(report.errors)) {
      lines.push(`  ${name}: ${thousands(count)} (first: ${JSON.stringify(message)})`);
    }
  }
  return lines.join("\n");
}

function row(cells: string[]): string {
  return cells.map((cell, i) => (i === 0 ? cell.padEnd(4) : cell.padStart(i === 1 ? 12 : 10))).join(" ");
}

function ms(us: number): string {
  return (us / 1000).toFixed(3);
}

function thousands(n: number): string {
  return n.toLocaleString("en-US");
}

function round(n: number, digits: number): number {
  return Math.round(n * 10 ** digits) / 10 ** digits;
}
