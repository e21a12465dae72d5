/**
 * `walkv bench`: a load generator for a running daemon, over walkv's msgpack protocol or RESP2 (the
 * same generator for both, to compare them; RESP also against Redis). C connections each send
 * batches of `--pipeline` GET/SET requests on random keys and send the next batch once the batch is
 * answered; at the end it prints, per op and overall, the count, ops/s and latency percentiles.
 * The parts are in src/cli/bench/: workload (keys, values, seeded streams), the two wires,
 * the runner (sockets and batches), the HDR histogram and the report.
 *
 * @example
 * walkv bench --connections 50 --pipeline 16 --duration 10
 * walkv bench --protocol resp --socket /tmp/redis.sock --requests 100000 --json
 */

import { MsgpackWire } from "./bench/msgpack_wire.ts";
import { type BenchSettings, benchReport, formatReport } from "./bench/report.ts";
import { RespWire } from "./bench/resp_wire.ts";
import { BenchConnectionError, runBench, STALL_TIMEOUT_MS } from "./bench/runner.ts";
import { MAX_RESPONSE_BYTES, WireError } from "./bench/wire.ts";
import { MAX_KEYS } from "./bench/workload.ts";
import { CLIENT_FLAGS, readTokenFile } from "./client_commands.ts";
import { type FlagSpec, flagsHelp, parseFlags, UsageError } from "./flags.ts";

const MAX_VALUE_BYTES = 16 * 1024 * 1024;
/** Connections × pipeline × request size: the bench's send buffers, allocated up front. */
const MAX_SEND_BUFFER_BYTES = 256 * 1024 * 1024;
const DEFAULT_DURATION_S = 10;
const EXIT_OK = 0;
const EXIT_ERRORS = 1;
const EXIT_CONNECTION = 4;

/**
 * The flags of `walkv bench` (each also as WALKV_<NAME>).
 *
 * @example
 * parseFlags(BENCH_FLAGS, ["--pipeline", "16"], {}).values.pipeline; // 16
 */
export const BENCH_FLAGS = {
  socket: {
    type: "string",
    help: "the daemon's socket, or with --protocol resp a RESP socket (default ./var/walkv.sock)",
    value_name: "PATH",
  },
  token_file: CLIENT_FLAGS.token_file,
  protocol: { type: "enum", values: ["msgpack", "resp"], help: "wire protocol (default msgpack)" },
  connections: { type: "integer", min: 1, max: 10_000, help: "connections (default 50)" },
  pipeline: { type: "integer", min: 1, max: 1024, help: "requests per batch on a connection (default 1)" },
  keys: { type: "integer", min: 1, max: MAX_KEYS, help: "key space: key:000000000000 … (default 100000)" },
  value_bytes: {
    type: "integer",
    min: 1,
    max: MAX_VALUE_BYTES,
    help: "bytes of each SET's value (default 100)",
  },
  read_ratio: {
    type: "number",
    min: 0,
    max: 1,
    help: "share of GETs, 0..1; the rest are SETs (default 0.5)",
  },
  duration: { type: "number", min: 0.1, max: 86_400, help: "run for this many seconds (default 10)" },
  requests: { type: "integer", min: 1, max: 1e12, help: "send exactly N requests (instead of --duration)" },
  seed: { type: "integer", min: 0, max: 0xffff_ffff, help: "seed of the keys, ops and value (default 1)" },
  json: { type: "boolean", help: "print the result as one line of JSON" },
} as const satisfies FlagSpec;

/**
 * The help text of `walkv bench`.
 *
 * @example
 * console.log(BENCH_USAGE);
 */
export const BENCH_USAGE = `usage: walkv bench [flags]

Load a running daemon with GETs and SETs of random keys and report ops/s and latency.

${flagsHelp(BENCH_FLAGS)}

Each connection sends --pipeline requests in one write and sends the next batch when all are answered
(as redis-benchmark -P). Keys are "key:" and 12 digits, uniform over --keys. Each connection's ops and
keys come from --seed, so a run with --requests sends the same requests every time.
Values: with msgpack a str of --value-bytes bytes in all (header included); with resp a bulk string of
--value-bytes bytes (walkv stores it as a msgpack bin, 2–5 bytes more). Either way the same printable
bytes for every SET.
--protocol resp speaks RESP2 (SET/GET) to a RESP listener (walkv serve --resp, or redis-server).

Prints a progress line on stderr every second; at the end, per op and overall: count, ops/s, latency
p50/p99/p99.9/max (an HDR histogram, 3 significant digits, 1 µs to 60 s). Latency is from a batch's
write to the read that completed each response. Limits: connections × pipeline × request bytes
≤ ${MAX_SEND_BUFFER_BYTES / 1024 / 1024} MiB; responses ≤ ${MAX_RESPONSE_BYTES / 1024 / 1024} MiB; no response for ${STALL_TIMEOUT_MS / 1000} s fails the run (exit 4).
Exit codes: 0 ok, 1 error responses (counted by code) or a broken stream, 2 usage, 4 cannot connect
or a connection was lost.`;

/**
 * Runs `walkv bench` with `argv`; resolves with the exit code. Throws UsageError for bad flags.
 *
 * @example
 * const code = await bench(["--requests", "1000", "--socket", "/tmp/w.sock"], process.env);
 */
export async function bench(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const { values: flags, positionals } = parseFlags(BENCH_FLAGS, argv, env);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (flags.requests !== undefined && flags.duration !== undefined) {
    throw new UsageError("give --requests or --duration, not both");
  }
  const settings: BenchSettings = {
    protocol: flags.protocol ?? "msgpack",
    socket: flags.socket ?? "./var/walkv.sock",
    connections: flags.connections ?? 50,
    pipeline: flags.pipeline ?? 1,
    keys: flags.keys ?? 100_000,
    value_bytes: flags.value_bytes ?? 100,
    read_ratio: flags.read_ratio ?? 0.5,
    seed: flags.seed ?? 1,
  };
  const wire_options = { value_bytes: settings.value_bytes, seed: settings.seed };
  const wire = settings.protocol === "resp" ? new RespWire(wire_options) : new MsgpackWire(wire_options);
  const send_buffer_bytes = settings.connections * settings.pipeline * wire.max_request_bytes;
  if (send_buffer_bytes > MAX_SEND_BUFFER_BYTES) {
    throw new UsageError(
      `--connections × --pipeline × request bytes = ${send_buffer_bytes} bytes, over the limit of ` +
        `${MAX_SEND_BUFFER_BYTES}: fewer connections, a shorter pipeline or smaller values`,
    );
  }
  const token = flags.token_file === undefined ? undefined : readTokenFile(flags.token_file);
  const requests = flags.requests;
  const duration_ms = requests === undefined ? (flags.duration ?? DEFAULT_DURATION_S) * 1000 : undefined;
  try {
    const result = await runBench({
      ...settings,
      socket_path: settings.socket,
      wire,
      requests,
      duration_ms,
      token,
      on_progress: (elapsed_ms, completed) => console.error(progressLine(elapsed_ms, completed)),
    });
    const report = benchReport(settings, result);
    console.log(flags.json === true ? JSON.stringify(report) : formatReport(report));
    return report.error_count > 0 ? EXIT_ERRORS : EXIT_OK;
  } catch (error) {
    if (error instanceof BenchConnectionError) {
      console.error(`walkv bench: ${error.message}`);
      return EXIT_CONNECTION;
    }
    if (error instanceof WireError) {
      console.error(`walkv bench: ${error.message}`);
      return EXIT_ERRORS;
    }
    throw error;
  }
}

function progressLine(elapsed_ms: number, completed: number): string {
  const ops_per_s = Math.round(completed / (elapsed_ms / 1000));
  return `walkv bench: ${(elapsed_ms / 1000).toFixed(1)} s, ${completed.toLocaleString("en-US")} requests, ${ops_per_s.toLocaleString("en-US")} ops/s so far`;
}
