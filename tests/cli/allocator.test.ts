import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { type Exec, PURGE_DELAY_MS, startWithAllocatorSettings } from "../../src/cli/allocator.ts";
import { Daemon, stopAllDaemons } from "../server/daemon.ts";

afterAll(stopAllDaemons);

/** An Exec that records its execve calls (the real one does not return; this one returns). */
function fakeExec(argv: string[], execArgv: string[] = []) {
  const calls: Array<{ path: string; args: string[]; env: Record<string, string | undefined> }> = [];
  const exec: Exec = {
    execPath: "/usr/bin/bun",
    argv,
    execArgv,
    execve: ((path: string, args: string[], env: Record<string, string | undefined>) => {
      calls.push({ path, args, env });
    }) as Exec["execve"],
  };
  return { exec, calls };
}

describe("startWithAllocatorSettings", () => {
  /** Runs it; returns the execve calls and the lines it logged. */
  function run(
    argv: string[],
    env: Record<string, string | undefined>,
    exec = fakeExec(["/usr/bin/bun", "main.ts", ...argv]),
  ) {
    const lines: string[] = [];
    startWithAllocatorSettings(argv, env, exec.exec, (line) => lines.push(line));
    return { calls: exec.calls, lines };
  }

  test("unset: restarts bun with its flags, script and arguments, the variable set and the rest of the environment kept", () => {
    const exec = fakeExec(["/usr/bin/bun", "/app/src/cli/main.ts", "serve", "--fsync", "no"], ["--smol"]);
    const { calls } = run(["--fsync", "no"], { HOME: "/h", WALKV_DATA: "/d" }, exec);
    expect(calls).toEqual([
      {
        path: "/usr/bin/bun",
        args: ["/usr/bin/bun", "--smol", "/app/src/cli/main.ts", "serve", "--fsync", "no"],
        env: { HOME: "/h", WALKV_DATA: "/d", MIMALLOC_PURGE_DELAY: String(PURGE_DELAY_MS) },
      },
    ]);
  });

  test("a compiled walkv restarts with its command line only (its entry point is inside the binary)", () => {
    const exec = fakeExec(["bun", "/$bunfs/root/walkv", "serve", "--data", "/d"]);
    expect(run(["--data", "/d"], {}, exec).calls[0]!.args).toEqual(["/usr/bin/bun", "serve", "--data", "/d"]);
  });

  test("BUN_OPTIONS is not passed on: its flags are in execArgv already", () => {
    const exec = fakeExec(["/usr/bin/bun", "main.ts", "serve"], ["--preload", "x.ts"]);
    const { calls } = run([], { BUN_OPTIONS: "--preload x.ts" }, exec);
    expect(calls[0]!.args).toEqual(["/usr/bin/bun", "--preload", "x.ts", "main.ts", "serve"]);
    expect(calls[0]!.env).toEqual({ MIMALLOC_PURGE_DELAY: String(PURGE_DELAY_MS) });
  });

  test("no restart: a value the operator set, an inherited descriptor in use (which would not survive it), or no runtime with execve (Deno)", () => {
    expect(run([], { MIMALLOC_PURGE_DELAY: "100" }).calls).toEqual([]);
    expect(run([], { LISTEN_FDS: "1", LISTEN_PID: "7" }).calls).toEqual([]);
    expect(run(["--auth-token-file", "/dev/fd/63"], {}).calls).toEqual([]);
    expect(run(["--auth-token-file=/proc/self/fd/5"], {}).calls).toEqual([]);
    expect(run([], { WALKV_AUTH_TOKEN_FILE: "/dev/stdin" }).calls).toEqual([]);
    expect(run(["--auth-token-file", "/etc/walkv/token"], {}).calls.length).toBe(1);
    const lines: string[] = [];
    startWithAllocatorSettings([], {}, undefined, (line) => lines.push(line));
    expect(lines).toEqual([]);
  });

  test("a restart that fails is logged, and serve runs on without it", () => {
    const { exec } = fakeExec(["/usr/bin/bun", "main.ts", "serve"]);
    const failing = {
      ...exec,
      execve: () => {
        throw new Error("ENOENT: the binary is gone");
      },
    };
    const lines: string[] = [];
    startWithAllocatorSettings([], {}, failing, (line) => lines.push(line));
    expect(lines).toEqual([
      expect.stringMatching(/could not restart .*ENOENT: the binary is gone.*running without it/),
    ]);
  });
});

describe("walkv serve under Bun", () => {
  /** The environment of process `pid`, from /proc. */
  const environOf = (pid: number) =>
    Object.fromEntries(
      fs
        .readFileSync(`/proc/${pid}/environ`, "utf8")
        .split("\0")
        .filter((entry) => entry.includes("="))
        .map((entry) => [entry.slice(0, entry.indexOf("=")), entry.slice(entry.indexOf("=") + 1)]),
    );

  test("runs with MIMALLOC_PURGE_DELAY set, in the process it was started as; an operator's value wins", async () => {
    const without: Record<string, string> = {};
    for (const [name, value] of Object.entries(process.env))
      if (name !== "MIMALLOC_PURGE_DELAY" && value !== undefined) without[name] = value;
    const d = await Daemon.start({ args: ["--fsync", "no"], env: without, workers: 1 });
    expect(environOf(d.proc.pid).MIMALLOC_PURGE_DELAY).toBe(String(PURGE_DELAY_MS));
    const c = await d.client();
    expect((await c.call("ping")).slice(1)).toEqual([0, "pong"]);
    c.close();
    expect(await d.stop()).toBe(0);
    const kept = await Daemon.start({
      args: ["--fsync", "no"],
      env: { ...without, MIMALLOC_PURGE_DELAY: "10" },
      workers: 1,
    });
    expect(environOf(kept.proc.pid).MIMALLOC_PURGE_DELAY).toBe("10");
    expect(await kept.stop()).toBe(0);
  }, 30_000);
});
