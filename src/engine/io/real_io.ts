/**
 * {@link RealIo}: the production {@link Io}, synchronous node:fs calls (also supported by Deno).
 *
 * A {@link FileId} is the OS file descriptor, so a file opened on one worker can be used by every
 * worker of the process. Every node error becomes an {@link IoError} carrying its errno name.
 *
 * @example
 * const io = new RealIo();
 * io.mkdirp("/data/wal");
 * const f = io.open("/data/wal/1.wal", { create: true });
 * io.write(f, bytes, 0);
 * io.sync(f);
 * io.syncDir("/data/wal");
 */
import * as fs from "node:fs";
import { assert, IoError } from "../errors.ts";
import type { FileId, Io, OpenOptions } from "./io.ts";

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/**
 * Runs `action` and maps any node error to {@link IoError}(err.code, op, path).
 * Errors without a string `code` (not from the OS) become `EIO`.
 */
function attempt<T>(op: string, path: string, action: () => T): T {
  try {
    return action();
  } catch (error) {
    const code = (error as { code?: unknown } | null)?.code;
    throw new IoError(typeof code === "string" ? code : "EIO", op, path, { cause: error });
  }
}

function assertPosition(position_bytes: number): void {
  assert(Number.isSafeInteger(position_bytes) && position_bytes >= 0, `bad position ${position_bytes}`);
}

/**
 * {@link Io} over the local file system (node:fs, synchronous).
 *
 * @example
 * const io = new RealIo();
 * const f = io.open("/tmp/x", { create: true, truncate: true });
 * io.write(f, new Uint8Array([1, 2, 3]), 0);
 * io.size(f); // 3
 * io.close(f);
 */
export class RealIo implements Io {
  /** Path of each descriptor opened through this instance, for error messages only. */
  private readonly paths = new Map<FileId, string>();

  open(path: string, options: OpenOptions = {}): FileId {
    const { O_RDWR, O_CREAT, O_TRUNC } = fs.constants;
    const flags = O_RDWR | (options.create ? O_CREAT : 0) | (options.truncate ? O_TRUNC : 0);
    const file = attempt("open", path, () => fs.openSync(path, flags, FILE_MODE));
    this.paths.set(file, path);
    return file;
  }

  close(file: FileId): void {
    const path = this.pathOf(file);
    this.paths.delete(file);
    attempt("close", path, () => fs.closeSync(file));
  }

  write(file: FileId, data: Uint8Array, position_bytes: number): void {
    assertPosition(position_bytes);
    const path = this.pathOf(file);
    let done_bytes = 0;
    while (done_bytes < data.length) {
      const written_bytes = attempt("write", path, () =>
        fs.writeSync(file, data, done_bytes, data.length - done_bytes, position_bytes + done_bytes),
      );
      // A regular file never accepts 0 bytes of a non-empty write; do not spin if it does.
      if (written_bytes <= 0) throw new IoError("EIO", "write", path);
      done_bytes += written_bytes;
    }
  }

  read(file: FileId, into: Uint8Array, position_bytes: number): number {
    assertPosition(position_bytes);
    return attempt("read", this.pathOf(file), () => fs.readSync(file, into, 0, into.length, position_bytes));
  }

  size(file: FileId): number {
    return attempt("size", this.pathOf(file), () => fs.fstatSync(file).size);
  }

  truncate(file: FileId, size_bytes: number): void {
    assertPosition(size_bytes);
    attempt("truncate", this.pathOf(file), () => fs.ftruncateSync(file, size_bytes));
  }

  sync(file: FileId): void {
    attempt("sync", this.pathOf(file), () => fs.fdatasyncSync(file));
  }

  syncDir(path: string): void {
    const dir = attempt("syncDir", path, () => fs.openSync(path, "r"));
    try {
      attempt("syncDir", path, () => fs.fsyncSync(dir));
    } finally {
      attempt("syncDir", path, () => fs.closeSync(dir));
    }
  }

  rename(from: string, to: string): void {
    attempt("rename", `${from} -> ${to}`, () => fs.renameSync(from, to));
  }

  unlink(path: string): void {
    attempt("unlink", path, () => fs.unlinkSync(path));
  }

  exists(path: string): boolean {
    return fs.existsSync(path);
  }

  list(dir: string): string[] {
    return attempt("list", dir, () => fs.readdirSync(dir)).sort();
  }

  mkdirp(dir: string): void {
    attempt("mkdirp", dir, () => fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE }));
  }

  /** The path for messages; a descriptor opened by another worker is named by its number. */
  private pathOf(file: FileId): string {
    return this.paths.get(file) ?? `fd ${file}`;
  }
}
