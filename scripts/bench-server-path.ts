/**
 * The server's own cost per request, without sockets or a load generator: C in-process connections
 * (src/server/connection.ts) each receive P pipelined RESP (or msgpack) requests per event-loop turn,
 * run by the same protocol, coalescer and engine as an I/O worker (one I/O worker writing the WAL
 * itself, fsync `no`, 100k keys, 100-byte values). Every key is set before the rounds (GETs hit), and
 * the requests of a round name keys at random over the whole key space, so that the table's cache
 * misses are those of a daemon under redis-benchmark. Prints ns per request for SET and GET. The kernel's
 * share of a real request (recv, send, epoll) is left out on purpose: this measures the JavaScript
 * path steadily enough to compare two versions of it (A/B in alternation, medians), which the
 * daemon-wide figures of profile.sh are too noisy for on this machine.
 *
 * @example
 * node_modules/.bin/bun scripts/bench-server-path.ts --protocol resp --pipeline 16 --rounds 5 --ops set,get
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { parseArgs } from "node:util";
import { engineConfig } from "../src/engine/config.ts";
import { openEngine, walStart } from "../src/engine/host.ts";
import { prng, randomInt } from "../src/engine/io/prng.ts";
import { LocalWalWriter } from "../src/engine/wal/local_wal_writer.ts";
import type { ClientSocket } from "../src/server/client_socket.ts";
import { serverConfig } from "../src/server/config.ts";
import { Connection } from "../src/server/connection.ts";
import { createMetricsBuffer, Metrics } from "../src/server/metrics.ts";
import { MsgpackProtocol } from "../src/server/msgpack_protocol.ts";
import { SetCoalescer, type WorkerContext } from "../src/server/ops.ts";
import { packr } from "../src/server/pack.ts";
import { RespProtocol } from "../src/server/resp_protocol.ts";
import { positiveFlag, usageError } from "./flags.ts";

const { values } = parseArgs({
  options: {
    protocol: { type: "string", default: "resp" },
    connections: { type: "string", default: "50" },
    pipeline: { type: "string", default: "16" },
    requests: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "3" },
    ops: { type: "string", default: "set,get" },
  },
});
const ops = values.ops.split(",") as Array<"set" | "get">;
if (ops.length === 0 || ops.some((op) => op !== "set" && op !== "get"))
  usageError("--ops: set, get or set,get");
const protocol = values.protocol;
if (protocol !== "resp" && protocol !== "msgpack") usageError("--protocol resp|msgpack");
const connections = positiveFlag("connections", values.connections);
const pipeline = positiveFlag("pipeline", values.pipeline);
const requests = positiveFlag("requests", values.requests);
const rounds = positiveFlag("rounds", values.rounds);
const KEYS = 100_000;
const VALUE = "x".repeat(100);
/** Distinct request chunks per round: twice the key space's worth of requests, at random. */
const CHUNKS = Math.ceil((2 * KEYS) / pipeline);

/** A socket that counts the bytes it is given. */
class CountingSocket implements ClientSocket {
  readonly unsent_bytes = 0;
  bytes = 0;
  write(bytes: Uint8Array, start = 0, end = bytes.length): void {
    this.bytes += end - start;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  destroy(): void {}
}

const encoder = new TextEncoder();
const key = (n: number) => `key:${String(n).padStart(12, "0")}`;

/** `pipeline` requests of `op` in one chunk (keys from `keyAt(i)`), as the chosen protocol frames them. */
function chunk(op: "set" | "get", keyAt: (i: number) => number, first_id: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < pipeline; i++) {
    const k = key(keyAt(i));
    if (protocol === "resp") {
      const args = op === "set" ? ["SET", k, VALUE] : ["GET", k];
      parts.push(
        encoder.encode(`*${args.length}\r\n${args.map((a) => `$${a.length}\r\n${a}\r\n`).join("")}`),
      );
    } else {
      const body = packr.pack(op === "set" ? [first_id + i, "set", k, VALUE] : [first_id + i, "get", k]);
      const framed = new Uint8Array(4 + body.length);
      new DataView(framed.buffer).setUint32(0, body.length);
      framed.set(body, 4);
      parts.push(framed);
    }
  }
  return Buffer.concat(parts);
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(`${os.tmpdir()}/walkv-bench-path-`);
  const engine_config = engineConfig({ data_dir: `${dir}/data`, fsync: "no", checkpoint_interval_ms: 0 });
  const host = await openEngine(engine_config, { local_wal_writer: true, log: () => {} });
  const local = new LocalWalWriter(host.shared, walStart(host.recovery), () => {});
  const config = serverConfig({ engine: engine_config, socket_path: `${dir}/s`, workers: 1 });
  const engine = local.engine;
  const ctx: WorkerContext = {
    engine,
    sets: new SetCoalescer(engine),
    config,
    metrics: new Metrics(createMetricsBuffer(1), 0),
    checkpoint: () => Promise.reject(new Error("no checkpoints here")),
    serverStats: () => ({}),
    draining: () => false,
    started_unix_ms: Date.now(),
    resp_tcp_port: () => 0,
  };
  const sockets = Array.from({ length: connections }, () => new CountingSocket());
  const conns = sockets.map((socket) => {
    const p = protocol === "resp" ? new RespProtocol(ctx) : new MsgpackProtocol(ctx);
    return new Connection<unknown>(socket, p as never, ctx, () => {});
  });
  /** Feeds `turns` turns of `chunks` to the connections, each turn waiting for every answer. */
  async function run(chunks: Uint8Array[], turns: number): Promise<void> {
    for (let turn = 0; turn < turns; turn++) {
      const expected = sockets.map((s) => s.bytes);
      // A fresh copy, as a socket gives: the server may write into its input (RESP bin headers).
      for (let c = 0; c < connections; c++)
        conns[c]!.receive(new Uint8Array(chunks[(turn * connections + c) % chunks.length]!));
      // The turn ends: the coalesced SETs are written, answered, flushed (the WAL writer may need
      // a later turn or its timer when its ring is full).
      for (let waits = 0; sockets.some((s, c) => s.bytes === expected[c]); waits++) {
        if (waits > 100_000) throw new Error(`turn ${turn}: no answer after ${waits} waits`);
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }
  const fill = Array.from({ length: Math.ceil(KEYS / pipeline) }, (_, c) =>
    chunk("set", (i) => (c * pipeline + i) % KEYS, 1),
  );
  await run(fill, Math.ceil(fill.length / connections));
  const random = prng(1);
  const results: Record<string, number[]> = { set: [], get: [] };
  for (let round = 0; round < rounds; round++) {
    for (const op of ops) {
      const chunks = Array.from({ length: CHUNKS }, (_, i) =>
        chunk(op, () => randomInt(random, KEYS), i * pipeline + 1),
      );
      const turns = Math.ceil(requests / (connections * pipeline));
      const started = performance.now();
      await run(chunks, turns);
      const ns = ((performance.now() - started) * 1e6) / (turns * connections * pipeline);
      results[op]!.push(ns);
      console.error(`round ${round + 1}: ${op} ${ns.toFixed(0)} ns/request`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const figure = (op: "set" | "get") =>
    `${op.toUpperCase()} ${median(results[op]!).toFixed(0)} ns (min ${Math.min(...results[op]!).toFixed(0)})`;
  console.log(
    `${protocol} c${connections} p${pipeline}: ${ops.map(figure).join(", ")} per request, median of ${rounds}`,
  );
  local.close();
  await host.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

await main();
