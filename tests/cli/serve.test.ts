import { describe, expect, test } from "bun:test";
import { UsageError } from "../../src/cli/flags.ts";
import { serveConfig } from "../../src/cli/serve.ts";

const REQUIRED = ["--data", "/tmp/walkv-serve-test", "--socket", "/tmp/walkv-serve-test.sock"];

describe("serveConfig", () => {
  test("--write-wait-spin-us reaches the engine's config (flag, then env, then the default)", () => {
    expect(serveConfig(REQUIRED, {}).engine.write_wait_spin_us).toBe(300);
    expect(serveConfig([...REQUIRED, "--write-wait-spin-us", "0"], {}).engine.write_wait_spin_us).toBe(0);
    expect(serveConfig(REQUIRED, { WALKV_WRITE_WAIT_SPIN_US: "1200" }).engine.write_wait_spin_us).toBe(1200);
    const both = serveConfig([...REQUIRED, "--write-wait-spin-us", "50"], {
      WALKV_WRITE_WAIT_SPIN_US: "1200",
    });
    expect(both.engine.write_wait_spin_us).toBe(50);
  });

  test("--write-wait-spin-us outside 0..10000 or not an integer is a usage error", () => {
    for (const bad of ["-1", "10001", "1.5", "soon"]) {
      expect(() => serveConfig([...REQUIRED, "--write-wait-spin-us", bad], {})).toThrow(UsageError);
    }
  });
});
