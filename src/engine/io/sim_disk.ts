/**
 * {@link SimDisk}: a deterministic simulated disk implementing {@link Io}, for power-cut, kill -9 and
 * fault-injection tests. Single-threaded: simulation tests run the whole engine inline on it.
 *
 * Model
 * - Files are inodes holding `durable` bytes plus an ordered list of pending (unsynced) operations
 *   (write at an offset, truncate). `read`/`size` see the current state — durable bytes with every
 *   pending op applied — like a page cache. `sync(file)` makes all pending ops of the inode durable.
 * - Namespace: a current map (path → inode) and a durable one. `open({create})`, `rename` and
 *   `unlink` change the current map; `syncDir(dir)` copies the current entries of that directory into
 *   the durable map (entries added, renamed into, or removed from it). A rename across directories
 *   needs a `syncDir` of both. Simplification: directories made by `mkdirp` are durable at once and
 *   are never removed; renaming a directory is not modelled (throws `ENOTSUP`).
 * - {@link SimDisk.powerCut}: power loss. The namespace reverts to its durable version and inodes no
 *   longer named there vanish. Each remaining inode keeps a random PREFIX of its pending ops: ops
 *   0..k-1 applied, op k — if a write — TORN at a random multiple of 512 bytes (counted from file
 *   offset 0) strictly inside the write (its bytes below the boundary survive, the rest is lost; a
 *   write spanning no such boundary is lost whole), ops after k dropped; k is uniform in 0..n (k = n:
 *   all survive). This assumes in-order writeback of a file's unsynced writes: a later write never
 *   survives while an earlier one is lost, and a torn write never leaves garbage, only old bytes.
 *   The result becomes durable; every open FileId becomes invalid (`EBADF`).
 * - {@link SimDisk.crash}: process crash (kill -9). The page cache survives: current state is kept
 *   and pending ops stay pending; open FileIds become invalid (`EBADF`).
 * - Faults: a hook set by {@link SimDisk.injectFault} is consulted before every operation (after the
 *   FileId is validated) with `{op, path}` (`op` is the {@link Io} method name; for `rename` the path
 *   is `from`). If it returns an errno name the operation throws {@link IoError} with it, without
 *   effect, except: a failed `write` first applies a random prefix (possibly empty) of its data; a
 *   failed `close` still releases the FileId (as on Linux); a failed `sync` DROPS the file's pending
 *   ops from writeback, as Linux does after a failed fsync: reads still see them, but they never
 *   become durable, and a later successful `sync` does not bring them back.
 * - Capacity (optional): the sum of the current sizes of files that are named or open may not exceed
 *   `capacity_bytes`; a write that would exceed it writes the prefix that fits and throws `ENOSPC`.
 *   Holes count as used; `truncate` is not limited (sparse).
 * - Paths are POSIX-style; relative ones are resolved against `/`. FileIds are never reused.
 *
 * @example
 * const disk = new SimDisk({ rng: prng(seed) });
 * disk.mkdirp("/d");
 * const f = disk.open("/d/a", { create: true });
 * disk.write(f, bytes, 0);
 * disk.powerCut();            // "/d/a" was never dir-synced: it vanishes
 * disk.exists("/d/a");        // false
 */
import { assert, IoError } from "../errors.ts";
import type { FileId, Io, OpenOptions } from "./io.ts";
import { prng, randomInt } from "./prng.ts";

/** Torn writes break at multiples of this many bytes of the file (a disk sector). */
export const SECTOR_SIZE_BYTES = 512;

/** Counters for tests. `bytes_written` includes prefixes applied by failed writes. */
export interface SimDiskStats {
  writes: number;
  syncs: number;
  dir_syncs: number;
  bytes_written: number;
}

/** What the fault hook sees before each operation. */
export interface SimDiskCall {
  readonly op: string;
  readonly path: string;
}

/** Returns an errno name to make the call fail, or `undefined` to let it run. */
export type FaultHook = (call: SimDiskCall) => string | undefined;

export interface SimDiskOptions {
  /** Uniform [0, 1) source for power cuts and failed-write prefixes. Default `prng(0)`. */
  readonly rng?: () => number;
  readonly capacity_bytes?: number;
}

type PendingOp =
  | { readonly kind: "write"; readonly offset_bytes: number; readonly data: Uint8Array }
  | { readonly kind: "truncate"; readonly size_bytes: number };

/** Growable file contents. Invariant: every byte at or past `size_bytes` is zero. */
class Content {
  private bytes: Uint8Array;
  size_bytes: number;

  constructor(bytes = new Uint8Array(0), size_bytes = 0) {
    assert(size_bytes <= bytes.length);
    this.bytes = bytes;
    this.size_bytes = size_bytes;
  }

  apply(op: PendingOp): void {
    if (op.kind === "write") this.write(op.offset_bytes, op.data);
    else this.truncate(op.size_bytes);
  }

  /** Like pwrite: an empty write does not extend the file. */
  write(offset_bytes: number, data: Uint8Array): void {
    if (data.length === 0) return;
    const end_bytes = offset_bytes + data.length;
    this.reserve(end_bytes);
    this.bytes.set(data, offset_bytes);
    this.size_bytes = Math.max(this.size_bytes, end_bytes);
  }

  truncate(size_bytes: number): void {
    if (size_bytes < this.size_bytes) this.bytes.fill(0, size_bytes, this.size_bytes);
    else this.reserve(size_bytes);
    this.size_bytes = size_bytes;
  }

  read(into: Uint8Array, position_bytes: number): number {
    const count = Math.max(0, Math.min(into.length, this.size_bytes - position_bytes));
    into.set(this.bytes.subarray(position_bytes, position_bytes + count));
    return count;
  }

  clone(): Content {
    return new Content(this.bytes.slice(0, this.size_bytes), this.size_bytes);
  }

  private reserve(length_bytes: number): void {
    if (length_bytes <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(length_bytes, this.bytes.length * 2));
    grown.set(this.bytes.subarray(0, this.size_bytes));
    this.bytes = grown;
  }
}

interface Inode {
  durable: Content;
  current: Content;
  pending: PendingOp[];
}

interface Handle {
  readonly inode: Inode;
  readonly path: string;
}

/** Resolves `.`/`..`/empty segments; relative paths are taken relative to `/`. */
function normalise(path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

function assertOffset(offset_bytes: number): void {
  assert(Number.isSafeInteger(offset_bytes) && offset_bytes >= 0, `bad offset ${offset_bytes}`);
}

/**
 * The part of a write that survives a power cut tearing it: the bytes below a random multiple of
 * {@link SECTOR_SIZE_BYTES} strictly inside the write, or none if it spans no such boundary.
 */
function tornPrefix(op: PendingOp & { kind: "write" }, rng: () => number): Uint8Array {
  const end_bytes = op.offset_bytes + op.data.length;
  const first = Math.floor(op.offset_bytes / SECTOR_SIZE_BYTES) + 1;
  const last = Math.ceil(end_bytes / SECTOR_SIZE_BYTES) - 1;
  if (last < first) return op.data.subarray(0, 0);
  const boundary_bytes = (first + randomInt(rng, last - first + 1)) * SECTOR_SIZE_BYTES;
  return op.data.subarray(0, boundary_bytes - op.offset_bytes);
}

/**
 * Simulated disk with a volatile page cache, power cuts, torn writes and injected faults.
 * See the module comment for the exact model.
 *
 * @example
 * const disk = new SimDisk({ rng: prng(1), capacity_bytes: 4096 });
 * const f = disk.open("/a", { create: true });
 * disk.write(f, data, 0);
 * disk.sync(f);
 * disk.syncDir("/");
 * disk.powerCut(); // "/a" and its bytes survive
 */
export class SimDisk implements Io {
  readonly stats: SimDiskStats = { writes: 0, syncs: 0, dir_syncs: 0, bytes_written: 0 };
  private readonly rng: () => number;
  private capacity_bytes: number | undefined;
  private fault: FaultHook | undefined;
  private readonly dirs = new Set<string>(["/"]);
  private names = new Map<string, Inode>();
  private readonly durable_names = new Map<string, Inode>();
  private readonly files = new Map<FileId, Handle>();
  private next_file: FileId = 3;

  constructor(options: SimDiskOptions = {}) {
    this.rng = options.rng ?? prng(0);
    this.setCapacity(options.capacity_bytes);
  }

  /** Makes every later operation consult `hook` first (replaces any previous hook). */
  injectFault(hook: FaultHook): void {
    this.fault = hook;
  }

  clearFaults(): void {
    this.fault = undefined;
  }

  /** Limits the sum of current file sizes; `undefined` removes the limit. */
  setCapacity(capacity_bytes: number | undefined): void {
    assert(capacity_bytes === undefined || (Number.isSafeInteger(capacity_bytes) && capacity_bytes >= 0));
    this.capacity_bytes = capacity_bytes;
  }

  /** Power loss: keeps only durable state plus a random torn prefix of each file's pending ops. */
  powerCut(rng: () => number = this.rng): void {
    this.files.clear();
    this.names = new Map(this.durable_names);
    for (const inode of new Set(this.durable_names.values())) {
      const survivors = randomInt(rng, inode.pending.length + 1);
      for (const op of inode.pending.slice(0, survivors)) inode.durable.apply(op);
      const torn = inode.pending[survivors];
      if (torn?.kind === "write") inode.durable.write(torn.offset_bytes, tornPrefix(torn, rng));
      inode.pending = [];
      inode.current = inode.durable.clone();
    }
  }

  /** Process crash (kill -9): the page cache survives, open FileIds become invalid. */
  crash(): void {
    this.files.clear();
  }

  open(path: string, options: OpenOptions = {}): FileId {
    path = normalise(path);
    this.check("open", path);
    if (this.dirs.has(path)) throw new IoError("EISDIR", "open", path);
    let inode = this.names.get(path);
    if (inode === undefined) {
      if (!options.create || !this.dirs.has(parentOf(path))) throw new IoError("ENOENT", "open", path);
      inode = { durable: new Content(), current: new Content(), pending: [] };
      this.names.set(path, inode);
    }
    if (options.truncate) this.push(inode, { kind: "truncate", size_bytes: 0 });
    const file = this.next_file++;
    this.files.set(file, { inode, path });
    return file;
  }

  /** The path of each open FileId, one entry per FileId (tests: what a component holds open). */
  openPaths(): string[] {
    return [...this.files.values()].map((handle) => handle.path);
  }

  close(file: FileId): void {
    const { path } = this.handle(file, "close");
    this.files.delete(file);
    this.check("close", path);
  }

  write(file: FileId, data: Uint8Array, position_bytes: number): void {
    assertOffset(position_bytes);
    const { inode, path } = this.handle(file, "write");
    const errno = this.fault?.({ op: "write", path });
    const wanted_bytes = errno === undefined ? data.length : randomInt(this.rng, data.length + 1);
    const count_bytes = Math.min(wanted_bytes, this.fittingBytes(inode, data.length, position_bytes));
    if (count_bytes > 0) {
      const written = data.slice(0, count_bytes);
      this.push(inode, { kind: "write", offset_bytes: position_bytes, data: written });
      this.stats.bytes_written += count_bytes;
    }
    if (errno !== undefined) throw new IoError(errno, "write", path);
    if (count_bytes < data.length) throw new IoError("ENOSPC", "write", path);
    this.stats.writes++;
  }

  read(file: FileId, into: Uint8Array, position_bytes: number): number {
    assertOffset(position_bytes);
    const { inode, path } = this.handle(file, "read");
    this.check("read", path);
    return inode.current.read(into, position_bytes);
  }

  size(file: FileId): number {
    const { inode, path } = this.handle(file, "size");
    this.check("size", path);
    return inode.current.size_bytes;
  }

  truncate(file: FileId, size_bytes: number): void {
    assertOffset(size_bytes);
    const { inode, path } = this.handle(file, "truncate");
    this.check("truncate", path);
    this.push(inode, { kind: "truncate", size_bytes });
  }

  sync(file: FileId): void {
    const { inode, path } = this.handle(file, "sync");
    const pending = inode.pending;
    inode.pending = [];
    this.check("sync", path);
    for (const op of pending) inode.durable.apply(op);
    this.stats.syncs++;
  }

  syncDir(path: string): void {
    path = normalise(path);
    this.check("syncDir", path);
    if (!this.dirs.has(path)) throw new IoError("ENOENT", "syncDir", path);
    for (const name of this.durable_names.keys()) {
      if (parentOf(name) === path && !this.names.has(name)) this.durable_names.delete(name);
    }
    for (const [name, inode] of this.names) {
      if (parentOf(name) === path) this.durable_names.set(name, inode);
    }
    this.stats.dir_syncs++;
  }

  rename(from: string, to: string): void {
    from = normalise(from);
    to = normalise(to);
    this.check("rename", from);
    if (this.dirs.has(from)) throw new IoError("ENOTSUP", "rename", from);
    const inode = this.names.get(from);
    if (inode === undefined) throw new IoError("ENOENT", "rename", from);
    if (this.dirs.has(to)) throw new IoError("EISDIR", "rename", to);
    if (!this.dirs.has(parentOf(to))) throw new IoError("ENOENT", "rename", to);
    this.names.delete(from);
    this.names.set(to, inode);
  }

  unlink(path: string): void {
    path = normalise(path);
    this.check("unlink", path);
    if (this.dirs.has(path)) throw new IoError("EISDIR", "unlink", path);
    if (!this.names.delete(path)) throw new IoError("ENOENT", "unlink", path);
  }

  exists(path: string): boolean {
    path = normalise(path);
    this.check("exists", path);
    return this.dirs.has(path) || this.names.has(path);
  }

  list(dir: string): string[] {
    dir = normalise(dir);
    this.check("list", dir);
    if (!this.dirs.has(dir)) throw new IoError(this.names.has(dir) ? "ENOTDIR" : "ENOENT", "list", dir);
    const entries = [...this.dirs, ...this.names.keys()].filter((p) => p !== "/" && parentOf(p) === dir);
    return entries.map((p) => p.slice(p.lastIndexOf("/") + 1)).sort();
  }

  mkdirp(dir: string): void {
    dir = normalise(dir);
    this.check("mkdirp", dir);
    let prefix = "";
    for (const part of dir
      .split("/")
      .slice(1)
      .filter((p) => p !== "")) {
      prefix = `${prefix}/${part}`;
      if (this.names.has(prefix)) throw new IoError(prefix === dir ? "EEXIST" : "ENOTDIR", "mkdirp", dir);
      this.dirs.add(prefix);
    }
  }

  private handle(file: FileId, op: string): Handle {
    const handle = this.files.get(file);
    if (handle === undefined) throw new IoError("EBADF", op, `fd ${file}`);
    return handle;
  }

  /** Throws the injected fault for this call, if any. */
  private check(op: string, path: string): void {
    const errno = this.fault?.({ op, path });
    if (errno !== undefined) throw new IoError(errno, op, path);
  }

  private push(inode: Inode, op: PendingOp): void {
    inode.pending.push(op);
    inode.current.apply(op);
  }

  /** How many leading bytes of a write of `length_bytes` at `position_bytes` fit the capacity. */
  private fittingBytes(inode: Inode, length_bytes: number, position_bytes: number): number {
    if (this.capacity_bytes === undefined) return length_bytes;
    const free_bytes = Math.max(0, this.capacity_bytes - this.usedBytes());
    const limit_bytes = inode.current.size_bytes + free_bytes;
    return Math.max(0, Math.min(length_bytes, limit_bytes - position_bytes));
  }

  /** Sum of the current sizes of files that are named or open. */
  private usedBytes(): number {
    const live = new Set([...this.names.values(), ...[...this.files.values()].map((h) => h.inode)]);
    let used_bytes = 0;
    for (const inode of live) used_bytes += inode.current.size_bytes;
    return used_bytes;
  }
}
