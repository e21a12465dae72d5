/**
 * The reading half both raw test clients share (RawClient for msgpack frames, RespClient for RESP
 * replies): bytes from a socket are cut into messages by a protocol's `parse`, and handed out in
 * order by {@link MessageStream.next}, which fails the test instead of hanging when nothing comes.
 *
 * @example
 * const stream = new MessageStream(socket, parseFrame, "response frame");
 * const body = await stream.next();
 */
import * as net from "node:net";

/** Upper bound on how long one `next` waits before failing the test instead of hanging. */
const READ_TIMEOUT_MS = 20_000;

/** One message at `bytes[pos]`, or undefined if it is not complete yet. */
export type Parse<T> = (bytes: Uint8Array, pos: number) => { message: T; end: number } | undefined;

type Waiter<T> = { resolve: (message: T) => void; reject: (error: Error) => void };

export class MessageStream<T> {
  private buffered: Uint8Array = new Uint8Array(0);
  private readonly messages: T[] = [];
  private readonly waiters: Waiter<T>[] = [];
  private ended = false;
  /** Resolves once the server closed the connection (or it failed). */
  readonly closed: Promise<void>;

  constructor(
    socket: net.Socket,
    private readonly parse: Parse<T>,
    private readonly what: string,
  ) {
    socket.on("data", (chunk: Uint8Array) => this.receive(chunk));
    socket.on("error", () => {});
    this.closed = new Promise((resolve) =>
      socket.on("close", () => {
        this.ended = true;
        for (const w of this.waiters.splice(0)) w.reject(new Error("connection closed"));
        resolve();
      }),
    );
  }

  /** The next message. Rejects if the connection closes first or nothing comes in time. */
  next(): Promise<T> {
    if (this.messages.length > 0) return Promise.resolve(this.messages.shift()!);
    if (this.ended) return Promise.reject(new Error("connection closed"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${this.what} in time`)), READ_TIMEOUT_MS);
      this.waiters.push({
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
    });
  }

  /** Every message not yet taken, once the server closed the connection. */
  async rest(): Promise<T[]> {
    await this.closed;
    return this.messages.splice(0);
  }

  private receive(chunk: Uint8Array): void {
    const bytes = new Uint8Array(this.buffered.length + chunk.length);
    bytes.set(this.buffered);
    bytes.set(chunk, this.buffered.length);
    let pos = 0;
    for (;;) {
      const parsed = this.parse(bytes, pos);
      if (parsed === undefined) break;
      pos = parsed.end;
      const waiter = this.waiters.shift();
      if (waiter === undefined) this.messages.push(parsed.message);
      else waiter.resolve(parsed.message);
    }
    this.buffered = bytes.slice(pos);
  }
}

/**
 * Connects to a Unix socket `path` or to `host:port`; resolves once connected.
 *
 * @example
 * const socket = await connectSocket({ path: "/tmp/walkv.sock" });
 */
export function connectSocket(to: { path: string } | { host: string; port: number }): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = "path" in to ? net.createConnection(to.path) : net.createConnection(to.port, to.host);
    socket.once("error", reject);
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
  });
}
