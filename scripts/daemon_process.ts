/**
 * A `walkv serve` child process for the scripts (torture, soak, bench-daemon): started from source with Bun, ready once
 * its stdout has a line containing `ready` (an event), killed with SIGKILL or stopped with SIGTERM.
 * Its stderr (the daemon log: recovery, checkpoints) is kept for the report.
 *
 * @example
 * const daemon = await DaemonProcess.start(["--data", dir, "--socket", sock]);
 * const exit = await daemon.kill9(); // { code: null, signal: "SIGKILL" }
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const BUN = fileURLToPath(new URL("../node_modules/.bin/bun", import.meta.url));
const MAIN = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
/** Recovery and worker start take well under this; past it the start counts as failed. */
const START_TIMEOUT_MS = 30_000;

/**
 * How a daemon process ended.
 *
 * @example
 * const exit: DaemonExit = { code: 0, signal: null };
 */
export interface DaemonExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * One daemon process; see the module comment.
 *
 * @example
 * const daemon = await DaemonProcess.start(args);
 * console.log(daemon.stderr);
 */
export class DaemonProcess {
  private stderr_text = "";
  private stdout_text = "";
  /** Resolves once the process exited and its output was read. */
  readonly exited: Promise<DaemonExit>;

  private constructor(private readonly child: ChildProcess) {
    const stdout_done = collect(child.stdout!, (text) => {
      this.stdout_text += text;
    });
    const stderr_done = collect(child.stderr!, (text) => {
      this.stderr_text += text;
    });
    const exit = new Promise<DaemonExit>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal })),
    );
    this.exited = Promise.all([exit, stdout_done, stderr_done]).then(([result]) => result);
  }

  /**
   * Spawns `bun src/cli/main.ts serve ...args` and resolves once it printed `ready`. Rejects with
   * its log if it exits first or is not ready within START_TIMEOUT_MS (it is then killed).
   *
   * @example
   * const daemon = await DaemonProcess.start(["--data", dir, "--socket", sock, "--fsync", "always"]);
   */
  static async start(args: readonly string[]): Promise<DaemonProcess> {
    const child = spawn(BUN, [MAIN, "serve", ...args], { stdio: ["ignore", "pipe", "pipe"] });
    const daemon = new DaemonProcess(child);
    const ready = new Promise<boolean>((resolve) => {
      child.stdout!.on("data", () => {
        if (daemon.stdout_text.includes("ready")) resolve(true);
      });
      void daemon.exited.then(() => resolve(daemon.stdout_text.includes("ready")));
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timed_out = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), START_TIMEOUT_MS);
    });
    const started = await Promise.race([ready, timed_out]);
    clearTimeout(timer);
    if (started) return daemon;
    child.kill("SIGKILL");
    const exit = await daemon.exited;
    throw new Error(`the daemon did not start (exit ${describeExit(exit)}):\n${daemon.stderr}`);
  }

  /** The daemon log so far. */
  get stderr(): string {
    return this.stderr_text;
  }

  /** The process id. */
  get pid(): number {
    return this.child.pid!;
  }

  /**
   * SIGKILLs the process and resolves with how it ended.
   *
   * @example
   * const { signal } = await daemon.kill9();
   */
  async kill9(): Promise<DaemonExit> {
    this.child.kill("SIGKILL");
    return await this.exited;
  }

  /**
   * SIGTERMs the process (clean shutdown: final checkpoint) and resolves with how it ended.
   *
   * @example
   * const { code } = await daemon.stop(); // 0
   */
  async stop(): Promise<DaemonExit> {
    this.child.kill("SIGTERM");
    return await this.exited;
  }
}

/**
 * "code 0", "signal SIGKILL".
 *
 * @example
 * describeExit({ code: null, signal: "SIGKILL" }); // "signal SIGKILL"
 */
export function describeExit(exit: DaemonExit): string {
  return exit.signal !== null ? `signal ${exit.signal}` : `code ${exit.code}`;
}

function collect(stream: NodeJS.ReadableStream, append: (text: string) => void): Promise<void> {
  stream.setEncoding("utf8");
  stream.on("data", (text: string) => append(text));
  return new Promise((resolve) => stream.on("end", () => resolve()));
}
