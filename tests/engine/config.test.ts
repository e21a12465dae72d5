import { describe, expect, test } from "bun:test";
import { engineConfig, WRITE_WAIT_SPIN_US_MAX } from "../../src/engine/config.ts";
import { InvalidError } from "../../src/engine/errors.ts";

describe("engineConfig", () => {
  test("write_wait_spin_us: 300 µs by default, 0 to the maximum accepted, anything else refused by name", () => {
    expect(engineConfig({ data_dir: "d" }).write_wait_spin_us).toBe(300);
    for (const ok of [0, 1, WRITE_WAIT_SPIN_US_MAX]) {
      expect(engineConfig({ data_dir: "d", write_wait_spin_us: ok }).write_wait_spin_us).toBe(ok);
    }
    for (const bad of [-1, 1.5, WRITE_WAIT_SPIN_US_MAX + 1, Number.NaN]) {
      expect(() => engineConfig({ data_dir: "d", write_wait_spin_us: bad })).toThrow(InvalidError);
      expect(() => engineConfig({ data_dir: "d", write_wait_spin_us: bad })).toThrow(/write_wait_spin_us/);
    }
  });
});
