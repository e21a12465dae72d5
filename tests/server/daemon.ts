/**
 * Spawns `walkv serve` for end-to-end tests and stops it. A daemon is ready when its stdout has a
 * line containing `ready` (an event, never a sleep); its output is kept for assertions. Every
 * daemon started here is tracked, so `afterAll(stopAllDaemons)` never leaves one running.
 *
 * @example
 * const d = await Daemon.start({ args: ["--fsync", "no"] });
 * const c = await d.client();
 * expect(await c.call("ping")).toEqual([1, 0, "pong"]);
 * expect(await d.stop()).toBe(0);
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Subprocess } from "bun";
import { RawClient } from "./raw_client.ts";

const BUN = "node_modules/.bin/bun";
const MAIN = "src/cli/main.ts";
/** Starting a daemon (recovery, workers) takes well under this. */
const START_TIMEOUT_MS = 20_000;

export interface StartOptions {
  /** Extra flags after `--data DIR --socket PATH --workers N`. */
  readonly args?: readonly string[];
  /** Directory holding `data/` and `walkv.sock`; a fresh temp dir if omitted (reuse it to restart). */
  readonly dir?: string;
  readonly workers?: number;
  /** Data directory; `DIR/data` if omitted. */
  readonly data_dir?: string;
  /** Pass false to give no `--data` (flag-error tests). */
  readonly with_data?: boolean;
  /** Extra environment variables (e.g. a fault point, WALKV_CRASH_AT). */
  readonly env?: Readonly<Record<string, string>>;
}

const live = new Set<Daemon>();
const temp_dirs: string[] = [];

/** A fresh directory under os.tmpdir(), removed by {@link stopAllDaemons}. */
export function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "walkv-e2e-"));
  temp_dirs.push(dir);
  return dir;
}

/** Output of a process, collected as it arrives, with waiters on patterns. */
class Output {
  text = "";
  private readonly listeners = new Set<() => void>();

  /** Resolves once the stream ended: all output is in `text`. */
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = this.pump(stream);
  }

  private async pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    const reader = stream.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      this.text += decoder.decode(value, { stream: true });
      for (const l of this.listeners) l();
    }
  }

  /** Resolves with the first match of `pattern`; rejects when `exited` settles first. */
  waitFor(pattern: RegExp, exited: Promise<number>, what: () => string): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.text.match(pattern);
        if (match === null) return false;
        this.listeners.delete(check);
        clearTimeout(timer);
        resolve(match);
        return true;
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`timed out waiting for ${pattern}\n${what()}`));
      }, START_TIMEOUT_MS);
      if (check()) return;
      this.listeners.add(check);
      void exited.then((code) => {
        if (check()) return; // `exited` settles after all output was read
        this.listeners.delete(check);
        clearTimeout(timer);
        reject(new Error(`daemon exited with ${code} before ${pattern}\n${what()}`));
      });
    });
  }
}

export class Daemon {
  readonly data_dir: string;
  readonly socket_path: string;
  /** The exit code, once the process exited and all its output was read. */
  readonly exited: Promise<number>;
  private readonly out: Output;
  private readonly err: Output;

  private constructor(
    readonly dir: string,
    data_dir: string,
    readonly proc: Subprocess<"ignore", "pipe", "pipe">,
  ) {
    this.data_dir = data_dir;
    this.socket_path = path.join(dir, "walkv.sock");
    this.out = new Output(proc.stdout);
    this.err = new Output(proc.stderr);
    this.exited = Promise.all([proc.exited, this.out.done, this.err.done]).then(([code]) => code);
    live.add(this);
    void this.exited.then(() => live.delete(this));
  }

  /** Spawns `walkv serve` without waiting for anything. */
  static spawn(options: StartOptions = {}): Daemon {
    const dir = options.dir ?? tempDir();
    const data_dir = options.data_dir ?? path.join(dir, "data");
    const argv = [BUN, MAIN, "serve"];
    if (options.with_data !== false) argv.push("--data", data_dir);
    argv.push("--socket", path.join(dir, "walkv.sock"), "--workers", String(options.workers ?? 2));
    argv.push(...(options.args ?? []));
    const env = options.env === undefined ? undefined : { ...process.env, ...options.env };
    const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env });
    return new Daemon(dir, data_dir, proc);
  }

  /** Spawns `walkv serve` and resolves once it printed its `ready` line. */
  static async start(options: StartOptions = {}): Promise<Daemon> {
    const daemon = Daemon.spawn(options);
    await daemon.out.waitFor(/ready/, daemon.exited, () => daemon.describe());
    return daemon;
  }

  get stdout(): string {
    return this.out.text;
  }

  get stderr(): string {
    return this.err.text;
  }

  /** Resolves with the first match of `pattern` in stderr (the log). */
  waitForLog(pattern: RegExp): Promise<RegExpMatchArray> {
    return this.err.waitFor(pattern, this.exited, () => this.describe());
  }

  /** A new raw connection to this daemon's socket. */
  client(): Promise<RawClient> {
    return RawClient.connect(this.socket_path);
  }

  /** Sends `signal` (SIGTERM by default) and resolves with the exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number> {
    this.proc.kill(signal);
    return await this.exited;
  }

  /** The process state and its output, for failure messages. */
  describe(): string {
    return `--- stdout ---\n${this.out.text}\n--- stderr ---\n${this.err.text}`;
  }
}

/** Kills every daemon still running (SIGKILL) and removes the temp dirs. For afterAll. */
export async function stopAllDaemons(): Promise<void> {
  const running = [...live];
  for (const d of running) d.proc.kill("SIGKILL");
  await Promise.all(running.map((d) => d.exited));
  for (const dir of temp_dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** Pause between two probes of {@link waitUntil}. */
const POLL_INTERVAL_MS = 10;

/**
 * Probes `condition` until it holds; throws after `timeout_ms`. Only for server-side state that a
 * client cannot observe as an event (e.g. that the server closed a connection the client does not
 * read); each probe is a round trip, never a guess at a duration.
 */
export async function waitUntil(
  condition: () => Promise<boolean>,
  what: string,
  timeout_ms = 10_000,
): Promise<void> {
  const deadline = performance.now() + timeout_ms;
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

/** Two daemons for client tests: `plain` (no token) and `guarded` (needs `token`, in `token_file`). */
export interface DaemonPair {
  readonly plain: Daemon;
  readonly guarded: Daemon;
  readonly token_file: string;
}

/**
 * Starts a plain daemon (`--fsync no`) and one guarded by `token` (written to a 0600 file), in
 * parallel; `guarded_args` are added to the guarded one's flags.
 *
 * @example
 * const { plain, guarded, token_file } = await startDaemonPair("s3cret", ["--max-value-bytes", "64"]);
 */
export async function startDaemonPair(token: string, guarded_args: readonly string[]): Promise<DaemonPair> {
  const token_file = path.join(tempDir(), "token");
  fs.writeFileSync(token_file, `${token}\n`, { mode: 0o600 });
  const [plain, guarded] = await Promise.all([
    Daemon.start({ args: ["--fsync", "no"] }),
    Daemon.start({ args: ["--auth-token-file", token_file, ...guarded_args] }),
  ]);
  return { plain, guarded, token_file };
}
