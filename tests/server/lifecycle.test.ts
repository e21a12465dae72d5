/**
 * End-to-end tests of the daemon's life: file permissions, one daemon per data directory, graceful
 * SIGTERM shutdown with in-flight requests, restart with recovery, and kill -9 then restart.
 * The tests run in order on one data directory; each starts the daemon the previous one stopped.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as path from "node:path";
import { CLOSE_AFTER_DRAIN_TIMEOUT_MS } from "../../src/server/shutdown_watchdog.ts";
import { Daemon, stopAllDaemons, tempDir } from "./daemon.ts";
import { concat, frame, packr, type RawClient, type Response } from "./raw_client.ts";

const dir = tempDir();
let daemon: Daemon | undefined;

afterAll(stopAllDaemons);

async function running(): Promise<Daemon> {
  daemon ??= await Daemon.start({ dir, args: ["--fsync", "always", "--shutdown-timeout", "10"] });
  return daemon;
}

/** Every file and directory under `root` with its permission bits. */
function modes(root: string): Array<[string, number]> {
  const out: Array<[string, number]> = [];
  for (const entry of fs.readdirSync(root, { recursive: true, withFileTypes: true })) {
    const full = path.join(entry.parentPath, entry.name);
    out.push([full, fs.statSync(full).mode & 0o777]);
  }
  return out;
}

/** The frames of `requests`, concatenated: one write for a whole pipeline. */
function pipeline(requests: unknown[]): Uint8Array {
  return concat(...requests.map((r) => frame(packr.pack(r))));
}

describe("daemon lifecycle", () => {
  test("socket 0600 by default, data directory 0700, data files 0600", async () => {
    const d = await running();
    expect(fs.statSync(d.socket_path).mode & 0o777).toBe(0o600);
    expect(fs.statSync(d.data_dir).mode & 0o777).toBe(0o700);
    const c = await d.client();
    expect(await c.call("set", "perm", "x")).toEqual([1, 0, true]);
    expect((await c.call("checkpoint"))[1]).toBe(0);
    expect(await c.call("set", "after-checkpoint", "y")).toEqual([3, 0, true]);
    c.close();
    const entries = modes(d.data_dir);
    expect(entries.map(([p]) => path.basename(p))).toContain("data.db");
    for (const [p, mode] of entries) {
      const want = fs.statSync(p).isDirectory() ? 0o700 : 0o600;
      if (mode !== want) throw new Error(`${p} has mode 0${mode.toString(8)}, want 0${want.toString(8)}`);
    }
  });

  test("a second walkv serve on the same data directory is refused", async () => {
    const d = await running();
    const second = Daemon.spawn({ data_dir: d.data_dir });
    const code = await second.exited;
    expect(code).not.toBe(0);
    expect(second.stderr).toMatch(new RegExp(`data directory .* is in use by pid ${d.proc.pid}`));
    expect(second.stdout).not.toMatch(/ready/);
    const c = await d.client(); // the first one is untouched
    expect(await c.call("get", "perm")).toEqual([1, 0, "x"]);
    c.close();
  });

  test("a walkv serve on a socket a live server answers on is refused, and leaves it in place", async () => {
    const d = await running();
    const second = Daemon.spawn({ dir: d.dir, data_dir: path.join(tempDir(), "data") });
    const code = await second.exited;
    expect(code).not.toBe(0);
    expect(second.stderr).toContain(`${d.socket_path} is in use: a live server accepts connections there`);
    expect(second.stdout).not.toMatch(/ready/);
    const c = await d.client(); // the first one still owns its socket
    expect(await c.call("get", "perm")).toEqual([1, 0, "x"]);
    c.close();
  });

  test("SIGTERM with writes in flight: every request read is answered, then exit 0, socket removed", async () => {
    // 1000 small sets fit in one read of the socket: all were read when the first answer came.
    const responses = await sigtermDuringPipeline(await running(), "short", 1000);
    expect(responses.length).toBe(1000);
  }, 30_000);

  test("restart recovers: every acknowledged write is present", async () => {
    const c = await (await running()).client();
    expect(await c.call("get", "perm")).toEqual([1, 0, "x"]);
    expect(await c.call("get", "after-checkpoint")).toEqual([2, 0, "y"]);
    expect(recoveredPrefix(await mgetNumbers(c, "short", 1000))).toBe(1000);
    c.close();
  });

  test("SIGTERM during a long pipeline: the answers are an in-order prefix, all durable", async () => {
    const d = await running();
    const n = 20_000;
    const answered = (await sigtermDuringPipeline(d, "long", n)).length;
    const again = await running();
    const c = await again.client();
    // Requests the daemon read were applied in order. Some may be applied and answered while the
    // answer is lost: the daemon closes with unread requests in its socket buffer, and a Bun client
    // then drops the tail of what it had not read yet (ECONNRESET) — a Python client gets it all.
    expect(recoveredPrefix(await mgetNumbers(c, "long", n))).toBeGreaterThanOrEqual(answered);
    c.close();
  }, 30_000);

  test("kill -9 then restart: every acknowledged write is present, the rest is a prefix", async () => {
    const d = await running();
    const c = await d.client();
    const sets = (from: number, to: number) =>
      pipeline(
        Array.from({ length: to - from }, (_, i) => [
          from + i + 1,
          "set",
          `k9:${from + i + 1}`,
          from + i + 1,
        ]),
      );
    const acked = 2000;
    c.sendRaw(sets(0, acked));
    for (let i = 0; i < acked; i++) expect(await c.next()).toEqual([i + 1, 0, true]);
    // More writes, killed somewhere in the middle of them.
    const total = 20_000;
    c.sendRaw(sets(acked, total));
    expect(await c.next()).toEqual([acked + 1, 0, true]);
    d.proc.kill("SIGKILL");
    await d.exited;
    daemon = undefined;
    expect(d.stderr).not.toMatch(/shutdown complete/);

    const again = await running(); // takes over the pid file the killed daemon left
    await again.waitForLog(/recovery: replayed [1-9]\d* WAL records/);
    const r = await again.client();
    expect(recoveredPrefix(await mgetNumbers(r, "k9", total))).toBeGreaterThan(acked);
    expect(await r.call("get", "perm")).toEqual([2, 0, "x"]);
    r.close();
    expect(await again.stop()).toBe(0);
    daemon = undefined;
  }, 30_000);

  test("SIGTERM as clients quit with SETs in flight: the daemon still exits, after its last writes settled", async () => {
    // Closed connections count as drained while their last SETs may still sit in a batch; a worker
    // terminated inside that batch left shard mutexes held and the final checkpoint waited forever
    // (RELIABILITY.md "Shutdown under a client that quits"). A race: several rounds.
    for (let round = 0; round < 4; round++) {
      const d = await running();
      const clients = await Promise.all(Array.from({ length: 16 }, () => d.client()));
      for (const [j, c] of clients.entries()) {
        c.sendRaw(pipeline(Array.from({ length: 2000 }, (_, i) => [i + 1, "set", `quit:${j}:${i}`, i])));
      }
      await clients[0]!.next(); // the daemon is applying them
      for (const c of clients) c.close();
      d.proc.kill("SIGTERM");
      expect({ round, exit: await exitWithin(d, 15_000) }).toEqual({ round, exit: 0 });
      daemon = undefined;
      expect(d.stderr).toMatch(/shutdown complete/);
    }
  }, 90_000);
});

/**
 * Sends `n` sets `[i, "set", "<prefix>:i", i]` in one write, sends SIGTERM once the first answer
 * arrived, reads until the daemon closes the connection, and checks the shutdown: the answers are
 * `[1..k, 0, true]` in order, exit 0, socket and pid file removed, "shutdown complete" logged.
 */
async function sigtermDuringPipeline(d: Daemon, prefix: string, n: number): Promise<Response[]> {
  const c = await d.client();
  c.sendRaw(pipeline(Array.from({ length: n }, (_, i) => [i + 1, "set", `${prefix}:${i + 1}`, i + 1])));
  const responses: Response[] = [await c.next()];
  d.proc.kill("SIGTERM");
  for (;;) {
    try {
      responses.push(await c.next());
    } catch {
      break; // closed by the daemon
    }
  }
  await c.closed;
  for (const [i, r] of responses.entries()) expect(r).toEqual([i + 1, 0, true]);
  expect(await d.exited).toBe(0);
  daemon = undefined;
  expect(fs.existsSync(d.socket_path)).toBe(false);
  expect(fs.existsSync(path.join(d.data_dir, "walkv.pid"))).toBe(false);
  expect(d.stderr).toMatch(/SIGTERM: shutting down/);
  expect(d.stderr).toMatch(/shutdown complete/);
  // Every connection finished long before the shutdown timeout: nothing was cut short.
  expect(d.stderr).not.toMatch(/still running after/);
  return responses;
}

/** The daemon's exit code, or "hung" if it has not exited within `timeout_ms`. */
async function exitWithin(d: Daemon, timeout_ms: number): Promise<number | "hung"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"hung">((resolve) => (timer = setTimeout(() => resolve("hung"), timeout_ms)));
  try {
    return await Promise.race([d.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The values of `<prefix>:1..n`, by mget. */
async function mgetNumbers(c: RawClient, prefix: string, n: number): Promise<Array<number | null>> {
  const keys = Array.from({ length: n }, (_, i) => `${prefix}:${i + 1}`);
  const [, code, values] = (await c.call("mget", keys)) as [number, number, Array<number | null>];
  expect(code).toBe(0);
  return values;
}

/** How many of `values` are present as `i + 1`, checking that they form a prefix. */
function recoveredPrefix(values: Array<number | null>): number {
  const missing = values.indexOf(null);
  const prefix = missing === -1 ? values.length : missing;
  for (const [i, v] of values.entries()) {
    if (v !== (i < prefix ? i + 1 : null))
      throw new Error(`key ${i + 1} is ${v}; recovered prefix ${prefix}`);
  }
  return prefix;
}

describe("one I/O worker: the I/O worker writes the WAL itself", () => {
  test.each(["everysec", "always"])(
    "fsync %s: acknowledged writes survive SIGTERM and kill -9; a clean stop leaves no WAL",
    async (fsync) => {
      const local_dir = tempDir();
      const start = () => Daemon.start({ dir: local_dir, workers: 1, args: ["--fsync", fsync] });
      const d = await start();
      await d.waitForLog(/wal: written (and synced )?by the I\/O worker itself/);
      const c = await d.client();
      c.sendRaw(pipeline(Array.from({ length: 500 }, (_, i) => [i + 1, "set", `local:${i + 1}`, i + 1])));
      for (let i = 0; i < 500; i++) expect(await c.next()).toEqual([i + 1, 0, true]);
      c.close();
      expect(await d.stop()).toBe(0);
      const wal = fs.readdirSync(path.join(local_dir, "data", "wal")).filter((name) => name.endsWith(".wal"));
      expect(wal).toEqual([]);

      const again = await start();
      const r = await again.client();
      expect(recoveredPrefix(await mgetNumbers(r, "local", 500))).toBe(500);
      for (let i = 0; i < 300; i++)
        expect((await r.call("set", `killed:${i + 1}`, i + 1)).slice(1)).toEqual([0, true]);
      again.proc.kill("SIGKILL");
      await again.exited;
      r.close();

      const third = await start();
      const t = await third.client();
      expect(recoveredPrefix(await mgetNumbers(t, "killed", 300))).toBe(300);
      t.close();
      expect(await third.stop()).toBe(0);
    },
    30_000,
  );
});

describe("a shutdown whose drain times out", () => {
  // With no time to drain, the I/O workers are terminated wherever they are, possibly inside a write
  // that holds shard mutexes. A final checkpoint, or one already running, would wait for those
  // mutexes forever (RELIABILITY.md "A shutdown whose drain times out"); the WAL must carry the writes.
  // Rounds take the WAL arrangements in turn: a WAL writer thread (two I/O workers, fsync always),
  // and the lone I/O worker that writes the WAL itself (fsync everysec, then always). In the last
  // three a checkpoint of 200k keys is running when SIGTERM comes. No timed checkpoints: any other is a bug.
  const round_dir = tempDir();
  const ARRANGEMENTS = [
    { workers: 2, fsync: "always" },
    { workers: 1, fsync: "everysec" },
    { workers: 1, fsync: "always" },
  ] as const;
  const ROUNDS = 2 * ARRANGEMENTS.length;
  const start = (round: number, shutdown_timeout_s = 0, env?: Record<string, string>) =>
    Daemon.start({
      dir: round_dir,
      env,
      workers: ARRANGEMENTS[round % ARRANGEMENTS.length]!.workers,
      args: [
        ...["--fsync", ARRANGEMENTS[round % ARRANGEMENTS.length]!.fsync],
        ...["--shutdown-timeout", String(shutdown_timeout_s), "--checkpoint-interval", "0"],
      ],
    });
  /** Every acknowledged SET: key → value. */
  const acked = new Map<string, number>();

  /**
   * 16 clients each pipeline 2000 SETs; SIGTERM at the first answer; answers read until closed.
   * Resolves with the daemon's exit code (or "hung" after `exit_within_ms`) and how long after
   * SIGTERM it came.
   */
  async function cutOff(
    d: Daemon,
    round: number,
    with_checkpoint: boolean,
    exit_within_ms = 15_000,
  ): Promise<{ exit: number | "hung"; after_sigterm_ms: number }> {
    const clients = await Promise.all(Array.from({ length: 16 }, () => d.client()));
    // A client that asks for 4 MiB of replies and reads none: the drain cannot finish, so the
    // 0 ms timeout always cuts the workers off (else a drain that happened to be quick could win).
    const stalled = await d.client();
    const probe = await d.client();
    await stalled.stallReplies(probe);
    probe.close();
    const checkpointing = with_checkpoint ? await d.client() : undefined;
    if (checkpointing !== undefined) {
      const started = checkpointStarted(d.data_dir, 10_000);
      checkpointing.sendRaw(pipeline([[1, "checkpoint"]]));
      await started; // the SETs below meet a running checkpoint
    }
    let answered!: () => void;
    const first_answer = new Promise<void>((resolve) => (answered = resolve));
    const reading = clients.map(async (c, j) => {
      c.sendRaw(
        pipeline(Array.from({ length: 2000 }, (_, i) => [i + 1, "set", `cut:${round}:${j}:${i}`, i])),
      );
      for (;;) {
        let r: Response;
        try {
          r = await c.next();
        } catch {
          return; // the daemon closed the connection
        }
        expect(r.slice(1)).toEqual([0, true]);
        acked.set(`cut:${round}:${j}:${r[0] - 1}`, r[0] - 1);
        answered();
      }
    });
    await first_answer; // the daemon is applying them
    d.proc.kill("SIGTERM");
    const sigterm_ms = performance.now();
    const exit = await exitWithin(d, exit_within_ms);
    const after_sigterm_ms = performance.now() - sigterm_ms;
    await Promise.all(reading);
    checkpointing?.close();
    stalled.close();
    return { exit, after_sigterm_ms };
  }

  test("--shutdown-timeout 0 under SET load: the daemon exits, with no final checkpoint", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const d = await start(round);
      const with_checkpoint = round >= ARRANGEMENTS.length;
      if (round === ARRANGEMENTS.length) await preload(d, 200_000);
      const { exit } = await cutOff(d, round, with_checkpoint);
      expect({ round, exit }).toEqual({ round, exit: 0 });
      const after_sigterm = d.stderr.slice(d.stderr.indexOf("SIGTERM: shutting down"));
      expect(after_sigterm).toMatch(/still running after 0 ms/);
      expect(after_sigterm).toMatch(/final checkpoint skipped/);
      expect(after_sigterm).toMatch(/shutdown complete: WAL durable, no final checkpoint/);
      // The checkpoint asked for finished (before or after SIGTERM) or gave up; no other one ran
      // (no timed ones, and 256 MiB of WAL before a size-triggered one).
      const since_ready = d.stderr.slice(d.stderr.indexOf("walkv ready"));
      const checkpoints = since_ready.match(/checkpoint: redo LSN|checkpoint failed/g) ?? [];
      expect({ round, checkpoints: checkpoints.length }).toEqual({
        round,
        checkpoints: with_checkpoint ? 1 : 0,
      });
    }
  }, 120_000);

  test(
    `a close that hangs after the drain timed out: the process kills itself after ${CLOSE_AFTER_DRAIN_TIMEOUT_MS} ms`,
    async () => {
      // The fault point blocks the main thread at the start of the engine's close, for good, as a
      // lock never released would: only the watchdog's own thread can end the process.
      // One round (one WAL arrangement): the fault point is in the engine's close, common to all.
      const round = ROUNDS; // keys of its own
      const d = await start(round, 0, { WALKV_CRASH_AT: "host-close-hang" });
      const { exit, after_sigterm_ms } = await cutOff(d, round, false, CLOSE_AFTER_DRAIN_TIMEOUT_MS + 15_000);
      expect({ exit, signal: d.proc.signalCode }).toEqual({ exit: expect.any(Number), signal: "SIGKILL" });
      // Not before its time (a timer never fires early): the close may rightly take that long.
      expect(after_sigterm_ms).toBeGreaterThanOrEqual(CLOSE_AFTER_DRAIN_TIMEOUT_MS);
      const after_sigterm = d.stderr.slice(d.stderr.indexOf("SIGTERM: shutting down"));
      expect(after_sigterm).toMatch(
        /still running after 0 ms; closing anyway \(within \d+ ms, else the process kills/,
      );
      expect(after_sigterm).not.toMatch(/watchdog did not start|shutdown complete/);
    },
    CLOSE_AFTER_DRAIN_TIMEOUT_MS + 40_000,
  );

  test("after those shutdowns every acknowledged SET is there, with its value", async () => {
    expect(acked.size).toBeGreaterThan(4 * 16);
    const again = await start(0, 10);
    const c = await again.client();
    const keys = [...acked.keys()];
    const [, code, values] = (await c.call("mget", keys)) as [number, number, unknown[]];
    expect(code).toBe(0);
    const wrong = keys.filter((key, i) => values[i] !== acked.get(key));
    expect({ acked: keys.length, wrong: wrong.slice(0, 5) }).toEqual({ acked: keys.length, wrong: [] });
    c.close();
    expect(await again.stop()).toBe(0);
  }, 30_000);
});

/**
 * Resolves when a checkpoint creates `data.db.tmp` in `data_dir` (an inotify event, not a poll);
 * rejects if none does within `timeout_ms`.
 */
function checkpointStarted(data_dir: string, timeout_ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer);
      watcher.close();
      if (error === undefined) resolve();
      else reject(error);
    };
    const timer = setTimeout(() => done(new Error(`no data.db.tmp within ${timeout_ms} ms`)), timeout_ms);
    const watcher = fs.watch(data_dir, (_event, name) => {
      if (name === "data.db.tmp") done();
    });
  });
}

/** Sets `preload:0..n-1` (100-byte values) through 4 pipelining clients and waits for every answer. */
async function preload(d: Daemon, n: number): Promise<void> {
  const value = "v".repeat(100);
  const per_client = n / 4;
  await Promise.all(
    Array.from({ length: 4 }, async (_, j) => {
      const c = await d.client();
      const requests = Array.from({ length: per_client }, (_, i) => [
        i + 1,
        "set",
        `preload:${j}:${i}`,
        value,
      ]);
      c.sendRaw(pipeline(requests));
      for (let i = 0; i < per_client; i++) expect((await c.next()).slice(1)).toEqual([0, true]);
      c.close();
    }),
  );
}
