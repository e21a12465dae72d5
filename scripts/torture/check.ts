/**
 * The crash-torture model: what a client sent and what it was told, and the check of the state a
 * restarted daemon recovered against it. Keys are numbered; each key is written by one connection
 * only, so the order of the writes of a key is the order in which that connection sent them
 * (protocol v1: requests take effect in the order sent). Every value is unique (`w<op id>/k<key>|pad`),
 * so a recovered value names the write that produced it.
 *
 * After a kill -9 the recovered state of a connection's keys must be the state after some prefix of
 * its requests that holds every acknowledged one: no acknowledged write lost, in-flight writes
 * applied or not but in order, an MSET whole or not at all. A key no request wrote keeps its state.
 *
 * @example
 * const log: ConnectionLog = { ops: [{ id: 1, kind: "set", keys: [0], status: "acked" }] };
 * const result = checkCycle({ base: [undefined], connections: [log], observed: [writtenValue(1, 0)] });
 * result.violations; // []
 */
import { assert } from "../../src/engine/errors.ts";

/** The state of every key: its value string, or undefined when absent. */
export type KeyState = ReadonlyArray<string | undefined>;

/** acked: the server answered ok; pending: no answer (in flight at the kill); refused: an error answer. */
export type OpStatus = "acked" | "pending" | "refused";

/**
 * One write request, as sent.
 *
 * @example
 * const op: LoggedOp = { id: 7, kind: "mset", keys: [3, 5], status: "pending" };
 */
export interface LoggedOp {
  readonly id: number;
  readonly kind: "set" | "del" | "mset";
  readonly keys: readonly number[];
  status: OpStatus;
  /** The error answer of a refused request. */
  error?: string;
}

/**
 * The write requests of one connection in the order sent.
 *
 * @example
 * const log: ConnectionLog = { ops: [] };
 */
export interface ConnectionLog {
  readonly ops: LoggedOp[];
}

/**
 * The outcome of checking one cycle.
 *
 * @example
 * const { violations, acked_checked, missing_acked } = checkCycle(input);
 */
export interface CycleCheck {
  readonly violations: string[];
  /** Acknowledged write requests whose presence was checked. */
  readonly acked_checked: number;
  /** Acknowledged key writes (one per key of a request) absent from the recovered state. */
  readonly missing_acked: number;
  /** Write requests in flight at the kill. */
  readonly in_flight: number;
  /** In-flight write requests that the recovered state shows applied (a lower bound). */
  readonly in_flight_applied: number;
}

/**
 * What one cycle checks: the state before it, its connections' requests, the recovered state.
 *
 * @example
 * const input: CycleInput = { base: [], connections: [], observed: [] };
 */
export interface CycleInput {
  readonly base: KeyState;
  readonly connections: readonly ConnectionLog[];
  readonly observed: KeyState;
}

/** Padding of a value: up to this many bytes, derived from the op id. */
const PAD_BYTES_MAX = 240;

/**
 * The value that write `id` stores under key `key`: unique, self-describing, of varied length.
 *
 * @example
 * writtenValue(12, 3); // "w12/k3|" followed by padding
 */
export function writtenValue(id: number, key: number): string {
  assert(Number.isSafeInteger(id) && id > 0 && Number.isSafeInteger(key) && key >= 0, "bad id or key");
  const pad_bytes = Math.imul(id, 2654435761) >>> 0;
  return `w${id}/k${key}|${String.fromCharCode(97 + (id % 26)).repeat(pad_bytes % (PAD_BYTES_MAX + 1))}`;
}

/**
 * Checks the recovered state of one cycle; see the module comment.
 *
 * @example
 * checkCycle({ base: [undefined], connections: [{ ops: [] }], observed: [undefined] }).violations; // []
 */
export function checkCycle(input: CycleInput): CycleCheck {
  assert(input.base.length === input.observed.length, "base and observed cover the same keys");
  const totals = {
    violations: [] as string[],
    acked_checked: 0,
    missing_acked: 0,
    in_flight: 0,
    in_flight_applied: 0,
  };
  input.connections.forEach((log, index) => {
    const result = checkConnection(index, log, input.base, input.observed);
    totals.violations.push(...result.violations);
    totals.acked_checked += result.acked_checked;
    totals.missing_acked += result.missing_acked;
    totals.in_flight += result.in_flight;
    totals.in_flight_applied += result.in_flight_applied;
  });
  const touched = new Set(input.connections.flatMap((log) => log.ops.flatMap((op) => op.keys)));
  input.base.forEach((before, key) => {
    if (touched.has(key) || input.observed[key] === before) return;
    totals.violations.push(
      `key ${key}: no request wrote it, it held ${describeValue(before)} and recovered ${describeValue(input.observed[key])}`,
    );
    if (before !== undefined) totals.missing_acked++;
  });
  return totals;
}

/** One key's history within one connection: its writes' positions and the matching prefixes. */
interface KeyTrace {
  readonly key: number;
  /** `allowed[j]`: the key's state after the first j requests equals the recovered one. */
  readonly allowed: Uint8Array;
}

function checkConnection(index: number, log: ConnectionLog, base: KeyState, observed: KeyState): CycleCheck {
  const sequence = log.ops.filter((op) => op.status !== "refused");
  const acked = sequence.filter((op) => op.status === "acked").length;
  const violations = log.ops
    .filter((op) => op.status === "refused")
    .map((op) => `client ${index}: ${describeOp(op)} was refused by the server: ${op.error}`);
  const first_pending = sequence.findIndex((op) => op.status === "pending");
  if (first_pending >= 0 && first_pending < acked)
    violations.push(
      `client ${index}: ${describeOp(sequence[acked - 1]!)} acknowledged after an earlier request`,
    );
  const keys = [...new Set(log.ops.flatMap((op) => op.keys))].sort((a, b) => a - b);
  const traces = keys.map((key) => traceKey(key, sequence, base[key], observed[key]));
  let missing_acked = 0;
  for (const trace of traces) {
    const problem = keyProblem(index, trace, sequence, acked, observed[trace.key]);
    if (problem === undefined) continue;
    violations.push(problem.message);
    missing_acked += problem.missing_acked;
  }
  violations.push(...halfAppliedMsets(index, sequence, traces));
  const prefix = consistentPrefix(traces, sequence.length, acked);
  if (violations.length === 0 && prefix === undefined)
    violations.push(`client ${index}: the recovered keys are not the state after any prefix of its requests`);
  return {
    violations,
    acked_checked: acked,
    missing_acked,
    in_flight: sequence.length - acked,
    in_flight_applied: prefix === undefined ? 0 : prefix - acked,
  };
}

/** Which prefixes of `sequence` leave `key` in the recovered state `got`. */
function traceKey(
  key: number,
  sequence: readonly LoggedOp[],
  before: string | undefined,
  got: string | undefined,
): KeyTrace {
  const allowed = new Uint8Array(sequence.length + 1);
  let state = before;
  for (let j = 0; j <= sequence.length; j++) {
    if (j > 0) state = effect(sequence[j - 1]!, key, state);
    allowed[j] = state === got ? 1 : 0;
  }
  return { key, allowed };
}

/** The state of `key` after `op`, given its state before. */
function effect(op: LoggedOp, key: number, before: string | undefined): string | undefined {
  if (!op.keys.includes(key)) return before;
  return op.kind === "del" ? undefined : writtenValue(op.id, key);
}

/** A lost acknowledged write or a value no request produced. */
function keyProblem(
  index: number,
  trace: KeyTrace,
  sequence: readonly LoggedOp[],
  acked: number,
  got: string | undefined,
): { message: string; missing_acked: number } | undefined {
  const last_allowed = trace.allowed.lastIndexOf(1);
  if (last_allowed >= acked) return undefined;
  const where = `client ${index}, key ${trace.key}: recovered ${describeValue(got)}`;
  if (last_allowed < 0)
    return { message: `${where}, which no request of this key produced`, missing_acked: 0 };
  const lost = sequence.slice(last_allowed, acked).filter((op) => op.keys.includes(trace.key));
  return {
    message: `${where} (the state before ${describeOp(lost[0]!)}); acknowledged and lost: ${lost.map(describeOp).join(", ")}`,
    missing_acked: lost.length,
  };
}

/** MSETs that some recovered keys show applied and others show not applied. */
function halfAppliedMsets(
  index: number,
  sequence: readonly LoggedOp[],
  traces: readonly KeyTrace[],
): string[] {
  const by_key = new Map(traces.map((t) => [t.key, t]));
  const problems: string[] = [];
  sequence.forEach((op, position) => {
    if (op.kind !== "mset") return;
    const applied: number[] = [];
    const not_applied: number[] = [];
    for (const key of op.keys) {
      const allowed = by_key.get(key)!.allowed;
      const first = allowed.indexOf(1);
      const last = allowed.lastIndexOf(1);
      if (first < 0) continue; // reported by keyProblem
      if (first > position) applied.push(key);
      else if (last <= position) not_applied.push(key);
    }
    if (applied.length > 0 && not_applied.length > 0)
      problems.push(
        `client ${index}: ${describeOp(op)} half applied: keys ${applied.join(",")} hold it, keys ${not_applied.join(",")} do not`,
      );
  });
  return problems;
}

/** The smallest prefix length ≥ `acked` consistent with every key, or undefined if none is. */
function consistentPrefix(traces: readonly KeyTrace[], length: number, acked: number): number | undefined {
  for (let j = acked; j <= length; j++) if (traces.every((t) => t.allowed[j] === 1)) return j;
  return undefined;
}

function describeOp(op: LoggedOp): string {
  return `${op.kind} #${op.id} [${op.keys.join(",")}] (${op.status})`;
}

function describeValue(value: string | undefined): string {
  if (value === undefined) return "absent";
  const head = /^w\d+\/k\d+\|/.exec(value)?.[0];
  return head === undefined
    ? `an unknown value "${value.slice(0, 40)}"`
    : `"${head}…" (${value.length} chars)`;
}
