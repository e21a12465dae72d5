/**
 * Errors of the walkv client. A response code other than 0 becomes one of the typed classes below
 * (protocol v1 codes: 1 bad request, 2 too large, 3 unavailable, 4 auth required); a lost or
 * refused connection becomes a {@link ConnectionError}. All extend {@link WalkvClientError}.
 *
 * @example
 * try { await client.set("k", big) } catch (e) { if (e instanceof TooLargeError) shrink(big) }
 */

/**
 * Code of a {@link ConnectionError}: not a wire code (the request may never have reached the server).
 *
 * @example
 * if (error.code === CODE_CONNECTION) reconnectLater();
 */
export const CODE_CONNECTION = -1;

/**
 * Base class of every client error. `code` is the wire response code (1–4), or
 * {@link CODE_CONNECTION} for connection failures.
 *
 * @example
 * catch (e) { if (e instanceof WalkvClientError) console.error(e.code_name, e.message) }
 */
export class WalkvClientError extends Error {
  readonly code: number;
  constructor(code: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  /** A stable name for the code: `bad_request`, `too_large`, `unavailable`, `auth_required`, `connection`. */
  get code_name(): string {
    return CODE_NAMES[this.code] ?? `code_${this.code}`;
  }
}

/**
 * Code 1: the server could not accept the request as sent (wrong arity, bad key type…).
 *
 * @example
 * await client.auth("x").catch((e) => e instanceof BadRequestError); // no token configured
 */
export class BadRequestError extends WalkvClientError {
  constructor(message: string) {
    super(1, message);
  }
}

/**
 * Code 2: a key, value, batch or frame is over a limit. Nothing was changed.
 *
 * @example
 * await client.set("k", "x".repeat(1 << 30)).catch((e) => e instanceof TooLargeError);
 */
export class TooLargeError extends WalkvClientError {
  constructor(message: string) {
    super(2, message);
  }
}

/**
 * Code 3: the server could not make the write durable (or is failing). The write is not visible.
 *
 * @example
 * await client.set("k", 1).catch((e) => { if (e instanceof UnavailableError) retryLater() });
 */
export class UnavailableError extends WalkvClientError {
  constructor(message: string) {
    super(3, message);
  }
}

/**
 * Code 4: the server requires `auth` with the right token first (or the token was wrong).
 *
 * @example
 * const client = await connect({ path, token: readFileSync(token_file, "utf8").trim() });
 */
export class AuthRequiredError extends WalkvClientError {
  constructor(message: string) {
    super(4, message);
  }
}

/**
 * The connection could not be made, or was lost while the request was in flight. A write that
 * fails this way may or may not have taken effect: it is never retried by the client.
 *
 * @example
 * await client.set("k", 1).catch((e) => { if (e instanceof ConnectionError) checkThenRetry() });
 */
export class ConnectionError extends WalkvClientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(CODE_CONNECTION, message, options);
  }
}

/**
 * A request got no response within `request_timeout_ms`. Like a {@link ConnectionError}, its
 * effect is unknown; the connection is closed (its responses can no longer be trusted to arrive).
 *
 * @example
 * const client = await connect({ path, request_timeout_ms: 5000 });
 */
export class TimeoutError extends ConnectionError {}

const CODE_NAMES: Record<number, string> = {
  [CODE_CONNECTION]: "connection",
  1: "bad_request",
  2: "too_large",
  3: "unavailable",
  4: "auth_required",
};

/**
 * The error for a non-zero response code and its message.
 *
 * @example
 * responseError(2, "value of 9 bytes is over the limit of 8"); // → TooLargeError
 */
export function responseError(code: number, message: string): WalkvClientError {
  switch (code) {
    case 1:
      return new BadRequestError(message);
    case 2:
      return new TooLargeError(message);
    case 3:
      return new UnavailableError(message);
    case 4:
      return new AuthRequiredError(message);
    default:
      return new WalkvClientError(code, message);
  }
}
