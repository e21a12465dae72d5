/**
 * The two client-socket transports (src/server/client_socket.ts) keep the same promises, end to end:
 * replies larger than the socket buffer arrive whole and in order (Bun's partial writes are kept and
 * sent on drain), a client that half-closes gets every reply first, and a daemon with one I/O worker
 * uses Bun's sockets unless `--transport node`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { Daemon, stopAllDaemons } from "./daemon.ts";
import { frame, packr } from "./raw_client.ts";

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

    test("starts with the expected transport", async () => {
      daemon = await Daemon.start({ workers: 1, args: ["--fsync", "no", ...transport.args] });
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

    test("stops cleanly", async () => {
      expect(await daemon.stop()).toBe(0);
    });
  });
}
