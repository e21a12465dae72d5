/**
 * The allocator setting `walkv serve` runs with under Bun. Bun allocates with mimalloc, which hands
 * freed pages back to the kernel 100 ms after they fall empty (`purge_delay`); a daemon that frees
 * and reuses memory all the time then takes page faults (and zeroed pages) for it. Under SET at
 * pipeline 16 that was 66–76k page faults in 3 s, against 13.6–20k with a 1 s delay
 * (docs/PROFILING.md, fifteenth session). mimalloc reads `MIMALLOC_PURGE_DELAY` once, when the
 * process starts: so `walkv serve`, when the variable is not set, starts itself again at once with
 * it set to {@link PURGE_DELAY_MS}, by execve(2), before it reads any file: the same process (its
 * pid, which systemd and a pid file know), stdio, the same arguments. Bun marks the descriptors a
 * process inherits close-on-exec, so there is no restart when one is in use: socket activation
 * (`LISTEN_FDS`; walkv.service sets the variable itself) or a `/dev/fd/N` path among the arguments
 * or `WALKV_*` variables (`--auth-token-file <(...)`). A value the operator set is kept (100 is
 * mimalloc's own). If the restart fails, walkv says so and runs on without it. Deno does not
 * allocate with mimalloc: nothing happens there.
 *
 * @example
 * startWithAllocatorSettings(argv, process.env, runtimeExec()); // returns only without a restart
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
 * Under Bun, with `MIMALLOC_PURGE_DELAY` unset and no inherited descriptor in use (`argv`: the
 * command's arguments): replaces this process with itself, the variable set (never returns).
 * Otherwise returns at once.
 */
export function startWithAllocatorSettings(
  argv: readonly string[],
  env: Record<string, string | undefined>,
  exec: Exec | undefined,
  log: (line: string) => void = (line) => console.error(line),
): void {
  if (exec === undefined || env.MIMALLOC_PURGE_DELAY !== undefined || usesInheritedFds(argv, env)) return;
  // BUN_OPTIONS' flags are in execArgv already: passed on twice, `--preload` would run twice.
  const { BUN_OPTIONS: _, ...rest } = env;
  try {
    exec.execve(exec.execPath, [exec.execPath, ...restartArgs(exec)], {
      ...rest,
      MIMALLOC_PURGE_DELAY: String(PURGE_DELAY_MS),
    });
  } catch (error) {
    log(
      `walkv serve: could not restart with MIMALLOC_PURGE_DELAY=${PURGE_DELAY_MS} (${String(error)}); running without it`,
    );
  }
}

/** Descriptor paths a restart would lose (Bun marks inherited descriptors close-on-exec). */
const INHERITED_FD_PATHS = ["/dev/fd/", "/proc/self/fd/", "/dev/stdin"];

/** True under socket activation, or if an argument or `WALKV_*` variable names an inherited descriptor. */
function usesInheritedFds(argv: readonly string[], env: Record<string, string | undefined>): boolean {
  if (env.LISTEN_FDS !== undefined) return true;
  const values = [
    ...argv,
    ...Object.entries(env).flatMap(([name, value]) =>
      name.startsWith("WALKV_") && value !== undefined ? [value] : [],
    ),
  ];
  return values.some((value) => INHERITED_FD_PATHS.some((path) => value.includes(path)));
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
