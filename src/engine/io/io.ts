/**
 * The one I/O seam of the engine. All engine file I/O goes through an {@link Io}, so tests can
 * substitute {@link SimDisk} (volatile page cache, power cuts, torn writes, injected EIO/ENOSPC)
 * for {@link RealIo} (node:fs, synchronous).
 *
 * Calls are synchronous: the engine performs I/O on dedicated workers (WAL writer, checkpointer)
 * or at start-up (recovery), never on a thread that serves requests.
 * Every failure throws {@link IoError} with the errno name (`EIO`, `ENOSPC`, `ENOENT`, …).
 *
 * @example
 * const f = io.open("/data/wal/x.wal", { create: true });
 * io.write(f, bytes, 0);
 * io.sync(f);            // fdatasync: bytes survive power loss
 * io.syncDir("/data/wal"); // the file's directory entry survives power loss too
 */
export type FileId = number;

export interface OpenOptions {
  /** Create the file (mode 0600) if missing. */
  readonly create?: boolean;
  /** Truncate to 0 bytes on open. */
  readonly truncate?: boolean;
}

export interface Io {
  /** Opens a file for reading and writing. Throws IoError `ENOENT` if missing and not `create`. */
  open(path: string, options?: OpenOptions): FileId;
  close(file: FileId): void;
  /** Writes all of `data` at `position_bytes`. On failure throws; a prefix may have been written. */
  write(file: FileId, data: Uint8Array, position_bytes: number): void;
  /** Reads up to `into.length` bytes at `position_bytes`; returns the count read (0 at end of file). */
  read(file: FileId, into: Uint8Array, position_bytes: number): number;
  /** Current size of the file in bytes (including unsynced writes). */
  size(file: FileId): number;
  truncate(file: FileId, size_bytes: number): void;
  /** fdatasync: every write to this file before the call survives power loss. */
  sync(file: FileId): void;
  /** fsync of a directory: creates, renames and unlinks of its entries survive power loss. */
  syncDir(path: string): void;
  /** Atomic rename (replaces `to`). */
  rename(from: string, to: string): void;
  unlink(path: string): void;
  exists(path: string): boolean;
  /** Names (not paths) of the entries of a directory, sorted. */
  list(dir: string): string[];
  /** Creates a directory and its parents with mode 0700 (no error if it exists). */
  mkdirp(dir: string): void;
}

/**
 * Closes `file`, ignoring a failure: for cleanup after another error, which must not be masked.
 *
 * @example
 * try { io.write(file, bytes, 0); } catch (error) { closeQuietly(io, file); throw error; }
 */
export function closeQuietly(io: Io, file: FileId): void {
  try {
    io.close(file);
  } catch {
    // The descriptor is released either way (close(2) semantics); the first error is what matters.
  }
}
