import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as os from "node:os";
import { IoError } from "../../../src/engine/errors.ts";
import { RealIo } from "../../../src/engine/io/real_io.ts";

let root = "";
const io = new RealIo();

beforeAll(() => {
  root = fs.mkdtempSync(`${os.tmpdir()}/walkv-real-io-`);
});

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function ioErrorOf(action: () => unknown): IoError {
  try {
    action();
  } catch (error) {
    if (error instanceof IoError) return error;
    throw error;
  }
  throw new Error("expected an IoError");
}

describe("RealIo", () => {
  test("round trip: write, read, size, truncate, sync, rename, list, unlink", () => {
    const dir = `${root}/rt/sub`;
    io.mkdirp(dir);
    io.mkdirp(dir); // no error if it exists
    const file = io.open(`${dir}/a`, { create: true });
    io.write(file, new Uint8Array([1, 2, 3, 4]), 2);
    expect(io.size(file)).toBe(6);
    const into = new Uint8Array(8);
    expect(io.read(file, into, 0)).toBe(6);
    expect([...into]).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    expect(io.read(file, into, 6)).toBe(0);
    io.truncate(file, 3);
    io.sync(file);
    io.close(file);
    io.syncDir(dir);
    io.rename(`${dir}/a`, `${dir}/b`);
    io.open(`${dir}/c`, { create: true }); // left open on purpose: fds are plain numbers
    expect(io.list(dir)).toEqual(["b", "c"]);
    expect(io.exists(`${dir}/a`)).toBe(false);
    const again = io.open(`${dir}/b`, { truncate: true });
    expect(io.size(again)).toBe(0);
    io.close(again);
    io.unlink(`${dir}/b`);
    expect(io.exists(`${dir}/b`)).toBe(false);
  });

  test("a large write is written completely", () => {
    const data = new Uint8Array(3 << 20).map((_, i) => i % 251);
    const file = io.open(`${root}/big`, { create: true });
    io.write(file, data, 0);
    const into = new Uint8Array(data.length);
    let done_bytes = 0;
    while (done_bytes < into.length) {
      const count = io.read(file, into.subarray(done_bytes), done_bytes);
      expect(count).toBeGreaterThan(0);
      done_bytes += count;
    }
    io.close(file);
    expect(Buffer.from(into).equals(Buffer.from(data))).toBe(true);
  });

  test("errors map to IoError with errno, op and path", () => {
    const missing = ioErrorOf(() => io.open(`${root}/missing`));
    expect([missing.errno, missing.op, missing.path, missing.code]).toEqual([
      "ENOENT",
      "open",
      `${root}/missing`,
      "io",
    ]);
    expect(ioErrorOf(() => io.unlink(`${root}/missing`)).errno).toBe("ENOENT");
    expect(ioErrorOf(() => io.list(`${root}/missing`)).errno).toBe("ENOENT");
    const file = io.open(`${root}/closed`, { create: true });
    io.close(file);
    expect(ioErrorOf(() => io.size(file)).errno).toBe("EBADF");
  });

  test("files are created with mode 0600, directories with 0700", () => {
    io.mkdirp(`${root}/modes/deep`);
    io.close(io.open(`${root}/modes/deep/f`, { create: true }));
    expect(fs.statSync(`${root}/modes`).mode & 0o777).toBe(0o700);
    expect(fs.statSync(`${root}/modes/deep`).mode & 0o777).toBe(0o700);
    expect(fs.statSync(`${root}/modes/deep/f`).mode & 0o777).toBe(0o600);
  });
});
