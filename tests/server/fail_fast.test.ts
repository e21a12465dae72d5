/**
 * Fail fast: when an I/O worker dies (here of an injected uncaught error, WALKV_CRASH_AT=
 * io-worker-accept), the daemon logs why and exits 70 instead of running on with a lock the dead
 * worker may hold; a restart then recovers every acknowledged write.
 */
import { afterAll, expect, test } from "bun:test";
import * as path from "node:path";
import { Daemon, stopAllDaemons, tempDir } from "./daemon.ts";

const BUN = path.resolve("node_modules/.bin/bun");
const MAIN = path.resolve("src/cli/main.ts");

afterAll(stopAllDaemons);

test("a dead I/O worker makes the daemon exit 70, and a restart recovers", async () => {
  const dir = tempDir();
  const first = await Daemon.start({ dir, workers: 1 });
  const client = await first.client();
  expect((await client.call("set", "kept", "yes"))[1]).toBe(0);
  client.close();
  expect(await first.stop()).toBe(0);

  const armed = Bun.spawn(
    [
      BUN,
      MAIN,
      "serve",
      "--data",
      path.join(dir, "data"),
      "--socket",
      path.join(dir, "walkv.sock"),
      "--workers",
      "1",
    ],
    { env: { ...process.env, WALKV_CRASH_AT: "io-worker-accept" }, stdout: "pipe", stderr: "pipe" },
  );
  const reader = armed.stdout.getReader();
  let out = "";
  while (!out.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the armed daemon exited before it was ready");
    out += new TextDecoder().decode(value);
  }
  const connection = Bun.connect({ unix: path.join(dir, "walkv.sock"), socket: { data() {}, error() {} } });
  const code = await armed.exited;
  await connection.catch(() => {});
  const stderr = await new Response(armed.stderr).text();
  expect(code).toBe(70);
  expect(stderr).toContain("fatal: I/O worker 0 died");
  expect(stderr).toContain("injected fault");

  const restarted = await Daemon.start({ dir, workers: 1 });
  const again = await restarted.client();
  expect((await again.call("get", "kept"))[2]).toBe("yes");
  again.close();
  expect(await restarted.stop()).toBe(0);
}, 60_000);
