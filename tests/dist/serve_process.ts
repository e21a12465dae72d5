/**
 * A `walkv serve` process started by any command line — the compiled binary, `deno task serve`, Bun
 * from source — with its own environment, working directory and inherited fds. It is ready once its
 * stdout has a line containing `ready` (an event, never a sleep); its output is kept for failure
 * messages. Every process started here is tracked so `afterAll(killAll)` never leaves one running.
 *
 * @example
 * const p = await ServeProcess.start({ argv: ["./walkv", "serve", "--data", d, "--socket", s] });
 * expect(await p.stop()).toBe(0);
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";

/** Startup (recovery, workers; Deno type-checks nothing but still compiles TS) takes well under this. */
const START_TIMEOUT_MS = 30_000;

export interface ServeOptions {
  readonly argv: readonly string[];
  readonly cwd?: string;
  /** The whole environment of the process (nothing is inherited when given). */
  readonly env?: Record<string, string>;
  /** Open fds handed to the child as fd 3, 4, … (socket activation). */
  readonly extra_fds?: readonly number[];
}

const live = new Set<ServeProcess>();
const temp_dirs: string[] = [];

/** A fresh directory under os.tmpdir(), removed by {@link killAll}. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `walkv-${prefix}-`));
  temp_dirs.push(dir);
  return dir;
}

export class ServeProcess {
  private stdout_text = "";
  private stderr_text = "";
  readonly exited: Promise<number>;

  private constructor(readonly proc: Subprocess<"ignore", "pipe", "pipe">) {
    this.exited = proc.exited;
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  /** Spawns the command and resolves once it printed `ready`; rejects if it exits or times out first. */
  static async start(options: ServeOptions): Promise<ServeProcess> {
    const proc = Bun.spawn([...options.argv], {
      cwd: options.cwd,
      env: options.env,
      stdio: ["ignore", "pipe", "pipe", ...(options.extra_fds ?? [])],
    }) as Subprocess<"ignore", "pipe", "pipe">;
    const p = new ServeProcess(proc);
    let ready!: (value: boolean) => void;
    const is_ready = new Promise<boolean>((resolve) => {
      ready = resolve;
    });
    void collect(proc.stdout, (text) => {
      p.stdout_text += text;
      if (/ready/.test(p.stdout_text)) ready(true);
    }).then(() => ready(false));
    void collect(proc.stderr, (text) => {
      p.stderr_text += text;
    });
    await p.untilReady(is_ready);
    return p;
  }

  get stdout(): string {
    return this.stdout_text;
  }

  get stderr(): string {
    return this.stderr_text;
  }

  /** Sends `signal` and resolves with the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    this.proc.kill(signal);
    return await this.exited;
  }

  /** Output so far, for failure messages. */
  describe(): string {
    return `--- stdout ---\n${this.stdout_text}\n--- stderr ---\n${this.stderr_text}`;
  }

  private async untilReady(ready: Promise<boolean>): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), START_TIMEOUT_MS);
    });
    const outcome = await Promise.race([ready, timeout]);
    clearTimeout(timer);
    if (outcome === true) return;
    const why = outcome === "timeout" ? `no ready line in ${START_TIMEOUT_MS} ms` : "stdout closed";
    const code = outcome === "timeout" ? "running" : await this.exited;
    throw new Error(`walkv serve not ready: ${why} (exit ${code})\n${this.describe()}`);
  }
}

/** Reads `stream` to its end, handing each decoded chunk to `append`. */
async function collect(stream: ReadableStream<Uint8Array>, append: (text: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    append(decoder.decode(value, { stream: true }));
  }
}

/**
 * SIGKILLs every process still running, and their descendants (`deno task serve` runs the daemon as
 * its child, which a SIGKILL of the task would leave serving), and removes the temp dirs. For afterAll.
 */
export async function killAll(): Promise<void> {
  const running = [...live];
  for (const p of running) {
    for (const pid of descendants(p.proc.pid)) killQuietly(pid);
    p.proc.kill("SIGKILL");
  }
  await Promise.all(running.map((p) => p.exited));
  for (const dir of temp_dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** The pids of a process's children, theirs, and so on (Linux: /proc/PID/task/TID/children). */
function descendants(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const words = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(" ");
      for (const word of words) if (word !== "") children.push(Number(word));
    }
  } catch {
    return children; // gone meanwhile
  }
  return children.flatMap((child) => [child, ...descendants(child)]);
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}
