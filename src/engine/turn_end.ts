/**
 * Work deferred to the end of the event-loop turn, after the I/O callbacks of the turn ran: one
 * `setImmediate` runs every task queued, in order, and a task queued while they run joins the same
 * pass (a plain `setImmediate` queued from an immediate would wait for the next turn, after another
 * round of socket reads). Tasks queued with {@link TurnEnd.last} run once no other task is left:
 * the WAL step of a lone I/O worker with fsync `always` runs last, so that one fdatasync covers
 * every write of the turn, the batch of SETs flushed at the end of the turn included.
 *
 * One per thread ({@link turn_end}): every deferral of a thread must share it to be ordered.
 *
 * @example
 * turn_end.run(() => sets.flush());   // the turn's SETs become one record
 * turn_end.last(() => writer.step()); // then one write(2) and one fdatasync for the turn
 */
import { setImmediate } from "node:timers";

/** Passes over newly queued tasks in one drain before it yields to the event loop (a bound on a livelock). */
const DRAIN_PASSES_MAX = 1000;

export class TurnEnd {
  private tasks: Array<() => void> = [];
  private lasts: Array<() => void> = [];
  private armed = false;
  private readonly drain = () => this.runQueued();

  /** `schedule` runs its callback at the end of the turn (tests drive it by hand). */
  constructor(private readonly schedule: (callback: () => void) => void = setImmediate) {}

  /** Runs `task` at the end of this turn, after the tasks queued before it. */
  run(task: () => void): void {
    this.tasks.push(task);
    this.arm();
  }

  /** Runs `task` at the end of this turn, once no task of {@link run} is left. */
  last(task: () => void): void {
    this.lasts.push(task);
    this.arm();
  }

  private arm(): void {
    if (this.armed) return;
    this.armed = true;
    this.schedule(this.drain);
  }

  /** Runs tasks until none is left; one that throws ends the pass (the rest run next turn). */
  private runQueued(): void {
    try {
      for (let pass = 0; pass < DRAIN_PASSES_MAX; pass++) {
        const from_tasks = this.tasks.length > 0;
        const batch = from_tasks ? this.tasks : this.lasts;
        if (batch.length === 0) return;
        if (from_tasks) this.tasks = [];
        else this.lasts = [];
        for (let i = 0; i < batch.length; i++) {
          try {
            batch[i]!();
          } catch (error) {
            const rest = batch.slice(i + 1);
            if (from_tasks) this.tasks = rest.concat(this.tasks);
            else this.lasts = rest.concat(this.lasts);
            throw error;
          }
        }
      }
    } finally {
      this.armed = false; // tasks queued during the drain ran in it, or arm the next one here
      if (this.tasks.length > 0 || this.lasts.length > 0) this.arm();
    }
  }
}

/** This thread's {@link TurnEnd}. */
export const turn_end = new TurnEnd();
