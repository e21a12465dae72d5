/**
 * An in-memory Io for unit tests that read or write files without a disk model: files are growable
 * byte arrays (`files`, by path); `calls` counts writes, syncs and closes so a test can check the
 * write pattern; `openCount` says whether every file was closed. No faults and no page cache: for
 * those, SimDisk (src/engine/io/sim_disk.ts).
 *
 * @example
 * const io = new MemIo();
 * io.files.set("/data/wal/00000000000000000001.wal", bytes);
 * readSegment(io, "/data/wal/00000000000000000001.wal", options, onRecord);
 */
import { IoError } from "../../../src/engine/errors.ts";
import type { FileId, Io, OpenOptions } from "../../../src/engine/io/io.ts";

export class MemIo implements Io {
  readonly files = new Map<string, Uint8Array>();
  readonly calls = { write: 0, sync: 0, close: 0 };
  private readonly handles = new Map<FileId, string>();
  private next_id = 1;

  open(path: string, options?: OpenOptions): FileId {
    if (!this.files.has(path) && !options?.create) throw new IoError("ENOENT", "open", path);
    if (!this.files.has(path) || options?.truncate) this.files.set(path, new Uint8Array(0));
    this.handles.set(this.next_id, path);
    return this.next_id++;
  }
  close(file: FileId): void {
    this.calls.close++;
    this.handles.delete(file);
  }
  write(file: FileId, data: Uint8Array, position_bytes: number): void {
    this.calls.write++;
    const path = this.pathOf(file);
    const old = this.files.get(path)!;
    const end = position_bytes + data.length;
    if (end > old.length) {
      const grown = new Uint8Array(end);
      grown.set(old);
      this.files.set(path, grown);
    }
    this.files.get(path)!.set(data, position_bytes);
  }
  read(file: FileId, into: Uint8Array, position_bytes: number): number {
    const data = this.files.get(this.pathOf(file))!;
    const n = Math.max(0, Math.min(into.length, data.length - position_bytes));
    into.set(data.subarray(position_bytes, position_bytes + n));
    return n;
  }
  size(file: FileId): number {
    return this.files.get(this.pathOf(file))!.length;
  }
  truncate(file: FileId, size_bytes: number): void {
    const path = this.pathOf(file);
    const grown = new Uint8Array(size_bytes);
    grown.set(this.files.get(path)!.subarray(0, size_bytes));
    this.files.set(path, grown);
  }
  sync(file: FileId): void {
    this.pathOf(file);
    this.calls.sync++;
  }
  syncDir(): void {}
  rename(from: string, to: string): void {
    this.files.set(to, this.files.get(from)!);
    this.files.delete(from);
  }
  unlink(path: string): void {
    this.files.delete(path);
  }
  exists(path: string): boolean {
    return this.files.has(path);
  }
  list(): string[] {
    return [...this.files.keys()].sort();
  }
  mkdirp(): void {}
  openCount(): number {
    return this.handles.size;
  }
  private pathOf(file: FileId): string {
    const path = this.handles.get(file);
    if (path === undefined) throw new IoError("EBADF", "use", String(file));
    return path;
  }
}
