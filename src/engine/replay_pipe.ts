/**
 * A one-way pipe of recovered versions from the recovering thread (which reads and verifies
 * `data.db` and the WAL) to a replay worker (which links them into the table), so that the two
 * halves of recovery run on two cores. Measured on 1M keys: reading and verifying is about a third
 * of recovery, linking (allocation, page faults, the index) the rest.
 *
 * The pipe is a ring in a SharedArrayBuffer. Each message is 8-aligned: a 32-byte header (u32
 * key_length, u32 value_length or DEL_MARK, u32 key hash, u32 0, f64 lsn, f64 expiry_unix_ms) then
 * the key and value. The sender hashes the key while it is in its cache (and the worker is the
 * busier side).
 * A key_length of WRAP_MARK sends the reader back to the ring's start; BARRIER_MARK asks it to link
 * everything it holds before it reports the barrier consumed. Positions count modulo twice the ring
 * length, so a full ring and an empty one differ. Each side publishes its position every
 * PUBLISH_BYTES and whenever it is about to wait, then `Atomics.notify`s the other.
 *
 * A version larger than a quarter of the ring does not go through it: the sink waits until the
 * worker has linked everything before it, then links that one version itself (the worker is idle
 * meanwhile, so the table still has one writer at a time).
 *
 * A failure in the worker (out of memory, a bug) is written into the control buffer; the sink
 * throws it on the recovering thread at its next wait. A worker that stops without a word (its thread
 * ended) is noticed when neither its position nor its heartbeat moved for STALL_TIMEOUT_MS while
 * there is work: the sink throws. A worker that has not started after START_TIMEOUT_MS is replaced:
 * the sink takes the start word from it (a compare-and-swap, so exactly one of them wins), links what
 * the ring holds and links everything after it on its own thread, as recovery without a worker does.
 *
 * The table has one writer at a time: the worker, except while it waits at a barrier the sink has
 * seen consumed (the sink links an oversized version then), and after a takeover (no worker).
 *
 * @example
 * const shared = createPipeShared();
 * // worker: drainPipe(shared, new Loader(table));
 * const sink = new PipeSink(shared, table, () => worker.terminate());
 * sink.set(bytes, ko, kl, vo, vl, lsn, 0);
 * sink.flush(); // linked
 * sink.close();
 */
import { copyBytes } from "./bytes.ts";
import { UnavailableError } from "./errors.ts";
import { hashKey } from "./hash.ts";
import { Loader, type ReplaySink } from "./replay_loader.ts";
import type { Table } from "./table.ts";

/** Ring length of {@link createPipeShared} by default. */
export const PIPE_RING_BYTES = 8 << 20;
/** Bytes a side moves on before it publishes its position. */
const PUBLISH_BYTES = 64 << 10;
const HEADER_BYTES = 32;
const WRAP_MARK = 0xffffffff;
const BARRIER_MARK = 0xfffffffe;
const DEL_MARK = 0xffffffff;
/** A wait re-checks the other side's health this often. */
const WAIT_MS = 50;
/** A worker that has not started after this long is replaced by the sink itself (default). */
const START_TIMEOUT_MS = 10_000;
/** A started worker whose position and heartbeat stood still this long, with work waiting, has died. */
const STALL_TIMEOUT_MS = 30_000;

// Control words (Int32), then the failure text.
const C_WRITE = 0;
const C_READ = 1;
const C_STOP = 2;
const C_STARTED = 3;
const C_FAILED = 4;
const C_ERROR_LENGTH = 5;
/** Bumped by the worker on every pass of its loop. */
const C_HEARTBEAT = 6;
const CONTROL_WORDS = 8;
/** C_STARTED: 0 not yet, 1 the worker started, TAKEN_OVER the sink links on its own thread. */
const TAKEN_OVER = -1;
const ERROR_TEXT_BYTES = 1024;

/** The shared memory of a pipe: post it to the worker. */
export interface PipeShared {
  readonly control: SharedArrayBuffer;
  readonly ring: SharedArrayBuffer;
}

/**
 * Creates a pipe's shared memory (`ring_bytes`: a multiple of 8, at least 1 KiB).
 *
 * @example
 * worker.postMessage({ pipe: createPipeShared() });
 */
export function createPipeShared(ring_bytes: number = PIPE_RING_BYTES): PipeShared {
  if (
    !Number.isSafeInteger(ring_bytes) ||
    ring_bytes < 1024 ||
    ring_bytes % 8 !== 0 ||
    ring_bytes > 1 << 29
  ) {
    throw new RangeError(`pipe ring of ${ring_bytes} bytes: want a multiple of 8 in [1 KiB, 512 MiB]`);
  }
  return {
    control: new SharedArrayBuffer(CONTROL_WORDS * 4 + ERROR_TEXT_BYTES),
    ring: new SharedArrayBuffer(ring_bytes),
  };
}

/** Ring positions and the views both ends read and write. */
class Ring {
  readonly control: Int32Array;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  readonly length_bytes: number;

  constructor(readonly shared: PipeShared) {
    this.control = new Int32Array(shared.control, 0, CONTROL_WORDS);
    this.u8 = new Uint8Array(shared.ring);
    this.u32 = new Uint32Array(shared.ring);
    this.f64 = new Float64Array(shared.ring);
    this.length_bytes = shared.ring.byteLength;
  }

  offsetOf(position: number): number {
    return position >= this.length_bytes ? position - this.length_bytes : position;
  }

  advance(position: number, bytes: number): number {
    const next = position + bytes;
    return next >= 2 * this.length_bytes ? next - 2 * this.length_bytes : next;
  }

  /** Bytes written and not yet consumed between the two positions. */
  used(write: number, read: number): number {
    const d = write - read;
    return d < 0 ? d + 2 * this.length_bytes : d;
  }

  publish(word: number, position: number): void {
    Atomics.store(this.control, word, position);
    Atomics.notify(this.control, word);
  }
}

/** Size of a message holding `key_bytes + value_bytes`, 8-aligned. */
function messageBytes(key_bytes: number, value_bytes: number): number {
  return (HEADER_BYTES + key_bytes + value_bytes + 7) & ~7;
}

/** The recovering thread's end: a {@link ReplaySink} that writes into the ring. */
export class PipeSink implements ReplaySink {
  private readonly ring: Ring;
  private readonly direct: Loader;
  private readonly max_message_bytes: number;
  private readonly log: (line: string) => void;
  private write_pos = 0;
  private published_pos = 0;
  private read_pos = 0;
  private readonly started_ms = performance.now();
  /** The worker never started: this thread links everything (see the module doc). */
  private taken_over = false;
  /** The worker's position and heartbeat when last seen moving, and when. */
  private seen_read_pos = 0;
  private seen_heartbeat = 0;
  private progress_ms = performance.now();
  private readonly start_timeout_ms: number;
  private readonly stall_timeout_ms: number;

  /**
   * `table` is the table the worker links into (this end links oversized versions into it
   * itself); `stop` ends the worker, {@link close} calls it. `log` hears of a takeover. The
   * timeouts are for tests.
   */
  constructor(
    shared: PipeShared,
    table: Table,
    private readonly stop: () => void,
    options: {
      readonly log?: (line: string) => void;
      readonly start_timeout_ms?: number;
      readonly stall_timeout_ms?: number;
    } = {},
  ) {
    this.log = options.log ?? (() => {});
    this.start_timeout_ms = options.start_timeout_ms ?? START_TIMEOUT_MS;
    this.stall_timeout_ms = options.stall_timeout_ms ?? STALL_TIMEOUT_MS;
    this.ring = new Ring(shared);
    this.direct = new Loader(table);
    this.max_message_bytes = this.ring.length_bytes / 4;
  }

  set(bytes: Uint8Array, ko: number, kl: number, vo: number, vl: number, lsn: number, expiry: number): void {
    this.put(bytes, ko, kl, vo, vl, lsn, expiry, false);
  }

  del(bytes: Uint8Array, ko: number, kl: number, lsn: number): void {
    this.put(bytes, ko, kl, ko + kl, 0, lsn, 0, true);
  }

  /** Sends one version, or links it here if it is too large for the ring (see the module doc). */
  private put(
    bytes: Uint8Array,
    ko: number,
    kl: number,
    vo: number,
    vl: number,
    lsn: number,
    expiry: number,
    tombstone: boolean,
  ): void {
    const size = messageBytes(kl, vl);
    const at = this.taken_over || size > this.max_message_bytes ? -1 : this.reserve(size);
    if (at < 0 || this.taken_over) {
      // Linked here: after a takeover, or an oversized version once the worker linked all before it.
      if (!this.taken_over) this.flush();
      if (tombstone) this.direct.del(bytes, ko, kl, lsn);
      else this.direct.set(bytes, ko, kl, vo, vl, lsn, expiry);
      if (!this.taken_over) this.direct.flush();
      return;
    }
    this.writeHeader(at, kl, tombstone ? DEL_MARK : vl, hashKey(bytes, ko, ko + kl), lsn, expiry);
    const u8 = this.ring.u8;
    if (vo === ko + kl) copyBytes(u8, at + HEADER_BYTES, bytes, ko, kl + vl);
    else {
      copyBytes(u8, at + HEADER_BYTES, bytes, ko, kl);
      copyBytes(u8, at + HEADER_BYTES + kl, bytes, vo, vl);
    }
    this.commit(size);
  }

  /** Sends a barrier and waits until the worker has consumed it: everything before is linked. */
  flush(): void {
    const at = this.taken_over ? -1 : this.reserve(HEADER_BYTES);
    if (this.taken_over) {
      this.direct.flush();
      return;
    }
    this.ring.u32[at >>> 2] = BARRIER_MARK;
    this.commit(HEADER_BYTES);
    this.ring.publish(C_WRITE, this.write_pos);
    this.published_pos = this.write_pos;
    while (this.read_pos !== this.write_pos && !this.taken_over) this.waitForReader();
    if (this.taken_over) this.direct.flush();
  }

  /** Stops the worker (after {@link flush}, or to abandon a failed recovery). */
  close(): void {
    this.ring.publish(C_STOP, 1);
    Atomics.notify(this.ring.control, C_WRITE);
    this.stop();
  }

  private writeHeader(at: number, kl: number, vl: number, h: number, lsn: number, expiry: number): void {
    const ring = this.ring;
    ring.u32[at >>> 2] = kl;
    ring.u32[(at >>> 2) + 1] = vl;
    ring.u32[(at >>> 2) + 2] = h;
    ring.u32[(at >>> 2) + 3] = 0;
    ring.f64[(at >>> 3) + 2] = lsn;
    ring.f64[(at >>> 3) + 3] = expiry;
  }

  /**
   * Waits for room for `size` bytes (wrapping to the ring's start if need be); returns the offset,
   * or -1 if the sink took over from a worker that never started (nothing goes into the ring then).
   */
  private reserve(size: number): number {
    const ring = this.ring;
    const offset = ring.offsetOf(this.write_pos);
    const wrap_bytes = offset + size > ring.length_bytes ? ring.length_bytes - offset : 0;
    while (ring.length_bytes - ring.used(this.write_pos, this.read_pos) < wrap_bytes + size) {
      this.read_pos = Atomics.load(ring.control, C_READ);
      if (ring.length_bytes - ring.used(this.write_pos, this.read_pos) >= wrap_bytes + size) break;
      this.waitForReader();
      if (this.taken_over) return -1;
    }
    if (wrap_bytes === 0) return offset;
    ring.u32[offset >>> 2] = WRAP_MARK;
    this.write_pos = ring.advance(this.write_pos, wrap_bytes);
    return 0;
  }

  private commit(size: number): void {
    this.write_pos = this.ring.advance(this.write_pos, size);
    if (this.ring.used(this.write_pos, this.published_pos) >= PUBLISH_BYTES) {
      this.ring.publish(C_WRITE, this.write_pos);
      this.published_pos = this.write_pos;
    }
  }

  /** Publishes what is written, waits for the reader to move, and throws what the worker reported. */
  private waitForReader(): void {
    const ring = this.ring;
    if (this.published_pos !== this.write_pos) {
      ring.publish(C_WRITE, this.write_pos);
      this.published_pos = this.write_pos;
    }
    Atomics.wait(ring.control, C_READ, this.read_pos, WAIT_MS);
    this.read_pos = Atomics.load(ring.control, C_READ);
    if (Atomics.load(ring.control, C_FAILED) !== 0) throw new UnavailableError(failureText(ring));
    const now_ms = performance.now();
    const started = Atomics.load(ring.control, C_STARTED);
    if (started === 0) {
      if (now_ms - this.started_ms > this.start_timeout_ms) this.takeOver();
      return;
    }
    const heartbeat = Atomics.load(ring.control, C_HEARTBEAT);
    if (heartbeat !== this.seen_heartbeat || this.read_pos !== this.seen_read_pos) {
      this.seen_heartbeat = heartbeat;
      this.seen_read_pos = this.read_pos;
      this.progress_ms = now_ms;
    } else if (now_ms - this.progress_ms > this.stall_timeout_ms) {
      throw new UnavailableError(
        `recovery: the replay worker stopped (no progress for ${this.stall_timeout_ms} ms)`,
      );
    }
  }

  /**
   * The worker did not start in time: takes the start word from it (if it has not just started),
   * links what the ring holds, and links everything after it on this thread.
   */
  private takeOver(): void {
    if (Atomics.compareExchange(this.ring.control, C_STARTED, 0, TAKEN_OVER) !== 0) return;
    this.log(`recovery: the replay worker did not start within ${this.start_timeout_ms} ms; linking here`);
    const reader = new PipeReader(this.ring, this.direct);
    while (reader.read_pos !== this.write_pos) reader.consume();
    this.read_pos = this.write_pos;
    this.taken_over = true;
  }
}

function failureText(ring: Ring): string {
  const length = Atomics.load(ring.control, C_ERROR_LENGTH);
  const text = new Uint8Array(ring.shared.control, CONTROL_WORDS * 4, length).slice();
  return `recovery: the replay worker failed: ${new TextDecoder().decode(text)}`;
}

/**
 * The worker's end: hands every message to `loader` (over the shared table) until the recovering
 * thread closes the pipe. A throw is reported through the pipe, then rethrown.
 *
 * @example
 * drainPipe(event.data.pipe, new Loader(new Table(shared.table, new Arena(shared.arena))));
 */
export function drainPipe(shared: PipeShared, loader: Loader): void {
  const ring = new Ring(shared);
  if (Atomics.compareExchange(ring.control, C_STARTED, 0, 1) !== 0) return; // the sink took over
  Atomics.notify(ring.control, C_READ);
  try {
    drain(ring, loader);
  } catch (error) {
    const text = new TextEncoder().encode(error instanceof Error ? error.message : String(error));
    const length = Math.min(text.length, ERROR_TEXT_BYTES);
    new Uint8Array(shared.control, CONTROL_WORDS * 4, length).set(text.subarray(0, length));
    Atomics.store(ring.control, C_ERROR_LENGTH, length);
    ring.publish(C_FAILED, 1);
    Atomics.notify(ring.control, C_READ);
    throw error;
  }
}

function drain(ring: Ring, loader: Loader): void {
  const reader = new PipeReader(ring, loader);
  for (;;) {
    Atomics.add(ring.control, C_HEARTBEAT, 1);
    const write_pos = Atomics.load(ring.control, C_WRITE);
    if (reader.read_pos === write_pos) {
      reader.publish();
      if (Atomics.load(ring.control, C_STOP) !== 0) return;
      Atomics.wait(ring.control, C_WRITE, write_pos, WAIT_MS);
      continue;
    }
    while (reader.read_pos !== write_pos) reader.consume();
  }
}

/** The worker's position in the ring and what it last published. */
class PipeReader {
  read_pos = 0;
  private published_pos = 0;

  constructor(
    private readonly ring: Ring,
    private readonly loader: Loader,
  ) {}

  publish(): void {
    if (this.published_pos === this.read_pos) return;
    this.ring.publish(C_READ, this.read_pos);
    this.published_pos = this.read_pos;
  }

  /** Handles the message at `read_pos` and moves past it. */
  consume(): void {
    const ring = this.ring;
    const at = ring.offsetOf(this.read_pos);
    const kl = ring.u32[at >>> 2]!;
    if (kl === WRAP_MARK) {
      this.read_pos = ring.advance(this.read_pos, ring.length_bytes - at);
      return;
    }
    if (kl === BARRIER_MARK) {
      this.loader.flush();
      this.read_pos = ring.advance(this.read_pos, HEADER_BYTES);
      this.publish();
      return;
    }
    const vl = ring.u32[(at >>> 2) + 1]!;
    const h = ring.u32[(at >>> 2) + 2]!;
    const lsn = ring.f64[(at >>> 3) + 2]!;
    const key_at = at + HEADER_BYTES;
    if (vl === DEL_MARK) {
      this.loader.delHashed(h, ring.u8, key_at, kl, lsn);
      this.read_pos = ring.advance(this.read_pos, messageBytes(kl, 0));
    } else {
      const expiry = ring.f64[(at >>> 3) + 3]!;
      this.loader.setHashed(h, ring.u8, key_at, kl, key_at + kl, vl, lsn, expiry); // key, value adjacent: one copy
      this.read_pos = ring.advance(this.read_pos, messageBytes(kl, vl));
    }
    if (ring.used(this.read_pos, this.published_pos) >= PUBLISH_BYTES) this.publish();
  }
}
