/**
 * The two client-socket transports (src/server/client_socket.ts) keep the same promises, end to end:
 * replies larger than the socket buffer arrive whole and in order (Bun's partial writes are kept and
 * sent on drain), a client that half-closes gets every reply first, and a daemon with one I/O worker
 * uses Bun's sockets unless `--transport node`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { Daemon, stopAllDaemons, tempDir, waitUntil } from "./daemon.ts";
import { frame, packr, type RawClient } from "./raw_client.ts";
import { command, RespClient, text } from "./resp_client.ts";

const MAX_OUTPUT_BYTES = 1 << 20;

/** Open connections as the daemon counts them, asked over `c`. */
async function openConnections(c: RawClient): Promise<number> {
  const [, , stats] = (await c.call("stats")) as [number, number, { connections: number }];
  return stats.connections;
}

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

afterAll(async () => {
  await stopAllDaemons();
});

const TRANSPORTS = [
  { name: "Bun sockets", args: [] as string[], log: /client sockets: Bun's own/ },
  { name: "node:net", args: ["--transport", "node"], log: /client sockets: node:net/ },
];

for (const transport of TRANSPORTS) {
  describe(`one I/O worker, ${transport.name}`, () => {
    let daemon: Daemon;

    let resp_path: string;

    test("starts with the expected transport", async () => {
      const dir = tempDir();
      resp_path = path.join(dir, "resp.sock");
      daemon = await Daemon.start({
        dir,
        workers: 1,
        args: ["--fsync", "always", "--resp", resp_path, ...transport.args],
      });
      await daemon.waitForLog(transport.log);
    });

    test("64 MiB of pipelined replies arrive whole and in order", async () => {
      const c = await daemon.client();
      const value = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
      expect(await c.call("set", "big", value)).toEqual([1, 0, true]);
      const gets = 64; // ≫ the socket buffer: the server meets a full kernel buffer many times
      const requests = Array.from({ length: gets }, (_, i) => frame(packr.pack([i + 2, "get", "big"])));
      for (const request of requests) c.sendRaw(request);
      for (let i = 0; i < gets; i++) {
        const [id, code, got] = await c.next();
        expect([id, code]).toEqual([i + 2, 0]);
        expect(Buffer.compare(got as Uint8Array, value)).toBe(0);
      }
      c.close();
    }, 30_000);

    test("a client that half-closes gets a reply to every request it sent, then the end", async () => {
      const c = await daemon.client();
      const sets = 200;
      for (let i = 0; i < sets; i++) c.send([i + 1, "set", `half:${i}`, i]);
      c.send([sets + 1, "get", `half:${sets - 1}`]);
      c.socket.end(); // FIN: nothing more will come
      for (let i = 0; i < sets; i++) expect(await c.next()).toEqual([i + 1, 0, true]);
      expect(await c.next()).toEqual([sets + 1, 0, sets - 1]);
      await c.closed;
    });

    test("clients that close at once with writes in flight: their connections go, the daemon stays idle", async () => {
      const observer = await daemon.client();
      await waitUntil(async () => (await openConnections(observer)) === 1, "earlier connections to close");
      for (let i = 0; i < 20; i++) {
        const c = await daemon.client();
        for (let j = 0; j < 50; j++) c.send([j + 1, "set", `gone:${i}:${j}`, "v".repeat(1000)]);
        c.socket.destroy(); // no FIN first: a full close while the SETs wait for their fdatasync
      }
      await waitUntil(async () => (await openConnections(observer)) === 1, "the closed connections to go");
      const pid = daemon.proc.pid;
      const before = cpuSeconds(pid);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // a window to measure, not a synchronisation
      expect(cpuSeconds(pid) - before).toBeLessThan(0.3); // a socket spinning on a hang-up would take ~1 s
      observer.close();
    });

    test("RESP: a client that never reads is cut off past --max-output-bytes, and counted so", async () => {
      const dir = tempDir();
      const small_resp = path.join(dir, "resp.sock");
      const small = await Daemon.start({
        dir,
        workers: 1,
        args: [
          "--fsync",
          "no",
          "--resp",
          small_resp,
          "--max-frame-bytes",
          "131072",
          "--max-key-bytes",
          "1024",
          "--max-output-bytes",
          String(MAX_OUTPUT_BYTES),
          ...transport.args,
        ],
      });
      const c = await RespClient.connect({ path: small_resp });
      expect(await c.call("SET", "large", "x".repeat(60_000))).toBe("OK");
      const hog = net.createConnection(small_resp);
      await new Promise((resolve) => hog.once("connect", resolve));
      hog.pause(); // never reads
      hog.on("error", () => {});
      const closed = new Promise((resolve) => hog.once("close", resolve));
      for (let i = 0; i < 100; i++) hog.write(command("GET", "large")); // 100 × 60 KB ≫ 1 MiB
      hog.resume(); // reading now only drains what was sent before the cut
      hog.on("data", () => {});
      await closed;
      const info = text(await c.call("INFO", "stats"));
      expect(info).toMatch(/walkv_connections_cut_off:1\r\n/);
      c.close();
      expect(await small.stop()).toBe(0);
    });

    test("stops cleanly", async () => {
      expect(await daemon.stop()).toBe(0);
    });
  });
}
