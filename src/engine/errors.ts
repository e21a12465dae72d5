/**
 * Typed errors of the storage engine. Every error a caller can act on carries a stable `code`
 * that the daemon maps onto wire-protocol codes ([2/4]): `too_large` → 2, `unavailable` → 3.
 *
 * @example
 * try { engine.set(key, value) } catch (e) { if (e instanceof WalkvError && e.code === "too_large") … }
 */
export type ErrorCode = "too_large" | "unavailable" | "invalid" | "corruption" | "io";

/** Base class of all engine errors. */
export class WalkvError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A key, value or batch is over its configured limit. Nothing was changed. */
export class TooLargeError extends WalkvError {
  constructor(message: string) {
    super("too_large", message);
  }
}

/** A write was not accepted or not made durable; it was never acknowledged and is not visible. */
export class UnavailableError extends WalkvError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("unavailable", message, options);
  }
}

/** An argument or configuration value is invalid. Nothing was changed. */
export class InvalidError extends WalkvError {
  constructor(message: string) {
    super("invalid", message);
  }
}

/** A file on disk failed verification. `file` and `offset_bytes` say where. */
export class CorruptionError extends WalkvError {
  readonly file: string;
  readonly offset_bytes: number;
  constructor(file: string, offset_bytes: number, reason: string) {
    super("corruption", `${file} at byte ${offset_bytes}: ${reason}`);
    this.file = file;
    this.offset_bytes = offset_bytes;
  }
}

/**
 * An I/O operation failed. `errno` is the POSIX error name (`EIO`, `ENOSPC`, …) when known.
 * Thrown by every {@link Io} implementation, real or simulated.
 */
export class IoError extends WalkvError {
  readonly errno: string;
  readonly op: string;
  readonly path: string;
  constructor(errno: string, op: string, path: string, options?: { cause?: unknown }) {
    super("io", `${errno}: ${op} ${path}`, options);
    this.errno = errno;
    this.op = op;
    this.path = path;
  }
}

/**
 * A failure in a log line: the errno name of an {@link IoError}, else the message.
 *
 * @example
 * log(`fdatasync failed (${describeFailure(error)})`); // "fdatasync failed (EIO)"
 */
export function describeFailure(error: unknown): string {
  if (error instanceof IoError) return error.errno;
  return error instanceof Error ? error.message : String(error);
}

/** Invariant check (TigerBeetle style): a failed assertion is a bug in walkv, never bad input. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(`walkv invariant violated: ${message}`);
}
