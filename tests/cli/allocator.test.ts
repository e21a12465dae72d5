import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { type Exec, PURGE_DELAY_MS, startWithAllocatorSettings } from "../../src/cli/allocator.ts";
import { Daemon, stopAllDaemons } from "../server/daemon.ts";

afterAll(stopAllDaemons);

/** An Exec that records its one execve (which, like the real one, does not return). */
function fakeExec(argv: string[], execArgv: string[] = []) {
  const calls: Array<{ path: string; args: string[]; env: Record<string, string | undefined> }> = [];
  const exec: Exec = {
    execPath: "/usr/bin/bun",
    argv,
    execArgv,
    execve: (path, args, env) => {
      calls.push({ path, args, env });
      throw new Error("execve");
    },
  };
  return { exec, calls };
}

describe("startWithAllocatorSettings", () => {
  test("unset: restarts bun with its flags, script and arguments, the variable set and the rest of the environment kept", () => {
    const { exec, calls } = fakeExec(
      ["/usr/bin/bun", "/app/src/cli/main.ts", "serve", "--fsync", "no"],
      ["--smol"],
    );
    expect(() => startWithAllocatorSettings({ HOME: "/h", WALKV_DATA: "/d" }, exec)).toThrow("execve");
    expect(calls).toEqual([
      {
        path: "/usr/bin/bun",
        args: ["/usr/bin/bun", "--smol", "/app/src/cli/main.ts", "serve", "--fsync", "no"],
        env: { HOME: "/h", WALKV_DATA: "/d", MIMALLOC_PURGE_DELAY: String(PURGE_DELAY_MS) },
      },
    ]);
  });

  test("a compiled walkv restarts with its command line only (its entry point is inside the binary)", () => {
    const { exec, calls } = fakeExec(["bun", "/$bunfs/root/walkv", "serve", "--data", "/d"]);
    expect(() => startWithAllocatorSettings({}, exec)).toThrow("execve");
    expect(calls[0]!.args).toEqual(["/usr/bin/bun", "serve", "--data", "/d"]);
  });

  test("a value the operator set is kept; an inherited socket (LISTEN_FDS), which would not survive, or no runtime with execve (Deno) restarts nothing", () => {
    const { exec, calls } = fakeExec(["/usr/bin/bun", "main.ts", "serve"]);
    startWithAllocatorSettings({ MIMALLOC_PURGE_DELAY: "10" }, exec);
    startWithAllocatorSettings({ LISTEN_FDS: "1", LISTEN_PID: "7" }, exec);
    startWithAllocatorSettings({}, undefined);
    expect(calls).toEqual([]);
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
