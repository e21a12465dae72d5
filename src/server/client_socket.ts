/**
 * A client's socket as a {@link Connection} uses it, over two transports:
 *
 * - **node:net** (`NodeClientSocket`): works everywhere (Bun and Deno), and accepts on a listening fd
 *   that several I/O workers share, or one systemd passed.
 * - **Bun's own sockets** (`BunClientSocket`, `Bun.listen`): no stream machinery between the kernel
 *   and the connection. A node:net socket in Bun hands each chunk through a Readable and each reply
 *   through a Writable; here a chunk is one callback and a reply one `send`. Bun.listen cannot adopt
 *   a listening fd, so this serves the default arrangement only: one I/O worker binding its own
 *   sockets (listener.ts decides).
 *
 * Both deliver the same events to a {@link SocketEvents} and keep the same promises: bytes are sent in
 * the order written; what the kernel does not take at once is kept and counted in `unsent_bytes`
 * (the connection cuts off a client whose unread replies pass `--max-output-bytes`); `end` sends what
 * is kept, then half-closes.
 *
 * @example
 * const socket = new NodeClientSocket(net_socket);
 * socket.attach(new Connection(socket, protocol, ctx, onClose));
 */
import type * as net from "node:net";

/** What a connection hears from its socket. */
export interface SocketEvents {
  /** Bytes arrived. The chunk is the connection's to keep: it is never written again. */
  receive(chunk: Uint8Array): void;
  /** Everything written so far has been handed to the kernel (after a backlog, or after `end`). */
  drained(): void;
  /** The client closed its side; no more bytes will arrive. */
  inputEnded(): void;
  /** The socket is gone (closed by either side, or failed). Called once. */
  disconnected(): void;
}

/** The socket operations a connection uses. */
export interface ClientSocket {
  /**
   * Sends `bytes[start, end)` after everything written before; the caller must not write those bytes
   * again. A range, not a view: Bun's sockets send one without the view's cost (80-100 ns).
   */
  write(bytes: Uint8Array, start?: number, end?: number): void;
  /** Bytes written but not yet handed to the kernel. */
  readonly unsent_bytes: number;
  /** Stops reading (the client feels TCP backpressure). */
  pause(): void;
  resume(): void;
  /** Sends what is unsent, then half-closes; reading goes on until the client closes. */
  end(): void;
  /** Closes at once; unsent bytes are dropped. */
  destroy(): void;
}

/**
 * A node:net socket.
 *
 * @example
 * server.on("connection", (s) => { const socket = new NodeClientSocket(s); socket.attach(events); });
 */
export class NodeClientSocket implements ClientSocket {
  constructor(private readonly socket: net.Socket) {}

  /** Routes the socket's events to `events`. */
  attach(events: SocketEvents): void {
    const socket = this.socket;
    socket.on("data", (chunk: Uint8Array) => events.receive(chunk));
    socket.on("drain", () => events.drained());
    socket.on("finish", () => events.drained()); // after end(): everything written has left
    socket.on("end", () => events.inputEnded());
    socket.on("error", () => events.disconnected());
    socket.on("close", () => events.disconnected());
  }

  write(bytes: Uint8Array, start = 0, end = bytes.length): void {
    this.socket.write(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end));
  }

  get unsent_bytes(): number {
    return this.socket.writableLength;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The part of a Bun socket (`Bun.listen`'s) used here. */
export interface BunSocket {
  write(data: Uint8Array, byte_offset: number, byte_length: number): number;
  shutdown(): void;
  terminate(): void;
  pause(): void;
  resume(): void;
}

/**
 * A socket of `Bun.listen`. Bun's `write` sends what the kernel takes and returns that count; the
 * rest is kept here, in order, and sent on the listener's `drain` callback ({@link onWritable}).
 * `end` half-closes with `shutdown(2)`: Bun's own `end()` closes the fd at once, and closing a socket
 * with unread input makes the kernel reset it (the client then loses replies it has not read).
 *
 * @example
 * Bun.listen({ unix: path, socket: {
 *   open(s) { s.data = new BunClientSocket(s); },
 *   data(s, chunk) { s.data.onData(chunk); },
 *   drain(s) { s.data.onWritable(); },
 *   end(s) { s.data.onEnd(); },
 *   close(s) { s.data.onClose(); },
 * } });
 */
export class BunClientSocket implements ClientSocket {
  unsent_bytes = 0;
  /** Bytes written and not yet taken by the kernel, oldest first; `unsent[unsent_head]` is next. */
  private unsent: Uint8Array[] = [];
  private unsent_head = 0;
  private ending = false;
  private gone = false;
  private events: SocketEvents | undefined;

  constructor(private readonly socket: BunSocket) {}

  attach(events: SocketEvents): void {
    this.events = events;
  }

  write(bytes: Uint8Array, start = 0, end = bytes.length): void {
    if (this.gone || end <= start) return;
    if (this.unsent_bytes === 0) {
      const sent = this.socket.write(bytes, start, end - start);
      if (sent >= end - start) return;
      start += Math.max(sent, 0);
    }
    const rest = bytes.subarray(start, end);
    this.unsent.push(rest);
    this.unsent_bytes += rest.length;
  }

  pause(): void {
    if (!this.gone) this.socket.pause();
  }

  resume(): void {
    if (!this.gone) this.socket.resume();
  }

  end(): void {
    if (this.gone || this.ending) return;
    this.ending = true;
    if (this.unsent_bytes === 0) this.socket.shutdown();
  }

  destroy(): void {
    if (this.gone) return;
    this.dropUnsent();
    this.socket.terminate();
  }

  /** Bun's `data` callback. */
  onData(chunk: Uint8Array): void {
    if (!this.gone) this.events?.receive(chunk);
  }

  /** Bun's `drain` callback: the kernel takes bytes again. */
  onWritable(): void {
    while (this.unsent_head < this.unsent.length) {
      const bytes = this.unsent[this.unsent_head]!;
      const sent = Math.max(this.socket.write(bytes, 0, bytes.length), 0);
      this.unsent_bytes -= Math.min(sent, bytes.length);
      if (sent < bytes.length) {
        this.unsent[this.unsent_head] = bytes.subarray(sent);
        return;
      }
      this.unsent[this.unsent_head++] = EMPTY;
      if (this.unsent_head >= UNSENT_COMPACT_AFTER) {
        // A reader that never catches up would otherwise grow the array by a slot per turn.
        this.unsent.splice(0, this.unsent_head);
        this.unsent_head = 0;
      }
    }
    this.unsent = [];
    this.unsent_head = 0;
    if (this.ending) this.socket.shutdown();
    this.events?.drained();
  }

  /** Bun's `end` callback: the client half-closed. */
  onEnd(): void {
    this.events?.inputEnded();
  }

  /** Bun's `close` and `error` callbacks. */
  onClose(): void {
    if (this.gone) return;
    this.gone = true;
    this.dropUnsent();
    this.events?.disconnected();
  }

  private dropUnsent(): void {
    this.unsent = [];
    this.unsent_head = 0;
    this.unsent_bytes = 0;
  }
}

const EMPTY = new Uint8Array(0);
/** Sent slots dropped at once from the unsent queue. */
const UNSENT_COMPACT_AFTER = 1024;
