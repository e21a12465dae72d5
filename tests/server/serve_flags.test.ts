/**
 * `walkv serve` refuses bad flags before touching anything: exit 2 and a message naming the flag.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import { Daemon, type StartOptions, stopAllDaemons } from "./daemon.ts";

afterAll(stopAllDaemons);

const cases: Array<[string, StartOptions, RegExp]> = [
  ["--workers abc", { args: ["--workers", "abc"] }, /--workers: "abc" is not a whole number/],
  ["--workers 0", { args: ["--workers", "0"] }, /--workers: 0 is out of range/],
  [
    "--fsync sometimes",
    { args: ["--fsync", "sometimes"] },
    /--fsync: "sometimes" is not one of always, everysec, no/,
  ],
  ["missing --data", { with_data: false }, /--data DIR is required/],
  ["--socket-mode 999", { args: ["--socket-mode", "999"] }, /--socket-mode: "999" is not an octal mode/],
  ["--max-frame-bytes 10", { args: ["--max-frame-bytes", "10"] }, /--max-frame-bytes: 10 is out of range/],
  ["--http without a port", { args: ["--http", "localhost"] }, /--http: "localhost" is not HOST:PORT/],
  ["an unknown flag", { args: ["--bogus", "1"] }, /bogus/],
];

describe("walkv serve flags", () => {
  for (const [name, options, message] of cases) {
    test(`${name}: exit 2 with a message naming the flag`, async () => {
      const d = Daemon.spawn(options);
      expect(await d.exited).toBe(2);
      expect(d.stderr).toMatch(message);
      expect(d.stderr).toMatch(/usage: walkv serve/);
      expect(d.stdout).not.toMatch(/ready/);
      expect(fs.existsSync(d.data_dir)).toBe(false); // refused before creating anything
    });
  }
});
