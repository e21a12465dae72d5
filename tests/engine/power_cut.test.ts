/**
 * Power-cut simulation: hundreds of seeded runs of random writes, WAL steps, checkpoints and power
 * cuts (or process crashes) at random I/O calls, on the simulated disk, with the whole engine inline.
 *
 * After each cut the engine recovers and must hold exactly the state of some prefix P of the log of
 * reserved writes (so no multi-key write is half there), where P covers
 * - every acknowledged write, with fsync `always`;
 * - every write the engine published as durable, in every mode (power cut);
 * - every write handed to the OS, in every mode (process crash: the page cache survives).
 *
 * WALKV_SEED=<n> reruns one seed; WALKV_POWER_CUT_RUNS=<n> changes the number of runs;
 * WALKV_TRACE=1 prints the engine log.
 */
import { describe, expect, test } from "bun:test";
import { type EngineConfig, engineConfig } from "../../src/engine/config.ts";
import { type InlineHost, openEngine } from "../../src/engine/host.ts";
import { prng } from "../../src/engine/io/prng.ts";
import { SimDisk } from "../../src/engine/io/sim_disk.ts";
import { OP_DEL } from "../../src/engine/wal/format.ts";
import { delEntry, setEntry, type WalEntry } from "../../src/engine/wal/record.ts";
import type { FsyncMode } from "../../src/engine/wal/wal_writer.ts";

const RUNS = Number(process.env.WALKV_POWER_CUT_RUNS ?? 300);
const ONLY_SEED = process.env.WALKV_SEED === undefined ? undefined : Number(process.env.WALKV_SEED);
const KEYS = 24;

type Model = Map<string, string>;
interface Logged {
  readonly lsn: number;
  readonly entries: readonly WalEntry[];
}

const text = new TextEncoder();
const untext = new TextDecoder();

function config(fsync: FsyncMode): EngineConfig {
  return engineConfig({
    data_dir: "/data",
    fsync,
    shard_bits: 3,
    max_key_bytes: 64,
    max_value_bytes: 3000,
    max_batch_bytes: 64 * 1024,
    wal_segment_bytes: 80 * 1024,
    wal_buffer_bytes: 128 * 1024,
    memory_limit_bytes: 64 << 20,
  });
}

/** One simulated run: several cycles of (open, random work, cut) on one disk. */
class Run {
  readonly rng: () => number;
  readonly disk: SimDisk;
  readonly history: Logged[] = [];
  readonly acked = new Set<number>();
  readonly trace: string[] = [];
  private io_calls = 0;
  private cut_at = Number.POSITIVE_INFINITY;
  private dead = false;
  private sequence = 0;

  constructor(
    readonly seed: number,
    readonly fsync: FsyncMode,
  ) {
    this.rng = prng(seed);
    this.disk = new SimDisk({ rng: this.rng });
    this.disk.injectFault(() => {
      this.io_calls++;
      if (this.io_calls >= this.cut_at) this.dead = true;
      return this.dead ? "EIO" : undefined;
    });
  }

  int(limit: number): number {
    return Math.floor(this.rng() * limit);
  }

  async open(): Promise<InlineHost> {
    return (await openEngine(config(this.fsync), {
      io: this.disk,
      inline: true,
      log: (l) => {
        if (process.env.WALKV_TRACE) console.log(l);
      },
    })) as InlineHost;
  }

  /** A random write: set, del or an mset of 2–4 keys (values up to ~2.5 KB, unique per write). */
  randomEntries(): WalEntry[] {
    const kind = this.int(10);
    const count = kind < 6 ? 1 : 2 + this.int(3);
    const entries: WalEntry[] = [];
    for (let i = 0; i < count; i++) {
      const key = text.encode(`key-${this.int(KEYS)}`);
      if (kind >= 4 && kind < 6) entries.push(delEntry(key));
      else {
        const filler = "x".repeat(this.int(10) === 0 ? 2500 : this.int(40));
        const value = text.encode(`${this.seed}/${++this.sequence}/${filler}`);
        entries.push(setEntry(key, value));
      }
    }
    return entries;
  }

  /** Issues a write; logs its LSN if it reserved one (the reservation is synchronous). */
  issue(host: InlineHost): Promise<unknown> {
    const entries = this.randomEntries();
    const before = host.engine.wal.nextLsn();
    const promise = host.engine.write(entries).then(
      (result) => {
        if (result.lsn === before) this.acked.add(result.lsn);
      },
      () => {},
    );
    const after = host.engine.wal.nextLsn();
    if (after === before + 1) this.log({ lsn: before, entries });
    return promise;
  }

  private log(record: Logged): void {
    while (this.history.length > 0 && this.history[this.history.length - 1]!.lsn >= record.lsn)
      this.history.pop();
    this.history.push(record);
  }

  /** Random work until the planned cut (or the operation budget) is reached. */
  async work(host: InlineHost): Promise<void> {
    this.cut_at = this.io_calls + 1 + this.int(120);
    const budget = 20 + this.int(120);
    for (let op = 0; op < budget && !this.dead; op++) {
      const action = this.int(20);
      if (action < 12) this.issue(host);
      else if (action < 18) host.step();
      else if (action === 18) await host.checkpoint().catch(() => {});
      else await drain();
    }
    await drain();
  }

  /** Cuts power (or crashes the process) and returns the LSN every surviving state must cover. */
  cut(host: InlineHost): { must_cover: number; crash: boolean } {
    const lsns = host.engine.wal.lsns();
    const crash = this.int(4) === 0;
    const acked_max = Math.max(0, ...this.acked);
    const must_cover = crash
      ? Math.max(lsns.written, acked_max)
      : Math.max(lsns.durable, this.fsync === "always" ? acked_max : 0);
    this.disk.clearFaults();
    if (crash) this.disk.crash();
    else this.disk.powerCut(this.rng);
    this.trace.push(
      `cut: crash=${crash} written=${lsns.written} durable=${lsns.durable} acked_max=${acked_max}`,
    );
    this.dead = false;
    this.cut_at = Number.POSITIVE_INFINITY;
    this.disk.injectFault(() => {
      this.io_calls++;
      if (this.io_calls >= this.cut_at) this.dead = true;
      return this.dead ? "EIO" : undefined;
    });
    return { must_cover, crash };
  }

  modelAt(lsn: number): Model {
    const model: Model = new Map();
    for (const record of this.history) {
      if (record.lsn > lsn) break;
      for (const e of record.entries) {
        const key = untext.decode(e.key);
        if (e.op === OP_DEL) model.delete(key);
        else model.set(key, untext.decode(e.value));
      }
    }
    return model;
  }

  /** Recovered state = the model at the recovered LSN, which covers what it must. */
  check(host: InlineHost, must_cover: number): void {
    const recovered = host.recovery.next_lsn - 1;
    const where = `seed ${this.seed} (${this.fsync}); ${this.trace.join("; ")}`;
    expect(recovered, `recovered LSN below the durable/acknowledged LSN: ${where}`).toBeGreaterThanOrEqual(
      must_cover,
    );
    const reserved_max = this.history.length === 0 ? 0 : this.history[this.history.length - 1]!.lsn;
    expect(recovered, `recovered an LSN never written: ${where}`).toBeLessThanOrEqual(reserved_max);
    const model = this.modelAt(recovered);
    for (let k = 0; k < KEYS; k++) {
      const key = `key-${k}`;
      const value = host.engine.get(text.encode(key));
      const got = value === undefined ? undefined : untext.decode(value);
      expect(got, `key ${key} at recovered LSN ${recovered}: ${where}`).toBe(model.get(key));
    }
    while (this.history.length > 0 && this.history[this.history.length - 1]!.lsn > recovered)
      this.history.pop();
    for (const lsn of this.acked) if (lsn > recovered) this.acked.delete(lsn);
  }
}

/** Lets promise callbacks of settled writes run (a macrotask turn, not a timed sleep). */
function drain(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function simulate(seed: number, fsync: FsyncMode): Promise<void> {
  const run = new Run(seed, fsync);
  let host = await run.open();
  const cycles = 2 + run.int(4);
  for (let cycle = 0; cycle < cycles; cycle++) {
    await run.work(host);
    const { must_cover } = run.cut(host);
    host = await run.open();
    run.check(host, must_cover);
  }
}

function seeds(count: number): number[] {
  return ONLY_SEED === undefined ? Array.from({ length: count }, (_, i) => i + 1) : [ONLY_SEED];
}

describe("power cuts on the simulated disk", () => {
  for (const fsync of ["always", "everysec", "no"] as const) {
    const count = fsync === "always" ? RUNS : Math.ceil(RUNS / 3);
    test(`${count} seeded runs, fsync ${fsync}`, async () => {
      for (const seed of seeds(count)) {
        try {
          await simulate(seed, fsync);
        } catch (error) {
          console.error(`power-cut simulation failed: WALKV_SEED=${seed} fsync=${fsync}`);
          throw error;
        }
      }
    }, 120_000);
  }
});
