/**
 * The allocator setting `walkv serve` runs with under Bun. Bun allocates with mimalloc, which hands
 * freed pages back to the kernel 10 ms after they fall empty; a daemon that frees and reuses the
 * same memory every few milliseconds then takes a page fault (and a zeroed page) for each reuse.
 * Under SET at pipeline 16 that was 76,000 page faults in 3 s, against 13,600 with a 1 s delay, and
 * 846–896k against 910–932k SET/s (docs/PROFILING.md, fifteenth session). mimalloc reads
 * `MIMALLOC_PURGE_DELAY` once, when the process starts: so `walkv serve`, when the variable is not
 * set, starts itself again at once with it set to {@link PURGE_DELAY_MS}, by execve(2): the same
 * process (its pid, which systemd and a pid file know), stdio, the same arguments. Not under socket
 * activation (`LISTEN_FDS`): Bun marks the descriptors it inherits close-on-exec, so systemd's
 * socket would not survive the restart; walkv.service sets the variable itself instead. A value the
 * operator set is kept (10 restores mimalloc's own). Deno does not allocate with mimalloc: nothing
 * happens there.
 *
 * @example
 * startWithAllocatorSettings(process.env, runtimeExec()); // returns only if no restart was needed
 */

/** Milliseconds mimalloc keeps freed pages before it returns them to the kernel. */
export const PURGE_DELAY_MS = 1000;

/** What the restart is made of: the runtime's executable, the arguments, the environment. */
export interface Exec {
  readonly execPath: string;
  readonly argv: readonly string[];
  readonly execArgv: readonly string[];
  readonly execve: (path: string, args: string[], env: Record<string, string | undefined>) => never;
}

/**
 * Under Bun, with `MIMALLOC_PURGE_DELAY` unset and no inherited socket (`LISTEN_FDS`): replaces
 * this process with itself, the variable set (never returns). Otherwise returns at once.
 */
export function startWithAllocatorSettings(
  env: Record<string, string | undefined>,
  exec: Exec | undefined,
): void {
  if (exec === undefined || env.MIMALLOC_PURGE_DELAY !== undefined || env.LISTEN_FDS !== undefined) return;
  exec.execve(exec.execPath, [exec.execPath, ...restartArgs(exec)], {
    ...env,
    MIMALLOC_PURGE_DELAY: String(PURGE_DELAY_MS),
  });
}

/**
 * The arguments after the executable: a compiled walkv (its entry point in Bun's embedded file
 * system, `/$bunfs/`) takes the command line only; `bun [flags] main.ts …` takes its flags and
 * script too.
 */
function restartArgs(exec: Exec): string[] {
  const script = exec.argv[1] ?? "";
  if (script.startsWith("/$bunfs/")) return exec.argv.slice(2);
  return [...exec.execArgv, ...exec.argv.slice(1)];
}

/** This process's Exec under Bun (which has `process.execve`), else undefined (Deno). */
export function runtimeExec(): Exec | undefined {
  const execve = (process as { execve?: Exec["execve"] }).execve;
  if (typeof (globalThis as { Bun?: unknown }).Bun === "undefined" || typeof execve !== "function")
    return undefined;
  return {
    execPath: process.execPath,
    argv: process.argv,
    execArgv: process.execArgv,
    execve: (path, args, env) => execve.call(process, path, args, env),
  };
}
