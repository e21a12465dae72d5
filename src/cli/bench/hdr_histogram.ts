/**
 * A latency histogram in the style of HdrHistogram (Gil Tene): log-linear buckets with 3 significant
 * decimal digits, for integer microseconds from 1 µs to 60 s, in constant memory (17,408 counters,
 * 136 KiB). Every value below 2,048 µs is kept exactly; above, a value shares its counter with at
 * most 0.1 % of its neighbours (a bucket per power of two, split in 1,024 linear sub-buckets).
 *
 * Not src/server/metrics.ts's histogram: that one has 14 fixed Prometheus buckets in shared memory,
 * which cannot give a p99.9 to three digits.
 *
 * @example
 * const h = new HdrHistogram();
 * h.record(120); h.record(4_500);
 * h.percentile(50);  // 120
 * h.percentile(100); // 4_500 (the exact max)
 */
import { assert } from "../../engine/errors.ts";

/** The largest value kept apart from the others, in µs (60 s); larger values count as this. */
export const HDR_HIGHEST_US = 60_000_000;

const SUB_BUCKET_COUNT = 2048; // 2 × 10^3 rounded up to a power of two: 3 significant digits
const SUB_BUCKET_HALF_COUNT = SUB_BUCKET_COUNT / 2;
const SUB_BUCKET_HALF_MAGNITUDE = 10; // log2(SUB_BUCKET_HALF_COUNT)
const SUB_BUCKET_MASK = SUB_BUCKET_COUNT - 1;
/** Buckets needed so that SUB_BUCKET_COUNT << (BUCKET_COUNT - 1) > HDR_HIGHEST_US. */
const BUCKET_COUNT = 16;
const COUNTS_LENGTH = (BUCKET_COUNT + 1) * SUB_BUCKET_HALF_COUNT;

/**
 * The histogram; see the module comment.
 *
 * @example
 * const all = new HdrHistogram();
 * all.merge(gets); all.merge(sets);
 * console.log(all.count, all.percentile(99.9), all.max_us);
 */
export class HdrHistogram {
  private readonly counts = new Float64Array(COUNTS_LENGTH);
  /** Values recorded. */
  count = 0;
  /** The largest value recorded, exact (also beyond {@link HDR_HIGHEST_US}); 0 if none. */
  max_us = 0;
  /** The smallest value recorded, exact; 0 if none. */
  min_us = 0;

  /**
   * Counts one value (a whole number of µs, ≥ 0). Values above {@link HDR_HIGHEST_US} count in its
   * counter; `max_us` keeps the exact largest value.
   *
   * @example
   * h.record(Math.round((performance.now() - sent_ms) * 1000));
   */
  record(value_us: number): void {
    assert(Number.isInteger(value_us) && value_us >= 0, "a latency must be a whole number of µs ≥ 0");
    const clamped = Math.min(value_us, HDR_HIGHEST_US);
    const index = countsIndex(clamped);
    this.counts[index] = this.counts[index]! + 1;
    if (this.count === 0 || value_us < this.min_us) this.min_us = value_us;
    if (value_us > this.max_us) this.max_us = value_us;
    this.count++;
  }

  /**
   * The value at `percentile` (0–100): the smallest recorded value v such that at least that share of
   * the values is ≤ v (nearest rank), as the highest value of v's counter (≤ 0.1 % above v), and never
   * above the exact max (which is the answer when the rank is the last). 0 if nothing was recorded.
   *
   * @example
   * h.percentile(99.9); // the p99.9 latency in µs
   */
  percentile(percentile: number): number {
    assert(percentile >= 0 && percentile <= 100, `percentile must be in [0, 100], got ${percentile}`);
    if (this.count === 0) return 0;
    // Less a hair: 0.999 * 1000 is 999.0000000000001 in floating point, and its rank is 999.
    const rank = Math.max(1, Math.ceil((percentile / 100) * this.count - 1e-9));
    if (rank >= this.count) return this.max_us;
    let seen = 0;
    for (let index = 0; index < COUNTS_LENGTH; index++) {
      seen += this.counts[index]!;
      if (seen >= rank) return Math.min(highestEquivalent(index), this.max_us);
    }
    return this.max_us;
  }

  /**
   * Adds every value of `other` to this histogram.
   *
   * @example
   * const all = new HdrHistogram(); all.merge(gets); all.merge(sets);
   */
  merge(other: HdrHistogram): void {
    if (other.count === 0) return;
    for (let index = 0; index < COUNTS_LENGTH; index++) {
      this.counts[index] = this.counts[index]! + other.counts[index]!;
    }
    if (this.count === 0 || other.min_us < this.min_us) this.min_us = other.min_us;
    if (other.max_us > this.max_us) this.max_us = other.max_us;
    this.count += other.count;
  }
}

function countsIndex(value_us: number): number {
  // Bucket b holds [1024 << b, 2048 << b) at a resolution of 1 << b (bucket 0 also holds [0, 1024)).
  const bucket = 32 - Math.clz32(value_us | SUB_BUCKET_MASK) - (SUB_BUCKET_HALF_MAGNITUDE + 1);
  const sub_bucket = value_us >>> bucket;
  return ((bucket + 1) << SUB_BUCKET_HALF_MAGNITUDE) + (sub_bucket - SUB_BUCKET_HALF_COUNT);
}

/** The largest value that lands in counter `index`. */
function highestEquivalent(index: number): number {
  let bucket = (index >> SUB_BUCKET_HALF_MAGNITUDE) - 1;
  let sub_bucket = (index & (SUB_BUCKET_HALF_COUNT - 1)) + SUB_BUCKET_HALF_COUNT;
  if (bucket < 0) {
    sub_bucket -= SUB_BUCKET_HALF_COUNT;
    bucket = 0;
  }
  return sub_bucket * 2 ** bucket + 2 ** bucket - 1;
}
