/**
 * Request metrics shared by every I/O worker: per-op counts, errors and latency histograms, and the
 * connection count. Each worker writes only its own region (single writer per cell: no contention,
 * no atomics on the hot path); the main thread sums the regions for `stats` and `/metrics`.
 * The connection count is one Atomics counter, because `max_connections` is enforced across workers.
 *
 * Float64 cells are written with plain aligned stores by their one writer; readers may see a value a
 * few requests old, never a torn one on x86-64/arm64 (aligned 8-byte stores are single-copy atomic).
 *
 * @example
 * const metrics = new Metrics(createMetricsBuffer(worker_count), worker_index);
 * metrics.record(OP_INDEX.get, elapsed_us, false);
 * metrics.summary(); // any thread: totals over all workers
 */

/** Operations of protocol v1, in a fixed order (indexes into the metric cells). */
export const OPS = [
  "ping",
  "get",
  "set",
  "del",
  "exists",
  "mget",
  "mset",
  "stats",
  "checkpoint",
  "auth",
  "other",
] as const;
export type OpName = (typeof OPS)[number];

/** Latency bucket upper bounds in microseconds (the last bucket is +Inf). */
export const LATENCY_BUCKETS_US = [
  10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];

const PER_OP = 3 + LATENCY_BUCKETS_US.length + 1; // count, errors, sum_us, buckets…, +Inf
const REGION_CELLS = OPS.length * PER_OP + 8;
const C_ACCEPTED = OPS.length * PER_OP;
const C_REJECTED = C_ACCEPTED + 1;
const C_CUT_OFF = C_ACCEPTED + 2;
const HEADER_I32 = 16; // [0] open connections

/** Allocates the shared metrics block for `worker_count` workers (main thread). */
export function createMetricsBuffer(worker_count: number): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_I32 * 4 + worker_count * REGION_CELLS * 8);
}

export interface OpSummary {
  readonly count: number;
  readonly errors: number;
  readonly sum_us: number;
  /** Cumulative counts per bucket of LATENCY_BUCKETS_US, then +Inf. */
  readonly buckets: number[];
}

export interface MetricsSummary {
  readonly connections: number;
  readonly connections_accepted: number;
  readonly connections_rejected: number;
  readonly connections_cut_off: number;
  readonly ops: Record<OpName, OpSummary>;
}

export class Metrics {
  private readonly header: Int32Array;
  private readonly cells: Float64Array;
  private readonly region: number;
  private readonly worker_count: number;

  /** `worker_index` selects the region this thread writes; the main thread passes -1 (read only). */
  constructor(buffer: SharedArrayBuffer, worker_index: number) {
    this.header = new Int32Array(buffer, 0, HEADER_I32);
    this.cells = new Float64Array(buffer, HEADER_I32 * 4);
    this.worker_count = this.cells.length / REGION_CELLS;
    this.region = worker_index * REGION_CELLS;
  }

  /** Records one request. */
  record(op: number, elapsed_us: number, error: boolean): void {
    const base = this.region + op * PER_OP;
    const c = this.cells;
    c[base] = c[base]! + 1;
    if (error) c[base + 1] = c[base + 1]! + 1;
    c[base + 2] = c[base + 2]! + elapsed_us;
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS_US.length && elapsed_us > LATENCY_BUCKETS_US[bucket]!) bucket++;
    c[base + 3 + bucket] = c[base + 3 + bucket]! + 1;
  }

  /** Counts a new connection unless `limit` are open; false if refused. */
  tryOpenConnection(limit: number): boolean {
    const open = Atomics.add(this.header, 0, 1) + 1;
    if (open <= limit) {
      this.bump(C_ACCEPTED);
      return true;
    }
    Atomics.sub(this.header, 0, 1);
    this.bump(C_REJECTED);
    return false;
  }

  closeConnection(cut_off: boolean): void {
    Atomics.sub(this.header, 0, 1);
    if (cut_off) this.bump(C_CUT_OFF);
  }

  openConnections(): number {
    return Atomics.load(this.header, 0);
  }

  /** Totals over all workers. */
  summary(): MetricsSummary {
    const ops = {} as Record<OpName, OpSummary>;
    OPS.forEach((name, op) => {
      const buckets = new Array<number>(LATENCY_BUCKETS_US.length + 1).fill(0);
      let count = 0;
      let errors = 0;
      let sum_us = 0;
      for (let w = 0; w < this.worker_count; w++) {
        const base = w * REGION_CELLS + op * PER_OP;
        count += this.cells[base]!;
        errors += this.cells[base + 1]!;
        sum_us += this.cells[base + 2]!;
        for (let b = 0; b < buckets.length; b++) buckets[b]! += this.cells[base + 3 + b]!;
      }
      for (let b = 1; b < buckets.length; b++) buckets[b]! += buckets[b - 1]!;
      ops[name] = { count, errors, sum_us, buckets };
    });
    return {
      connections: this.openConnections(),
      connections_accepted: this.total(C_ACCEPTED),
      connections_rejected: this.total(C_REJECTED),
      connections_cut_off: this.total(C_CUT_OFF),
      ops,
    };
  }

  private bump(cell: number): void {
    if (this.region >= 0) this.cells[this.region + cell] = this.cells[this.region + cell]! + 1;
  }

  private total(cell: number): number {
    let sum = 0;
    for (let w = 0; w < this.worker_count; w++) sum += this.cells[w * REGION_CELLS + cell]!;
    return sum;
  }
}
