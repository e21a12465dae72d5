/**
 * Slab allocator over shared memory: the storage of the table's records and slot arrays, used by
 * every Worker at once.
 *
 * Memory is up to {@link ARENA_BUFFER_COUNT_MAX} growable SharedArrayBuffers of at most 4 GiB each
 * (virtual reservations: only the bytes a buffer has grown to count, and only touched pages cost RAM).
 * A SharedArrayBuffer reaches a Worker only by postMessage, so the owner thread creates every buffer up
 * front with {@link createArenaShared} and posts the {@link ArenaShared} to each Worker, which attaches
 * with `new Arena(shared)`. `grow()` by any thread is seen by all: the views an {@link Arena} exposes are
 * length-tracking and always cover the current length of their buffer.
 *
 * A chunk is named by a 32-bit unsigned `ref` = `(buffer_index << 29) | (offset_bytes / 8)`; chunks are
 * 8-byte aligned and ref 0 is null (the first 8 bytes of buffer 0 are never handed out).
 *
 * Sizes are rounded up to a size class: 8-byte steps up to 256 bytes, then 8 classes per power of two
 * (waste < 12.5%). Each class has its own free list (intrusive: a free chunk's first 4 bytes hold the
 * next ref) under its own {@link lock}. Classes of at most 64 KiB refill by carving a 64 KiB run from the
 * bump region; larger classes take one chunk at a time. The bump region fills buffer 0, then 1, …,
 * growing each buffer by `grow_step_bytes` up to its maximum; a request that no longer fits in the
 * current buffer moves the bump cursor to the next one and the tail of the old one is wasted
 * (`stats().wasted_bytes`). Lock order: a class lock, then the bump lock.
 *
 * Limitation (as memcached's slabs): memory never moves between classes. A freed chunk is reused only
 * by its own class, and the arena never shrinks. Freed chunks are reused before the bump region is
 * touched, so a steady workload of same-size overwrites does not grow memory.
 *
 * @example
 * const shared = createArenaShared({ buffer_count: 8, initial_bytes: 1 << 20 });
 * const arena = new Arena(shared); // in a Worker: new Arena(event.data.shared)
 * const ref = arena.alloc(100); // a chunk of classSizeBytes(sizeClassOf(100)) = 104 bytes
 * arena.u32[bufferIndex(ref)]![offsetBytes(ref) >>> 2] = 42;
 * arena.free(ref, 100);
 */
import { assert, InvalidError, TooLargeError, UnavailableError } from "./errors.ts";
import { lock, unlock } from "./locks.ts";

/** At most this many buffers per arena. */
export const ARENA_BUFFER_COUNT_MAX = 8;
/** At most this many bytes per buffer (the reach of a ref's 29-bit offset in 8-byte units). */
export const ARENA_BUFFER_BYTES_MAX = 2 ** 32;
/** Every chunk starts at a multiple of this many bytes. */
export const CHUNK_ALIGN_BYTES = 8;
/** The largest chunk any size class can describe. */
export const CHUNK_BYTES_MAX = 2 ** 31;
/** A chunk of a class of at most this many bytes is carved from a run of this size. */
export const RUN_BYTES = 64 * 1024;

const REF_BUFFER_SHIFT = 29;
const REF_UNITS_MASK = 0x1fffffff;
const UNIT_SHIFT = 3;
const SMALL_BYTES_MAX = 256;
const SMALL_CLASS_COUNT = SMALL_BYTES_MAX / CHUNK_ALIGN_BYTES;
const CLASSES_PER_DOUBLING = 8;
const SMALL_LOG2 = 8;

/** Number of size classes: class `SIZE_CLASS_COUNT - 1` holds chunks of {@link CHUNK_BYTES_MAX}. */
export const SIZE_CLASS_COUNT = SMALL_CLASS_COUNT + (31 - SMALL_LOG2) * CLASSES_PER_DOUBLING;

const CLASS_SIZES_BYTES = buildClassSizes();

function buildClassSizes(): Float64Array {
  const sizes = new Float64Array(SIZE_CLASS_COUNT);
  for (let cls = 0; cls < SMALL_CLASS_COUNT; cls++) sizes[cls] = (cls + 1) * CHUNK_ALIGN_BYTES;
  for (let cls = SMALL_CLASS_COUNT; cls < SIZE_CLASS_COUNT; cls++) {
    const log2 = SMALL_LOG2 + Math.floor((cls - SMALL_CLASS_COUNT) / CLASSES_PER_DOUBLING);
    const step = (cls - SMALL_CLASS_COUNT) % CLASSES_PER_DOUBLING;
    sizes[cls] = 2 ** log2 + (step + 1) * 2 ** (log2 - 3);
  }
  return sizes;
}

/**
 * The size class of a chunk able to hold `size_bytes` (1 ≤ size_bytes ≤ {@link CHUNK_BYTES_MAX}).
 *
 * @example
 * sizeClassOf(1) === 0; sizeClassOf(8) === 0; sizeClassOf(9) === 1; sizeClassOf(257) === 32
 */
export function sizeClassOf(size_bytes: number): number {
  // Constant messages: a template literal here would be built on every call of the hot path.
  assert(
    Number.isInteger(size_bytes) && size_bytes >= 1 && size_bytes <= CHUNK_BYTES_MAX,
    "chunk size invalid",
  );
  if (size_bytes <= SMALL_BYTES_MAX) return (size_bytes - 1) >>> UNIT_SHIFT;
  const log2 = 31 - Math.clz32(size_bytes - 1); // 2**log2 < size_bytes <= 2**(log2 + 1)
  const step = (size_bytes - 1 - (1 << log2)) >>> (log2 - 3);
  return SMALL_CLASS_COUNT + (log2 - SMALL_LOG2) * CLASSES_PER_DOUBLING + step;
}

/**
 * The exact size of every chunk of class `cls`: a multiple of 8, strictly increasing with `cls`.
 *
 * @example
 * classSizeBytes(sizeClassOf(100)) === 104; classSizeBytes(sizeClassOf(257)) === 288
 */
export function classSizeBytes(cls: number): number {
  assert(Number.isInteger(cls) && cls >= 0 && cls < SIZE_CLASS_COUNT, "size class out of range");
  return CLASS_SIZES_BYTES[cls]!;
}

/**
 * The buffer a ref points into.
 *
 * @example
 * bufferIndex(makeRef(3, 4096)) === 3
 */
export function bufferIndex(ref: number): number {
  return ref >>> REF_BUFFER_SHIFT;
}

/**
 * The byte offset of a ref inside its buffer (a multiple of 8, below 2**32).
 *
 * @example
 * offsetBytes(makeRef(3, 4096)) === 4096
 */
export function offsetBytes(ref: number): number {
  return (ref & REF_UNITS_MASK) * CHUNK_ALIGN_BYTES;
}

/**
 * The ref of `offset_bytes` (8-aligned, below 2**32) in buffer `buffer_index` (below 8).
 *
 * @example
 * makeRef(1, 8) === 0x20000001
 */
export function makeRef(buffer_index: number, offset_bytes: number): number {
  assert(buffer_index >= 0 && buffer_index < ARENA_BUFFER_COUNT_MAX, "buffer index out of range");
  assert(offset_bytes >= 0 && offset_bytes < ARENA_BUFFER_BYTES_MAX, "offset out of range");
  assert(offset_bytes % CHUNK_ALIGN_BYTES === 0, "offset not 8-aligned");
  return ((buffer_index << REF_BUFFER_SHIFT) | (offset_bytes / CHUNK_ALIGN_BYTES)) >>> 0;
}

/** The memory of an arena: post it to each Worker, which attaches with `new Arena(shared)`. */
export interface ArenaShared {
  /** Int32 words: configuration, locks, bump cursors, per-class free-list heads and counters. */
  readonly control: SharedArrayBuffer;
  /** Growable buffers; chunks live here. */
  readonly buffers: SharedArrayBuffer[];
}

/** Options of {@link createArenaShared}. All byte counts are multiples of 8. */
export interface ArenaOptions {
  /** Number of growable buffers, 1 to 8. */
  buffer_count: number;
  /** Initial length of buffer 0 (the others start empty). */
  initial_bytes: number;
  /** Maximum length of each buffer, at most 2**32 (the default). */
  max_bytes_per_buffer?: number;
  /** A buffer grows by at least this much at a time; default 64 MiB. */
  grow_step_bytes?: number;
  /** Cap on the sum of buffer lengths; default `buffer_count × max_bytes_per_buffer`. */
  limit_bytes?: number;
  /** Largest allocation; default min(2**28, max_bytes_per_buffer / 2). */
  max_chunk_bytes?: number;
}

/** Counters of an arena, read with {@link Arena.stats}. */
export interface ArenaStats {
  /** Sum of the current lengths of all buffers. */
  reserved_bytes: number;
  /** Bytes handed out by the bump region (including the null reservation and wasted tails). */
  bump_bytes: number;
  /** Tails of buffers the bump cursor left behind because a request did not fit. */
  wasted_bytes: number;
  /** Bytes in allocated chunks (allocated − freed), counted in class sizes. */
  live_bytes: number;
  /** Allocated chunks not yet freed. */
  chunks_live: number;
}

// Control layout. Float64 configuration in bytes [0, 64); Int32 words after it.
const CONFIG_F64_COUNT = 8;
const F_MAGIC = 0;
const F_BUFFER_COUNT = 1;
const F_MAX_BYTES_PER_BUFFER = 2;
const F_GROW_STEP_BYTES = 3;
const F_LIMIT_BYTES = 4;
const F_MAX_CHUNK_BYTES = 5;
const MAGIC = 0x61726e61; // "arna"

const W_BUMP_LOCK = 16;
const W_BUMP_BUFFER = 17;
const W_USED_UNITS = 18; // 8 words: bump cursor of each buffer, in 8-byte units
const W_WASTED_UNITS = W_USED_UNITS + ARENA_BUFFER_COUNT_MAX; // 8 words
const W_CLASSES = 48; // one 64-byte block per class, so class locks do not share cache lines

const CLASS_WORDS = 16;
const C_LOCK = 0;
const C_FREE_HEAD = 1; // ref of the first free chunk, 0 if none
// Unsigned. Updated with plain writes under the class lock (an Atomics RMW here cost ~15 ns per
// alloc+free pair); stats() reads it with Atomics.load, and aligned Int32 accesses never tear.
const C_CHUNKS_LIVE = 2;
const C_RUN_REF = 3; // next chunk of the current run
const C_RUN_LEFT = 4; // chunks left in the current run

const CONTROL_BYTES = (W_CLASSES + SIZE_CLASS_COUNT * CLASS_WORDS) * 4;
const GROW_STEP_BYTES_DEFAULT = 64 * 1024 * 1024;
const MAX_CHUNK_BYTES_DEFAULT = 2 ** 28;

/**
 * Creates the shared memory of an arena (owner thread only). Throws `InvalidError` on bad options.
 *
 * @example
 * const shared = createArenaShared({ buffer_count: 2, initial_bytes: 1 << 20, max_bytes_per_buffer: 1 << 24 });
 * for (const worker of workers) worker.postMessage({ shared });
 */
export function createArenaShared(options: ArenaOptions): ArenaShared {
  const config = resolveOptions(options);
  const control = new SharedArrayBuffer(CONTROL_BYTES);
  const f64 = new Float64Array(control, 0, CONFIG_F64_COUNT);
  f64[F_MAGIC] = MAGIC;
  f64[F_BUFFER_COUNT] = config.buffer_count;
  f64[F_MAX_BYTES_PER_BUFFER] = config.max_bytes_per_buffer;
  f64[F_GROW_STEP_BYTES] = config.grow_step_bytes;
  f64[F_LIMIT_BYTES] = config.limit_bytes;
  f64[F_MAX_CHUNK_BYTES] = config.max_chunk_bytes;
  new Int32Array(control)[W_USED_UNITS] = 1; // the null ref's 8 bytes
  const buffers: SharedArrayBuffer[] = [];
  for (let b = 0; b < config.buffer_count; b++) {
    const length_bytes = b === 0 ? config.initial_bytes : 0;
    buffers.push(new SharedArrayBuffer(length_bytes, { maxByteLength: config.max_bytes_per_buffer }));
  }
  return { control, buffers };
}

function resolveOptions(options: ArenaOptions): Required<ArenaOptions> {
  const max_bytes_per_buffer = options.max_bytes_per_buffer ?? ARENA_BUFFER_BYTES_MAX;
  const config: Required<ArenaOptions> = {
    buffer_count: options.buffer_count,
    initial_bytes: options.initial_bytes,
    max_bytes_per_buffer,
    grow_step_bytes: options.grow_step_bytes ?? GROW_STEP_BYTES_DEFAULT,
    limit_bytes: options.limit_bytes ?? options.buffer_count * max_bytes_per_buffer,
    max_chunk_bytes: options.max_chunk_bytes ?? Math.min(MAX_CHUNK_BYTES_DEFAULT, max_bytes_per_buffer / 2),
  };
  for (const [name, value] of Object.entries(config)) {
    if (!Number.isSafeInteger(value) || value < 0) throw new InvalidError(`arena ${name} ${value} invalid`);
    if (name !== "buffer_count" && value % CHUNK_ALIGN_BYTES !== 0) {
      throw new InvalidError(`arena ${name} ${value} is not a multiple of ${CHUNK_ALIGN_BYTES}`);
    }
  }
  checkRange("buffer_count", config.buffer_count, 1, ARENA_BUFFER_COUNT_MAX);
  checkRange("max_bytes_per_buffer", max_bytes_per_buffer, 2 * RUN_BYTES, ARENA_BUFFER_BYTES_MAX);
  checkRange("initial_bytes", config.initial_bytes, 0, Math.min(max_bytes_per_buffer, config.limit_bytes));
  checkRange("grow_step_bytes", config.grow_step_bytes, CHUNK_ALIGN_BYTES, max_bytes_per_buffer);
  checkRange("limit_bytes", config.limit_bytes, 0, config.buffer_count * max_bytes_per_buffer);
  checkRange("max_chunk_bytes", config.max_chunk_bytes, CHUNK_ALIGN_BYTES, CHUNK_BYTES_MAX);
  const largest_chunk_bytes = classSizeBytes(sizeClassOf(config.max_chunk_bytes));
  if (largest_chunk_bytes > max_bytes_per_buffer - CHUNK_ALIGN_BYTES) {
    throw new InvalidError(`arena max_chunk_bytes ${config.max_chunk_bytes} does not fit in a buffer`);
  }
  return config;
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (value < min || value > max) throw new InvalidError(`arena ${name} ${value} outside [${min}, ${max}]`);
}

/**
 * One thread's handle on an arena. Create one per thread (owner included) over the same
 * {@link ArenaShared}; all methods are safe to call from every thread at once.
 *
 * The per-buffer views `u8`, `u32`, `i32`, `f64` are length-tracking: they follow `grow()` done by any
 * thread, so a ref returned by `alloc` (here or elsewhere) is always readable through them.
 *
 * @example
 * const arena = new Arena(shared);
 * const ref = arena.alloc(16);
 * arena.f64[bufferIndex(ref)]![offsetBytes(ref) >>> 3] = 1.5;
 * arena.free(ref, 16);
 */
export class Arena {
  readonly shared: ArenaShared;
  readonly buffer_count: number;
  readonly max_bytes_per_buffer: number;
  readonly grow_step_bytes: number;
  readonly limit_bytes: number;
  readonly max_chunk_bytes: number;
  /** Byte view of each buffer (length-tracking). */
  readonly u8: Uint8Array[];
  /** Uint32 view of each buffer (length-tracking); index with `offsetBytes(ref) >>> 2`. */
  readonly u32: Uint32Array[];
  /** Int32 view of each buffer (length-tracking); index with `offsetBytes(ref) >>> 2`. */
  readonly i32: Int32Array[];
  /** Float64 view of each buffer (length-tracking); index with `offsetBytes(ref) >>> 3`. */
  readonly f64: Float64Array[];
  private readonly control: Int32Array;

  constructor(shared: ArenaShared) {
    const config = new Float64Array(shared.control, 0, CONFIG_F64_COUNT);
    assert(config[F_MAGIC] === MAGIC, "not an arena control buffer");
    this.shared = shared;
    this.buffer_count = config[F_BUFFER_COUNT]!;
    this.max_bytes_per_buffer = config[F_MAX_BYTES_PER_BUFFER]!;
    this.grow_step_bytes = config[F_GROW_STEP_BYTES]!;
    this.limit_bytes = config[F_LIMIT_BYTES]!;
    this.max_chunk_bytes = config[F_MAX_CHUNK_BYTES]!;
    assert(shared.buffers.length === this.buffer_count, "arena buffer count mismatch");
    this.control = new Int32Array(shared.control);
    this.u8 = shared.buffers.map((buffer) => new Uint8Array(buffer));
    this.u32 = shared.buffers.map((buffer) => new Uint32Array(buffer));
    this.i32 = shared.buffers.map((buffer) => new Int32Array(buffer));
    this.f64 = shared.buffers.map((buffer) => new Float64Array(buffer));
  }

  /**
   * Allocates a chunk of `classSizeBytes(sizeClassOf(size_bytes))` bytes, 8-aligned, with undefined
   * content. Throws `TooLargeError` above `max_chunk_bytes`, `UnavailableError` when out of memory.
   *
   * @example
   * const ref = arena.alloc(300); // 320-byte chunk
   */
  alloc(size_bytes: number): number {
    if (size_bytes > this.max_chunk_bytes) {
      throw new TooLargeError(`chunk of ${size_bytes} bytes is over max_chunk_bytes ${this.max_chunk_bytes}`);
    }
    const cls = sizeClassOf(size_bytes);
    const control = this.control;
    const word = W_CLASSES + cls * CLASS_WORDS;
    lock(control, word + C_LOCK);
    let ref = control[word + C_FREE_HEAD]! >>> 0;
    if (ref !== 0) {
      control[word + C_FREE_HEAD] = this.u32[ref >>> REF_BUFFER_SHIFT]![(ref & REF_UNITS_MASK) * 2]! | 0;
    } else if (control[word + C_RUN_LEFT] !== 0) {
      ref = control[word + C_RUN_REF]! >>> 0;
      control[word + C_RUN_REF] = (ref + CLASS_SIZES_BYTES[cls]! / CHUNK_ALIGN_BYTES) | 0;
      control[word + C_RUN_LEFT]! -= 1;
    } else {
      ref = this.startRun(cls, word);
    }
    control[word + C_CHUNKS_LIVE]! += 1;
    unlock(control, word + C_LOCK);
    return ref;
  }

  /**
   * Returns a chunk to its class's free list; `size_bytes` is the size passed to `alloc`. The allocator
   * may overwrite the chunk's content. Asserts `ref` names an allocated-range chunk.
   *
   * @example
   * arena.free(ref, 300);
   */
  free(ref: number, size_bytes: number): void {
    const cls = sizeClassOf(size_bytes);
    this.assertChunk(ref, cls);
    const control = this.control;
    const word = W_CLASSES + cls * CLASS_WORDS;
    lock(control, word + C_LOCK);
    this.u32[ref >>> REF_BUFFER_SHIFT]![(ref & REF_UNITS_MASK) * 2] = control[word + C_FREE_HEAD]!;
    control[word + C_FREE_HEAD] = ref | 0;
    control[word + C_CHUNKS_LIVE]! -= 1;
    unlock(control, word + C_LOCK);
  }

  /**
   * A snapshot of the arena's counters (each read atomically; the set is not one instant).
   *
   * @example
   * arena.stats().live_bytes // 0 after every chunk is freed
   */
  stats(): ArenaStats {
    const control = this.control;
    let reserved_bytes = 0;
    let bump_bytes = 0;
    let wasted_bytes = 0;
    for (let b = 0; b < this.buffer_count; b++) {
      reserved_bytes += this.shared.buffers[b]!.byteLength;
      bump_bytes += Atomics.load(control, W_USED_UNITS + b) * CHUNK_ALIGN_BYTES;
      wasted_bytes += Atomics.load(control, W_WASTED_UNITS + b) * CHUNK_ALIGN_BYTES;
    }
    let live_bytes = 0;
    let chunks_live = 0;
    for (let cls = 0; cls < SIZE_CLASS_COUNT; cls++) {
      const chunks = Atomics.load(control, W_CLASSES + cls * CLASS_WORDS + C_CHUNKS_LIVE) >>> 0;
      chunks_live += chunks;
      live_bytes += chunks * CLASS_SIZES_BYTES[cls]!;
    }
    return { reserved_bytes, bump_bytes, wasted_bytes, live_bytes, chunks_live };
  }

  /**
   * Carves a new run for class `cls` and returns its first chunk. The class lock is held; if this
   * throws (out of memory) it releases the class lock, so the hot path of `alloc` needs no `finally`.
   */
  private startRun(cls: number, word: number): number {
    const chunk_bytes = CLASS_SIZES_BYTES[cls]!;
    const run_chunks = chunk_bytes <= RUN_BYTES ? Math.floor(RUN_BYTES / chunk_bytes) : 1;
    const control = this.control;
    lock(control, W_BUMP_LOCK);
    let ref: number;
    try {
      ref = this.bump(run_chunks * chunk_bytes);
    } catch (error) {
      unlock(control, word + C_LOCK);
      throw error;
    } finally {
      unlock(control, W_BUMP_LOCK);
    }
    control[word + C_RUN_REF] = (ref + chunk_bytes / CHUNK_ALIGN_BYTES) | 0;
    control[word + C_RUN_LEFT] = run_chunks - 1;
    return ref;
  }

  /** Takes `size_bytes` from the bump region (bump lock held), growing or moving to the next buffer. */
  private bump(size_bytes: number): number {
    const control = this.control;
    for (;;) {
      const b = control[W_BUMP_BUFFER]!;
      const buffer = this.shared.buffers[b]!;
      const used_bytes = control[W_USED_UNITS + b]! * CHUNK_ALIGN_BYTES;
      const end_bytes = used_bytes + size_bytes;
      if (end_bytes > this.max_bytes_per_buffer) {
        this.retireBuffer(b, used_bytes);
        continue;
      }
      if (end_bytes > buffer.byteLength) this.grow(buffer, end_bytes);
      Atomics.store(control, W_USED_UNITS + b, end_bytes / CHUNK_ALIGN_BYTES);
      return makeRef(b, used_bytes);
    }
  }

  /** Moves the bump cursor past buffer `b`, accounting its unused tail as wasted. */
  private retireBuffer(b: number, used_bytes: number): void {
    if (b + 1 >= this.buffer_count) throw this.outOfMemory();
    const wasted_bytes = this.shared.buffers[b]!.byteLength - used_bytes;
    Atomics.store(this.control, W_WASTED_UNITS + b, wasted_bytes / CHUNK_ALIGN_BYTES);
    Atomics.store(this.control, W_BUMP_BUFFER, b + 1);
  }

  /** Grows `buffer` to hold `end_bytes` (≤ max_bytes_per_buffer), by at least one step, within the limit. */
  private grow(buffer: SharedArrayBuffer, end_bytes: number): void {
    assert(end_bytes <= this.max_bytes_per_buffer && end_bytes > buffer.byteLength, "grow out of range");
    let others_bytes = 0;
    for (const other of this.shared.buffers) others_bytes += other.byteLength;
    others_bytes -= buffer.byteLength;
    const room_bytes = Math.min(this.max_bytes_per_buffer, this.limit_bytes - others_bytes);
    if (end_bytes > room_bytes) throw this.outOfMemory();
    const target_bytes = Math.min(room_bytes, Math.max(end_bytes, buffer.byteLength + this.grow_step_bytes));
    try {
      buffer.grow(target_bytes);
    } catch (cause) {
      throw new UnavailableError(`out of memory: growing an arena buffer to ${target_bytes} bytes failed`, {
        cause,
      });
    }
  }

  private outOfMemory(): UnavailableError {
    return new UnavailableError(`out of memory: arena limit ${this.limit_bytes} bytes reached`);
  }

  /**
   * Asserts `ref` is a non-null chunk of class `cls` inside the bumped part of its buffer. The bump
   * cursor is read plainly: the caller got `ref` after it was carved, so it sees the cursor past it.
   */
  private assertChunk(ref: number, cls: number): void {
    const b = ref >>> REF_BUFFER_SHIFT;
    const valid =
      ref >>> 0 === ref &&
      ref !== 0 &&
      b < this.buffer_count &&
      (ref & REF_UNITS_MASK) + CLASS_SIZES_BYTES[cls]! / CHUNK_ALIGN_BYTES <= this.control[W_USED_UNITS + b]!;
    assert(valid, "free of a ref that is not an allocated chunk of its size class");
  }
}
