/**
 * RESP2 (docs/resp.md) as a {@link Protocol} of a Connection: the same connection machinery, store,
 * limits and metrics as the msgpack protocol, with Redis's request and reply encoding.
 *
 * - next: RespReader finds the request; its name is matched on bytes (resp_commands.ts); arguments
 *   are offsets into the input (resp_request.ts: no view, no copy until a command needs one); one
 *   request object is reused, and `retain` copies one that must wait. A malformed stream is answered `-ERR Protocol error: …` and closed; QUIT
 *   is answered `+OK` after every earlier reply, then closed.
 * - execute: unknown command, arity, then authentication are checked (Redis's order), then the
 *   command runs; reads answer at once, writes when durable. Failures are `-CODE message` replies.
 *
 * @example
 * new Connection(socket, new RespProtocol(ctx), ctx, onClose);
 */
import { TOUCH_KEYS_MAX } from "../engine/engine.ts";
import type { WalEntry } from "../engine/wal/record.ts";
import { Final, type Protocol, type Responder, respondWhenSettled, type SetGroupSlot } from "./connection.ts";
import {
  COALESCE_MAX_ENTRIES,
  groupEntryBytes,
  newSession,
  OP_OTHER,
  recordOp,
  SetAnswer,
  type WorkerContext,
} from "./ops.ts";
import {
  ANSWERED_LATER,
  findCommand,
  GET,
  QUIT,
  type RespCommand,
  type RespSession,
} from "./resp_commands.ts";
import { findLeadingGets, READ_INCOMPLETE, READ_MALFORMED, RespReader, readPlainSet } from "./resp_reader.ts";
import { binSetEntry, RespRequest } from "./resp_request.ts";
import { binSize } from "./resp_values.ts";
import { REPLY_OK, RespError, RespWriter, replyBytes, respErrorText } from "./resp_writer.ts";

const utf8 = new TextDecoder("utf-8", { fatal: false });
const MIN_SLAB_BYTES = 4096;
/** The `\r\n` after a bulk string's bytes. */
const CRLF_BYTES = 2;
/** The key ranges of the GETs {@link RespProtocol.answerReads} answers (one thread, never re-entered). */
const get_key_starts = new Int32Array(TOUCH_KEYS_MAX);
const get_key_ends = new Int32Array(TOUCH_KEYS_MAX);
/** The SETs {@link RespProtocol.takeSets} starts as one group, and their ranges (reused). */
const set_group: WalEntry[] = [];
const set_ranges = new Int32Array(4);
/** `+OK\r\n` for each SET of the largest group: a group's answer is a view of its start. */
const OK_RUN = new Uint8Array(REPLY_OK.length * COALESCE_MAX_ENTRIES).map(
  (_, i) => REPLY_OK[i % REPLY_OK.length]!,
);
/** Connections started by this worker: HELLO's `id`. */
let connections_started = 0;

export class RespProtocol implements Protocol<RespRequest, RespWriter> {
  next_start = 0;
  private readonly reader: RespReader;
  private readonly state: RespSession;
  /** The request `next` returns, reused (see RespRequest.load). */
  private readonly request = new RespRequest();
  /** Where and when the running request answers (for `okWhenDone`). */
  private responder: Responder | undefined;
  private slot = 0;
  private started_ms = 0;

  constructor(private readonly ctx: WorkerContext) {
    this.reader = new RespReader(ctx.config.max_frame_bytes);
    this.state = {
      ctx,
      session: newSession(ctx),
      connection_id: ++connections_started,
      okWhenDone: () => new OkWhenDone(ctx, this.responder!, this.slot, this.started_ms, 1),
    };
  }

  next(bytes: Uint8Array, start: number, end: number, arrived_ms: number): RespRequest | Final | undefined {
    const r = this.reader;
    const status = r.read(bytes, start, end);
    this.next_start = r.next_start;
    if (status === READ_INCOMPLETE) return undefined;
    if (status === READ_MALFORMED) return new Final(errorBytes(`ERR Protocol error: ${r.error}`));
    const command = findCommand(bytes, r.starts[0]!, r.ends[0]!);
    if (command === QUIT) {
      recordOp(this.ctx, QUIT.op_index, arrived_ms, false);
      return new Final(REPLY_OK);
    }
    return this.request.load(command, bytes, r, arrived_ms);
  }

  /** Touches the table lines of the GETs that open the chunk (resp_reader.ts findLeadingGets). */
  prefetch(bytes: Uint8Array, start: number, end: number): void {
    this.ctx.engine.touchKeys(bytes, start, end, findLeadingGets);
  }

  /**
   * Answers the GETs that open the chunk in the standard form (findLeadingGets) as `execute` would:
   * the value as a bulk string, or nil. Stops before one whose key is over `--max-key-bytes` or
   * whose value is neither str nor bin: `next` and `execute` answer those with their error. Before
   * authentication it answers nothing (GET needs it).
   */
  answerReads(bytes: Uint8Array, start: number, end: number, out: RespWriter, arrived_ms: number): number {
    const { ctx } = this;
    if (!this.state.session.authenticated) return start;
    const n = findLeadingGets(bytes, start, end, get_key_starts, get_key_ends);
    const max_key_bytes = ctx.config.engine.max_key_bytes;
    let answered = 0;
    for (; answered < n; answered++) {
      const key_start = get_key_starts[answered]!;
      const key_length = get_key_ends[answered]! - key_start;
      if (key_length > max_key_bytes || !out.tryStoredBulk(ctx.engine, bytes, key_start, key_length)) break;
    }
    if (answered === 0) return start;
    const done_ms = performance.now();
    for (let i = 0; i < answered; i++) recordOp(ctx, GET.op_index, arrived_ms, false, done_ms);
    return get_key_ends[answered - 1]! + CRLF_BYTES;
  }

  /**
   * Starts the SETs that open the chunk in the standard form (readPlainSet) as one coalesced group,
   * answered `+OK` each once visible, or each with the batch's failure. Stops before one whose key,
   * value or request is over its limit (`execute` answers it with its error, `next` refuses a request
   * over `--max-frame-bytes`), or that would make the group larger than one batch; before
   * authentication it takes nothing.
   */
  takeSets(bytes: Uint8Array, start: number, end: number, answer: SetGroupSlot): number {
    const { ctx } = this;
    if (!this.state.session.authenticated) return 0;
    const { max_frame_bytes } = ctx.config;
    const group = set_group;
    let size_bytes = 0;
    let pos = start;
    while (group.length < answer.max_count) {
      const next = readPlainSet(bytes, pos, end, set_ranges);
      if (next < 0 || next - pos > max_frame_bytes) break;
      const key_length = set_ranges[1]!;
      const stored_bytes = binSize(set_ranges[3]!);
      const entry_bytes = groupEntryBytes(ctx, group.length, size_bytes, key_length, stored_bytes);
      if (entry_bytes < 0) break;
      // Only now: the entry writes its bin header over the request's bytes (binSetEntry).
      const key_start = set_ranges[0]!;
      const key_end = key_start + key_length;
      group.push(
        binSetEntry(bytes, key_start, key_length, set_ranges[2]!, set_ranges[3]!, key_end + CRLF_BYTES),
      );
      size_bytes += entry_bytes;
      pos = next;
    }
    const count = group.length;
    this.next_start = pos;
    if (count === 0) return 0;
    ctx.sets.addGroup(
      group,
      size_bytes,
      new OkWhenDone(ctx, answer.responder, answer.slot, answer.arrived_ms, count),
    );
    group.length = 0;
    return count;
  }

  /** `next` reuses one request object: one that waits gets a copy of its own. */
  retain(request: RespRequest): RespRequest {
    return request.clone();
  }

  /** Only writes run before the connection's earlier writes complete. */
  mustFollowWrites(request: RespRequest): boolean {
    return request.command === undefined || !request.command.writes;
  }

  execute(request: RespRequest, w: RespWriter, responder: Responder, slot: number): boolean {
    const mark = w.length;
    const { ctx } = this;
    const started_ms = request.started_ms; // the request object is reused once this returns
    this.responder = responder;
    this.slot = slot;
    this.started_ms = started_ms;
    try {
      const command = this.admit(request);
      const pending = command.run(this.state, request, w);
      if (pending === ANSWERED_LATER) return true;
      if (pending === undefined) {
        recordOp(ctx, command.op_index, started_ms, false);
        return false;
      }
      const response = pending.then(
        (result) => {
          recordOp(ctx, command.op_index, started_ms, false);
          return command.reply(result);
        },
        (error: unknown) => {
          recordOp(ctx, command.op_index, started_ms, true);
          return errorBytes(respErrorText(error));
        },
      );
      return respondWhenSettled(response, responder, slot);
    } catch (error) {
      w.truncate(mark);
      w.error(respErrorText(error));
      recordOp(ctx, request.command?.op_index ?? OP_OTHER, started_ms, true);
      return false;
    }
  }

  /** Its buffers are slabs handed out by views (see RespWriter): small ones would be replaced often. */
  writer(initial_bytes: number): RespWriter {
    return new RespWriter(Math.max(initial_bytes, MIN_SLAB_BYTES));
  }

  /** The request's command if it is known, has the right arity and may run now; else throws. */
  private admit(request: RespRequest): RespCommand {
    const command = request.command;
    if (command === undefined) throw new RespError(unknownCommand(request));
    const argc = request.count + 1;
    if (command.arity >= 0 ? argc !== command.arity : argc < -command.arity) {
      throw new RespError(`ERR wrong number of arguments for '${command.name}' command`);
    }
    if (!this.state.session.authenticated && !command.before_auth) {
      throw new RespError("NOAUTH Authentication required.");
    }
    return command;
  }
}

/** A coalesced SET's answer: `+OK` once visible, else its failure as an error reply. */
class OkWhenDone extends SetAnswer {
  protected response(failure: unknown): Uint8Array {
    if (failure === undefined)
      return this.requests === 1 ? REPLY_OK : OK_RUN.subarray(0, REPLY_OK.length * this.requests);
    const text = respErrorText(failure);
    return replyBytes((w) => {
      for (let i = 0; i < this.requests; i++) w.error(text);
    });
  }
}

/** Redis's wording: `ERR unknown command 'x', with args beginning with: 'a' 'b' ` (128 bytes each at most). */
function unknownCommand(request: RespRequest): string {
  const shown = (bytes: Uint8Array) => utf8.decode(bytes.subarray(0, 128));
  let args = "";
  for (let i = 0; i < request.count && args.length < 128; i++) args += `'${shown(request.view(i))}' `;
  return `ERR unknown command '${shown(request.name())}', with args beginning with: ${args}`;
}

function errorBytes(text: string): Uint8Array {
  return replyBytes((w) => w.error(text));
}

/** The reply that refuses a connection (too many, shutting down): `-ERR reason`. */
export function respRefusal(reason: string): Uint8Array {
  return errorBytes(`ERR ${reason}`);
}
