/**
 * Fault points, for tests only: `WALKV_CRASH_AT=<point>` makes the process SIGKILL itself — no
 * cleanup, exactly like `kill -9` — when a thread reaches that point (two points inject other
 * faults, {@link NOT_KILL_POINTS}); `WALKV_CRASH_AFTER=<n>` (default 1) waits for the n-th time
 * this thread reaches it. The environment is read once per thread, when
 * this module is first evaluated: the main thread imports it at start-up, so an unknown point name
 * stops the process before it opens anything. Unset, {@link crashPoint} costs one comparison.
 * docs/RELIABILITY.md ("Fault points") says where each point is.
 *
 * @example
 * // WALKV_CRASH_AT=wal-after-write-before-fsync walkv serve …
 * crashPoint("wal-after-write-before-fsync"); // the process dies here
 */
import { InvalidError } from "./errors.ts";

/** Every fault point, in the order the data travels. */
export const CRASH_POINTS = [
  "wal-after-write-before-fsync",
  "wal-mid-rotation",
  "checkpoint-after-tmp-write",
  "checkpoint-after-tmp-fsync",
  "checkpoint-after-rename",
  "checkpoint-before-wal-deletion",
  "io-worker-accept",
  "host-close-hang",
] as const;

export type CrashPointName = (typeof CRASH_POINTS)[number];

/** The faults of the points that do not kill the process; every other point SIGKILLs it. */
const OTHER_FAULTS: Partial<Record<CrashPointName, () => void>> = {
  // The thread dies of an uncaught error, as a bug would kill it (tests/server/fail_fast.test.ts).
  "io-worker-accept": () =>
    queueMicrotask(() => {
      throw new Error("injected fault: an I/O worker dies (WALKV_CRASH_AT=io-worker-accept)");
    }),
  // The thread blocks for good, as a lock never released would leave it (lifecycle.test.ts).
  "host-close-hang": () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0),
};

/** The points whose fault is not a process kill (see OTHER_FAULTS). */
export const NOT_KILL_POINTS = Object.keys(OTHER_FAULTS) as readonly CrashPointName[];

/** The armed point and how many times it must be reached before the process dies. */
export interface CrashSetting {
  readonly point: CrashPointName;
  readonly after: number;
}

/** Largest accepted `WALKV_CRASH_AFTER`. */
const CRASH_AFTER_MAX = 1_000_000_000;

/**
 * Parses `WALKV_CRASH_AT` / `WALKV_CRASH_AFTER` from `env`. Undefined when no point is armed.
 * Throws InvalidError naming the valid points for an unknown name, or for a bad count.
 *
 * @example
 * crashSettingFromEnv({ WALKV_CRASH_AT: "wal-mid-rotation", WALKV_CRASH_AFTER: "3" });
 * // { point: "wal-mid-rotation", after: 3 }
 */
export function crashSettingFromEnv(env: Record<string, string | undefined>): CrashSetting | undefined {
  const name = env.WALKV_CRASH_AT;
  const after_text = env.WALKV_CRASH_AFTER;
  if (name === undefined || name === "") {
    if (after_text !== undefined && after_text !== "")
      throw new InvalidError("WALKV_CRASH_AFTER is set but WALKV_CRASH_AT is not");
    return undefined;
  }
  const point = CRASH_POINTS.find((p) => p === name);
  if (point === undefined) {
    throw new InvalidError(
      `WALKV_CRASH_AT: "${name}" is not a fault point; valid points: ${CRASH_POINTS.join(", ")}`,
    );
  }
  const after_raw = after_text === undefined || after_text === "" ? "1" : after_text;
  const after = Number(after_raw);
  if (!/^\d+$/.test(after_raw) || after < 1 || after > CRASH_AFTER_MAX) {
    throw new InvalidError(
      `WALKV_CRASH_AFTER: "${after_raw}" is not a whole number in [1, ${CRASH_AFTER_MAX}]`,
    );
  }
  return { point, after };
}

const setting = crashSettingFromEnv(process.env);
/** The armed point of this thread; undefined (never equal to a name) when none is. */
const armed: CrashPointName | undefined = setting?.point;
/** Times the armed point may still be reached before the process dies. */
let remaining = setting?.after ?? 0;

/**
 * Marks fault point `name`: if it is the armed one and this is the WALKV_CRASH_AFTER-th time this
 * thread reached it, the whole process is killed with SIGKILL at once (or the point's other fault,
 * {@link NOT_KILL_POINTS}, is injected). Otherwise a no-op.
 *
 * @example
 * this.io.write(file, bytes, offset);
 * crashPoint("wal-after-write-before-fsync");
 * this.io.sync(file);
 */
export function crashPoint(name: CrashPointName): void {
  if (name !== armed) return;
  remaining--;
  if (remaining > 0) return;
  const fault = OTHER_FAULTS[name];
  if (fault === undefined) process.kill(process.pid, "SIGKILL");
  else fault();
}
