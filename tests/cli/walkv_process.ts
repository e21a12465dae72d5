/**
 * Runs the `walkv` command from source to completion, for CLI tests: exit code and whole output.
 * The environment is PATH plus what the test passes, so no WALKV_* variable of the caller leaks in.
 *
 * @example
 * const run = await runWalkv(["ping", "--socket", daemon.socket_path]);
 * expect(run.code).toBe(0);
 */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runWalkv(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const proc = Bun.spawn(["node_modules/.bin/bun", "src/cli/main.ts", ...args], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: process.env.PATH ?? "", ...env },
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}
