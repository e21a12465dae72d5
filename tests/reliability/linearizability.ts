/**
 * A linearizability checker for walkv histories: Wing & Gong's search for a legal sequential order,
 * with Lowe's memoisation of (linearized set, state) pairs (the algorithm of Knossos and Porcupine).
 *
 * The model is one register per key: `get` returns the value or nil, `set` stores, `del` stores
 * nil and returns whether the key held a value, `mset` stores several keys, `mget` reads several.
 * Values are strings; nil is `null`.
 *
 * Two checks, each a search over small independent parts of the history:
 * - {@link checkPerKey}: linearizability is P-compositional (Herlihy & Wing), so each key is checked
 *   alone: an `mset` becomes one `set` per key, an `mget` one `get` per key.
 * - {@link checkAtomicity}: the per-key projection cannot see a half-applied `mset` (key a shows the
 *   new value, key b the old one: each key alone is fine). So the keys linked by multi-key operations
 *   form groups, and each group is searched once more with the whole group as the state: an `mset`
 *   writes all its keys at one point, an `mget` reads all its keys at one point. A history in which
 *   some `get`/`mget` observes half an `mset` has no such order and is rejected. Groups never share an
 *   operation, so checking them one by one is again exact (P-compositionality over groups).
 *
 * Operations carry invoke and complete times from one monotonic clock. One that never completed
 * (connection lost, daemon killed) is indeterminate: it may or may not have taken effect, at any
 * point after its invoke, so its interval ends at +∞; its result is unknown (an indeterminate read
 * constrains nothing and is dropped, and so is an indeterminate write that no read observed: see
 * dropUnobservedIndeterminateWrites). When the history knows a time by which it had taken effect if
 * it ever did (`settled_by`: the restart after a crash, since the daemon that received it is gone),
 * its interval ends there instead, and the search places it either with its effects or with none.
 * Each search takes at most {@link MAX_OPS_PER_SEARCH} operations.
 *
 * @example
 * const history: Operation[] = [
 *   { client: 0, invoke: 0, complete: 1, f: "set", key: "k", value: "a" },
 *   { client: 1, invoke: 2, complete: 3, f: "get", key: "k", result: null },
 * ];
 * checkHistory(history); // { ok: false, key: "k", explanation: "… get(k) → nil …" }: a stale read
 */
import { assert, InvalidError } from "../../src/engine/errors.ts";

/** A key's value as the checker sees it: a string, or null for nil (absent). */
export type Value = string | null;

/** Who ran an operation and when. */
interface Timing {
  /** The client (a sequential process: one operation at a time). */
  readonly client: number;
  /** When the call was made, on a clock shared by all clients. */
  readonly invoke: number;
  /** When the response arrived (≥ invoke); null: never (indeterminate). */
  readonly complete: number | null;
  /**
   * Only when indeterminate: a time (≥ invoke) by which the operation had taken effect if it ever
   * did, e.g. the restart of a killed daemon (recovery kept its write or not; nothing after the
   * restart can still apply it). Absent: it may take effect at any time after its invoke.
   */
  readonly settled_by?: number;
}

/**
 * One operation of a history. `result` is required when `complete` is a time and must be absent
 * (undefined) when the operation is indeterminate.
 *
 * @example
 * const op: Operation = { client: 3, invoke: 10, complete: 14, f: "mget", keys: ["a", "b"], result: ["x", null] };
 */
export type Operation = Timing &
  (
    | { readonly f: "get"; readonly key: string; readonly result?: Value | undefined }
    | { readonly f: "set"; readonly key: string; readonly value: string }
    | { readonly f: "del"; readonly key: string; readonly result?: boolean | undefined }
    | { readonly f: "mset"; readonly pairs: ReadonlyArray<readonly [string, string]> }
    | {
        readonly f: "mget";
        readonly keys: readonly string[];
        readonly result?: readonly Value[] | undefined;
      }
  );

/**
 * The verdict: linearizable, or the first key (or key group) with no legal order and a short
 * counter-example.
 *
 * @example
 * const r: CheckResult = checkHistory(history);
 * if (!r.ok) throw new Error(`${r.key}: ${r.explanation}`);
 */
export type CheckResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly key: string; readonly explanation: string };

/** Largest number of operations in one search (one key, or one group of keys): larger is refused. */
export const MAX_OPS_PER_SEARCH = 200;
/** Largest number of memoised (linearized set, state) pairs in one search. */
export const MAX_SEARCH_STATES = 2_000_000;
/** Operations of the longest legal prefix shown in a counter-example. */
const SHOWN_PREFIX_OPS = 3;
/** Candidate next operations shown in a counter-example. */
const SHOWN_CANDIDATES = 4;

/**
 * Checks every key alone (an `mset` is one `set` per key, an `mget` one `get` per key).
 *
 * @example
 * expect(checkPerKey(history)).toEqual({ ok: true });
 */
export function checkPerKey(history: readonly Operation[]): CheckResult {
  validate(history);
  const by_key = new Map<string, number[]>();
  history.forEach((op, index) => {
    for (const key of new Set(keysOf(op))) {
      const list = by_key.get(key) ?? [];
      list.push(index);
      by_key.set(key, list);
    }
  });
  for (const [key, indexes] of [...by_key].sort(([a], [b]) => compare(a, b))) {
    const verdict = searchGroup(history, [key], indexes);
    if (!verdict.ok) return verdict;
  }
  return { ok: true };
}

/**
 * Checks that multi-key operations are atomic: every group of keys linked by `mset`/`mget` is
 * searched with the whole group as one state, so no read may observe half an `mset` and every
 * `mget` must be one snapshot. Keys never used together by one operation are not searched here.
 *
 * @example
 * checkAtomicity(history); // { ok: false, key: "a b", … } if an mget saw a's new value and b's old one
 */
export function checkAtomicity(history: readonly Operation[]): CheckResult {
  validate(history);
  const groups = keyGroups(history);
  const by_group = new Map<string, number[]>();
  history.forEach((op, index) => {
    const first = keysOf(op)[0];
    assert(first !== undefined, "every operation has a key");
    const root = groups.find(first);
    const list = by_group.get(root) ?? [];
    list.push(index);
    by_group.set(root, list);
  });
  for (const [root, indexes] of [...by_group].sort(([a], [b]) => compare(a, b))) {
    const keys = groups.members(root);
    if (keys.length < 2) continue; // a lone key: checkPerKey covers it exactly
    const verdict = searchGroup(history, keys, indexes);
    if (!verdict.ok) return verdict;
  }
  return { ok: true };
}

/**
 * Both checks: {@link checkPerKey} first (its counter-examples are the shortest), then
 * {@link checkAtomicity}.
 *
 * @example
 * const verdict = checkHistory(recorder.operations);
 * expect(verdict).toEqual({ ok: true });
 */
export function checkHistory(history: readonly Operation[]): CheckResult {
  const per_key = checkPerKey(history);
  return per_key.ok ? checkAtomicity(history) : per_key;
}

/**
 * A one-line description of `op` for counter-examples: index, client, call, result, interval.
 *
 * @example
 * describeOperation(op, 7); // '#7 c2 mget(a, b) → ["x", nil] [10..14]'
 */
export function describeOperation(op: Operation, index: number): string {
  const done = op.complete !== null;
  let call: string;
  switch (op.f) {
    case "get":
      call = `get(${op.key})${done ? ` → ${show(op.result ?? null)}` : ""}`;
      break;
    case "set":
      call = `set(${op.key}, ${show(op.value)})`;
      break;
    case "del":
      call = `del(${op.key})${done ? ` → ${op.result}` : ""}`;
      break;
    case "mset":
      call = `mset(${op.pairs.map(([k, v]) => `${k}=${show(v)}`).join(", ")})`;
      break;
    case "mget":
      call = `mget(${op.keys.join(", ")})${done ? ` → [${(op.result ?? []).map(show).join(", ")}]` : ""}`;
      break;
  }
  const end = done ? op.complete : op.settled_by === undefined ? "?" : `? settled by ${op.settled_by}`;
  return `#${index} c${op.client} ${call} [${op.invoke}..${end}]`;
}

// ---------------------------------------------------------------------------------------------
// Validation and key groups

/**
 * The keys an operation names, in its order.
 *
 * @example
 * keysOf({ client: 0, invoke: 0, complete: 1, f: "mget", keys: ["a", "b"], result: [null, null] }); // ["a", "b"]
 */
export function keysOf(op: Operation): readonly string[] {
  switch (op.f) {
    case "mset":
      return op.pairs.map(([k]) => k);
    case "mget":
      return op.keys;
    default:
      return [op.key];
  }
}

/** Throws InvalidError on a malformed history (a checker bug would otherwise look like a verdict). */
function validate(history: readonly Operation[]): void {
  history.forEach((op, index) => {
    const where = describeOperation(op, index);
    if (!Number.isFinite(op.invoke)) throw new InvalidError(`${where}: invoke must be a finite time`);
    if (op.complete !== null && !(op.complete >= op.invoke)) {
      throw new InvalidError(`${where}: complete must be a time ≥ invoke`);
    }
    if (keysOf(op).length === 0) throw new InvalidError(`${where}: no key`);
    const has_result = "result" in op && op.result !== undefined;
    const reads = op.f === "get" || op.f === "del" || op.f === "mget";
    if (reads && op.complete !== null && !has_result)
      throw new InvalidError(`${where}: completed without result`);
    if (op.complete === null && has_result) throw new InvalidError(`${where}: indeterminate with a result`);
    if (op.settled_by !== undefined && op.complete !== null) {
      throw new InvalidError(`${where}: settled_by is for indeterminate operations only`);
    }
    if (op.settled_by !== undefined && !(Number.isFinite(op.settled_by) && op.settled_by >= op.invoke)) {
      throw new InvalidError(`${where}: settled_by must be a finite time ≥ invoke`);
    }
    if (op.f === "mget" && has_result && op.result?.length !== op.keys.length) {
      throw new InvalidError(`${where}: mget result must have one value per key`);
    }
    if (op.f === "mset" && new Set(keysOf(op)).size !== op.pairs.length) {
      throw new InvalidError(`${where}: mset keys must be distinct`);
    }
  });
}

/** Union–find over keys: keys used together by one operation share a group. */
class KeyGroups {
  private readonly parent = new Map<string, string>();

  find(key: string): string {
    let root = key;
    for (let up = this.parent.get(root); up !== undefined && up !== root; up = this.parent.get(root))
      root = up;
    this.parent.set(key, root);
    return root;
  }

  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra === rb) return;
    const [low, high] = compare(ra, rb) < 0 ? [ra, rb] : [rb, ra];
    this.parent.set(high, low);
  }

  members(root: string): string[] {
    return [...this.parent.keys()].filter((k) => this.find(k) === root).sort(compare);
  }
}

function keyGroups(history: readonly Operation[]): KeyGroups {
  const groups = new KeyGroups();
  for (const op of history) {
    const [first, ...rest] = keysOf(op);
    assert(first !== undefined, "every operation has a key");
    groups.find(first);
    for (const key of rest) groups.union(first, key);
  }
  return groups;
}

// ---------------------------------------------------------------------------------------------
// The search

/** What an operation does to one slot (key) of the state. */
type Effect =
  | { readonly kind: "read"; readonly slot: number; readonly value: Value }
  | { readonly kind: "write"; readonly slot: number; readonly value: string }
  /** Stores nil; `existed` is what it returned, undefined when unknown (indeterminate). */
  | { readonly kind: "del"; readonly slot: number; readonly existed: boolean | undefined };

/**
 * An operation as one search sees it: its interval and effects. An indeterminate one ends at its
 * `settled_by`, else at +∞.
 */
interface SearchOp {
  readonly index: number;
  readonly invoke: number;
  readonly complete: number;
  readonly effects: readonly Effect[];
  /** Only reads: changes no state. */
  readonly read_only: boolean;
  /** Indeterminate: it may never take effect. */
  readonly indeterminate: boolean;
  /**
   * Indeterminate with a finite end: placed either with its effects or with none. (With +∞ no
   * second branch is needed: placed last, its effects are never read.)
   */
  readonly may_skip: boolean;
}

/** The effects of `op` on the slots of `slot_of` (keys outside it are ignored). */
function effectsOf(op: Operation, slot_of: ReadonlyMap<string, number>): Effect[] {
  const known = op.complete !== null;
  const effects: Effect[] = [];
  const read = (key: string, value: Value | undefined) => {
    const slot = slot_of.get(key);
    if (slot !== undefined && known && value !== undefined) effects.push({ kind: "read", slot, value });
  };
  const write = (key: string, value: string) => {
    const slot = slot_of.get(key);
    if (slot !== undefined) effects.push({ kind: "write", slot, value });
  };
  switch (op.f) {
    case "get":
      read(op.key, op.result);
      break;
    case "set":
      write(op.key, op.value);
      break;
    case "del": {
      const slot = slot_of.get(op.key);
      if (slot !== undefined) effects.push({ kind: "del", slot, existed: known ? op.result : undefined });
      break;
    }
    case "mset":
      for (const [key, value] of op.pairs) write(key, value);
      break;
    case "mget":
      op.keys.forEach((key, i) => {
        read(key, op.result?.[i]);
      });
      break;
  }
  return effects;
}

/** The state after `effects`, or undefined if they cannot happen in `state`. */
function apply(state: readonly Value[], effects: readonly Effect[]): readonly Value[] | undefined {
  let next: Value[] | undefined;
  for (const e of effects) {
    const current = (next ?? state)[e.slot] ?? null;
    if (e.kind === "read") {
      if (current !== e.value) return undefined;
      continue;
    }
    if (e.kind === "del" && e.existed !== undefined && e.existed !== (current !== null)) return undefined;
    next ??= state.slice();
    next[e.slot] = e.kind === "write" ? e.value : null;
  }
  return next ?? state;
}

/** Why `effects` cannot happen in `state` (or that they can). */
function mismatch(state: readonly Value[], effects: readonly Effect[], keys: readonly string[]): string {
  for (const e of effects) {
    const current = state[e.slot] ?? null;
    const key = keys[e.slot];
    if (e.kind === "read" && current !== e.value)
      return `${key} holds ${show(current)}, read ${show(e.value)}`;
    if (e.kind === "del" && e.existed !== undefined && e.existed !== (current !== null)) {
      return `${key} holds ${show(current)}, del returned ${e.existed}`;
    }
  }
  return "fits here, but no order of the rest does";
}

/** A call or return event in the doubly linked list of the search. */
interface Entry {
  readonly op: SearchOp | undefined; // undefined: the list head
  readonly id: number;
  readonly time: number;
  readonly is_call: boolean;
  match: Entry | undefined; // call → its return
  prev: Entry | undefined;
  next: Entry | undefined;
}

/** The deepest point the search reached: for the counter-example. */
interface Deepest {
  prefix: SearchOp[];
  /** Per prefix entry: placed with no effect (a `may_skip` operation's second branch). */
  skipped: boolean[];
  state: readonly Value[];
  linearized: Uint32Array;
}

/** Builds the group's operations and runs the search; formats a counter-example on failure. */
function searchGroup(history: readonly Operation[], keys: readonly string[], indexes: number[]): CheckResult {
  const name = keys.join(" ");
  const slot_of = new Map(keys.map((k, slot) => [k, slot]));
  const ops: SearchOp[] = [];
  for (const index of indexes) {
    const op = history[index];
    assert(op !== undefined, "index within the history");
    const effects = effectsOf(op, slot_of);
    if (effects.length === 0) continue; // an indeterminate read: no constraint
    const indeterminate = op.complete === null;
    const complete = op.complete ?? op.settled_by ?? Number.POSITIVE_INFINITY;
    ops.push({
      index,
      invoke: op.invoke,
      complete,
      effects,
      read_only: effects.every((e) => e.kind === "read"),
      indeterminate,
      may_skip: indeterminate && complete !== Number.POSITIVE_INFINITY,
    });
  }
  dropUnobservedIndeterminateWrites(ops);
  if (ops.length > MAX_OPS_PER_SEARCH) {
    throw new InvalidError(
      `${keys.length === 1 ? "key" : "key group"} ${name} has ${ops.length} operations; the checker takes at ` +
        `most ${MAX_OPS_PER_SEARCH} per search: split the history (e.g. fresh keys every ${MAX_OPS_PER_SEARCH} ops)`,
    );
  }
  const initial: Value[] = keys.map(() => null);
  const deepest = search(ops, initial, name);
  if (deepest === undefined) return { ok: true };
  return { ok: false, key: name, explanation: explain(history, keys, ops, deepest) };
}

/**
 * Removes from `ops` each indeterminate operation made only of writes (a `set` or `mset` that never
 * completed) none of whose (key, value) pairs any read observed, if no del with a known result
 * touches its keys. Exact, as Porcupine and Knossos do it: such a write can always be placed with
 * no effect (last if its interval never ends, or skipped if it has a `settled_by`), and placed with
 * its effects it can only make a read fail (no read returns its value, no del's answer depends on
 * it). Without this, every write lost in flight at a crash multiplies the search: it may be placed at
 * any point after its invoke.
 */
function dropUnobservedIndeterminateWrites(ops: SearchOp[]): void {
  const observed = new Set<string>();
  const answered_del = new Set<number>();
  for (const op of ops) {
    for (const e of op.effects) {
      if (e.kind === "read") observed.add(`${e.slot}|${e.value}`);
      else if (e.kind === "del" && e.existed !== undefined) answered_del.add(e.slot);
    }
  }
  const unobserved = (op: SearchOp) =>
    op.indeterminate &&
    op.effects.every(
      (e) => e.kind === "write" && !observed.has(`${e.slot}|${e.value}`) && !answered_del.has(e.slot),
    );
  let kept = 0;
  for (const op of ops) if (!unobserved(op)) ops[kept++] = op;
  ops.length = kept;
}

/**
 * Wing–Gong–Lowe search. Returns undefined if `ops` linearize from `initial`, else the deepest point.
 *
 * One reduction on top of the memoisation: a read-only operation that may come next and fits the
 * state is placed next without trying alternatives. This loses no order: it changes no state and,
 * being callable now, it was invoked before every unplaced operation returned, so any order that
 * places it later stays legal with it moved here. Only writes are branched on; an indeterminate one
 * with a finite end (`may_skip`) twice: with its effects, then, if that fails, with none.
 */
function search(ops: readonly SearchOp[], initial: readonly Value[], name: string): Deepest | undefined {
  const head = linkEntries(ops);
  const linearized = new Uint32Array(Math.ceil(ops.length / 32) + 1);
  const seen = new Set<string>();
  /**
   * `forced`: a read placed by the reduction: when undone, its whole configuration failed.
   * `skipped`: placed with no effect (a `may_skip` operation's second branch).
   */
  const stack: Array<{ entry: Entry; state: readonly Value[]; forced: boolean; skipped: boolean }> = [];
  let state = initial;
  let deepest: Deepest = { prefix: [], skipped: [], state, linearized: linearized.slice() };
  /** Places `call` if its (linearized set, state) pair is new; false if it was seen (it failed). */
  const place = (call: Entry, next: readonly Value[], forced: boolean, skipped = false): boolean => {
    flip(linearized, call.id);
    const memo = `${linearized.join(",")}|${JSON.stringify(next)}`;
    if (seen.has(memo)) {
      flip(linearized, call.id);
      return false;
    }
    if (seen.size >= MAX_SEARCH_STATES) {
      throw new InvalidError(`${name}: search over ${MAX_SEARCH_STATES} states; shorten the history`);
    }
    seen.add(memo);
    stack.push({ entry: call, state, forced, skipped });
    state = next;
    lift(call);
    if (stack.length > deepest.prefix.length) {
      deepest = {
        prefix: stack.map((s) => s.entry.op!),
        skipped: stack.map((s) => s.skipped),
        state,
        linearized: linearized.slice(),
      };
    }
    return true;
  };
  let entry: Entry | undefined; // undefined: a new configuration, look for a read to force first
  while (head.next !== undefined) {
    if (entry === undefined) {
      const read = fittingRead(head, state);
      if (read === undefined) entry = head.next;
      else if (place(read.call, read.next, true)) continue;
      else entry = head; // seen before: this configuration fails
    }
    if (entry === head || !entry.is_call) {
      // Nothing more fits here (an unplaced operation returned): undo choices up to a write.
      let top = stack.pop();
      while (top?.forced) {
        state = top.state;
        flip(linearized, top.entry.id);
        unlift(top.entry);
        top = stack.pop();
      }
      if (top === undefined) return deepest;
      state = top.state;
      flip(linearized, top.entry.id);
      unlift(top.entry);
      if (top.entry.op!.may_skip && !top.skipped && place(top.entry, state, false, true)) {
        entry = undefined;
        continue;
      }
      entry = top.entry.next;
      continue;
    }
    const op = entry.op;
    assert(op !== undefined && entry.next !== undefined, "a call is followed by its return");
    const next = op.read_only ? undefined : apply(state, op.effects); // reads: see fittingRead
    if (next !== undefined && place(entry, next, false)) entry = undefined;
    else if (op.may_skip && place(entry, state, false, true)) entry = undefined;
    else entry = entry.next;
  }
  return undefined;
}

/** The first read-only call that may come next and fits `state`, with its (unchanged) state. */
function fittingRead(
  head: Entry,
  state: readonly Value[],
): { call: Entry; next: readonly Value[] } | undefined {
  for (let e = head.next; e?.is_call; e = e.next) {
    if (!e.op!.read_only) continue;
    const next = apply(state, e.op!.effects);
    if (next !== undefined) return { call: e, next };
  }
  return undefined;
}

/** The list head followed by every call and return, by time; at equal times calls come first. */
function linkEntries(ops: readonly SearchOp[]): Entry {
  const entries: Entry[] = [];
  ops.forEach((op, id) => {
    const call: Entry = {
      op,
      id,
      time: op.invoke,
      is_call: true,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    const ret: Entry = {
      op,
      id,
      time: op.complete,
      is_call: false,
      match: undefined,
      prev: undefined,
      next: undefined,
    };
    call.match = ret;
    entries.push(call, ret);
  });
  entries.sort((a, b) => a.time - b.time || Number(b.is_call) - Number(a.is_call) || a.id - b.id);
  const head: Entry = {
    op: undefined,
    id: -1,
    time: Number.NEGATIVE_INFINITY,
    is_call: false,
    match: undefined,
    prev: undefined,
    next: undefined,
  };
  let last = head;
  for (const e of entries) {
    last.next = e;
    e.prev = last;
    last = e;
  }
  return head;
}

/** Removes a call and its return from the list. */
function lift(call: Entry): void {
  const ret = call.match;
  assert(ret !== undefined && call.prev !== undefined && call.next !== undefined, "lift a listed call");
  call.prev.next = call.next;
  call.next.prev = call.prev;
  assert(ret.prev !== undefined, "a return follows its call");
  ret.prev.next = ret.next;
  if (ret.next !== undefined) ret.next.prev = ret.prev;
}

/** Puts back what {@link lift} removed (in reverse order of lifting). */
function unlift(call: Entry): void {
  const ret = call.match;
  assert(ret !== undefined && ret.prev !== undefined && call.prev !== undefined, "unlift a lifted call");
  ret.prev.next = ret;
  if (ret.next !== undefined) ret.next.prev = ret;
  call.prev.next = call;
  assert(call.next !== undefined, "a call is followed by its return");
  call.next.prev = call;
}

function flip(bits: Uint32Array, id: number): void {
  const word = id >>> 5;
  bits[word] = (bits[word] ?? 0) ^ (1 << (id & 31));
}

function isSet(bits: Uint32Array, id: number): boolean {
  return ((bits[id >>> 5] ?? 0) & (1 << (id & 31))) !== 0;
}

/** The counter-example: the end of the longest legal prefix, its state, and why nothing fits next. */
function explain(
  history: readonly Operation[],
  keys: readonly string[],
  ops: readonly SearchOp[],
  deepest: Deepest,
): string {
  const describe = (op: SearchOp) => describeOperation(history[op.index]!, op.index);
  const rest = ops.filter((_, id) => !isSet(deepest.linearized, id));
  const first_return = Math.min(...rest.map((op) => op.complete));
  const candidates = rest.filter((op) => op.invoke <= first_return);
  const state = keys.map((k, slot) => `${k}=${show(deepest.state[slot] ?? null)}`).join(" ");
  const lines = [
    `no linearization of ${ops.length} operations on ${keys.length === 1 ? "key" : "keys"} ${keys.join(" ")}.`,
    `longest legal prefix: ${deepest.prefix.length} operations${deepest.prefix.length > 0 ? ", ending" : ""}`,
    ...deepest.prefix
      .map((op, i) => `  ${describe(op)}${deepest.skipped[i] ? " (placed with no effect)" : ""}`)
      .slice(-SHOWN_PREFIX_OPS),
    `state after it: ${state}; no operation that may come next fits:`,
    ...candidates
      .slice(0, SHOWN_CANDIDATES)
      .map((op) => `  ${describe(op)}: ${mismatch(deepest.state, op.effects, keys)}`),
  ];
  if (candidates.length > SHOWN_CANDIDATES)
    lines.push(`  … and ${candidates.length - SHOWN_CANDIDATES} more`);
  return lines.join("\n");
}

function show(value: Value): string {
  return value === null ? "nil" : JSON.stringify(value);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
