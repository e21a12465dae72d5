/**
 * Test helpers for the RESP listener: a deliberately raw RESP2 client (independent of the server's
 * reader and writer) that sends arbitrary bytes and parses replies in order, and a runner for the
 * real `redis-cli`. Tests fail loudly when redis-cli or redis-benchmark is missing.
 *
 * @example
 * const c = await RespClient.connect({ path: socket_path });
 * expect(await c.call("SET", "k", "v")).toBe("OK");
 * expect(text(await c.call("GET", "k"))).toBe("v");
 * const { stdout } = await redisCli(["-s", socket_path, "--no-raw", "PING"]); // "PONG\n"
 */
import type * as net from "node:net";
import { connectSocket, MessageStream } from "./message_stream.ts";
import { concat } from "./raw_client.ts";

/** An error reply `-CODE message`. */
export class ErrorReply {
  constructor(readonly message: string) {}
}

/** A decoded reply: simple string, error, integer, bulk (null for nil), array (null for nil). */
export type Reply = string | ErrorReply | number | Uint8Array | null | Reply[];

const encoder = new TextEncoder();

export class RespClient {
  private readonly stream: MessageStream<Reply>;
  /** Resolves once the server closed the connection (or it failed). */
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    this.stream = new MessageStream(socket, parseReply, "reply");
    this.closed = this.stream.closed;
  }

  /** Connects to a Unix socket `path` or to `host:port`. */
  static async connect(to: { path: string } | { host: string; port: number }): Promise<RespClient> {
    return new RespClient(await connectSocket(to));
  }

  /** Writes raw bytes (or text). */
  sendRaw(bytes: Uint8Array | string): void {
    this.socket.write(typeof bytes === "string" ? encoder.encode(bytes) : bytes);
  }

  /** Sends one command as a multibulk and resolves with its reply. */
  async call(...args: Array<string | Uint8Array>): Promise<Reply> {
    this.sendRaw(command(...args));
    return await this.next();
  }

  /** The next reply. Rejects if the connection closes first. */
  next(): Promise<Reply> {
    return this.stream.next();
  }

  /** Every reply until the server closes the connection. */
  rest(): Promise<Reply[]> {
    return this.stream.rest();
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One command as a RESP multibulk. */
export function command(...args: Array<string | Uint8Array>): Uint8Array {
  const parts: Uint8Array[] = [encoder.encode(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === "string" ? encoder.encode(arg) : arg;
    parts.push(encoder.encode(`$${bytes.length}\r\n`), bytes, encoder.encode("\r\n"));
  }
  return concatBytes(parts);
}

/** The concatenation of `parts` (raw_client's `concat`, taking an array). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  return concat(...parts);
}

/** A bulk reply as text (UTF-8). */
export function text(reply: Reply): string {
  if (!(reply instanceof Uint8Array)) throw new Error(`not a bulk string: ${JSON.stringify(reply)}`);
  return new TextDecoder().decode(reply);
}

/** Parses one reply at `pos`; undefined if incomplete. */
function parseReply(bytes: Uint8Array, pos: number): { message: Reply; end: number } | undefined {
  const line_end = lineEnd(bytes, pos);
  if (line_end < 0) return undefined;
  const line = new TextDecoder().decode(bytes.subarray(pos + 1, line_end));
  const after = line_end + 2;
  switch (bytes[pos]) {
    case 0x2b: // +
      return { message: line, end: after };
    case 0x2d: // -
      return { message: new ErrorReply(line), end: after };
    case 0x3a: // :
      return { message: Number(line), end: after };
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return { message: null, end: after };
      if (bytes.length < after + n + 2) return undefined;
      return { message: bytes.slice(after, after + n), end: after + n + 2 };
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return { message: null, end: after };
      const items: Reply[] = [];
      let at = after;
      for (let i = 0; i < n; i++) {
        const item = parseReply(bytes, at);
        if (item === undefined) return undefined;
        items.push(item.message);
        at = item.end;
      }
      return { message: items, end: at };
    }
    default:
      throw new Error(`not a RESP reply: byte ${bytes[pos]} at ${pos}`);
  }
}

function lineEnd(bytes: Uint8Array, pos: number): number {
  for (let i = pos; i + 1 < bytes.length; i++) if (bytes[i] === 0x0d && bytes[i + 1] === 0x0a) return i;
  return -1;
}

/** The path of `name`, or an error saying it must be installed (the tests never skip). */
export function requireTool(name: "redis-cli" | "redis-benchmark"): string {
  const path = Bun.which(name);
  if (path === null) {
    throw new Error(
      `${name} is not installed: the RESP tests drive walkv with it (apt-get install redis-tools)`,
    );
  }
  return path;
}

/** Runs redis-cli with `args` (and `stdin`, for -x); resolves with its output and exit code. */
export async function redisCli(
  args: readonly string[],
  stdin?: Uint8Array,
): Promise<{ stdout: string; bytes: Uint8Array; stderr: string; code: number }> {
  const proc = Bun.spawn([requireTool("redis-cli"), ...args], {
    stdin: stdin === undefined ? "ignore" : "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  if (stdin !== undefined) {
    const sink = proc.stdin as import("bun").FileSink;
    sink.write(stdin);
    await sink.end();
  }
  const [bytes, stderr, code] = await Promise.all([
    new Response(proc.stdout).bytes(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { stdout: new TextDecoder().decode(bytes), bytes, stderr, code };
}
