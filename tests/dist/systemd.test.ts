/**
 * scripts/systemd: the unit files (required keys, `systemd-analyze verify` and `security` when the
 * tool exists) and socket activation without systemd — walkv started with fd 3 = a listening Unix
 * socket and LISTEN_FDS=1, as systemd would, serves on it and leaves the socket file alone.
 */

import { afterAll, describe, expect, test } from "bun:test";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { PURGE_DELAY_MS } from "../../src/cli/allocator.ts";
import { SERVER_DEFAULTS } from "../../src/server/config.ts";
import { RawClient } from "../server/raw_client.ts";
import { killAll, ServeProcess, tempDir } from "./serve_process.ts";

const REPO = path.resolve(import.meta.dir, "../..");
const UNITS = path.join(REPO, "scripts/systemd");
const SYSTEMD_ANALYZE = Bun.which("systemd-analyze");
const INSTALLED_BINARY = "/usr/local/bin/walkv";

afterAll(killAll);

type Unit = Map<string, Map<string, string[]>>;

/** A unit file as section → key → values (a key may repeat); comments and blank lines dropped. */
function parseUnit(file: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  for (const raw of fs.readFileSync(path.join(UNITS, file), "utf8").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf("=");
    if (section === undefined || eq < 1) throw new Error(`${file}: not a unit line: ${line}`);
    const key = line.slice(0, eq);
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1)]);
  }
  return unit;
}

function value(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/** The unit files in a temp dir, ExecStart pointing at an existing executable (verify checks it). */
function unitsForVerify(): string {
  const dir = tempDir("units");
  const service = fs.readFileSync(path.join(UNITS, "walkv.service"), "utf8");
  fs.writeFileSync(path.join(dir, "walkv.service"), service.replaceAll(INSTALLED_BINARY, "/bin/true"));
  fs.copyFileSync(path.join(UNITS, "walkv.socket"), path.join(dir, "walkv.socket"));
  return dir;
}

describe("unit files", () => {
  const service = parseUnit("walkv.service");
  const socket = parseUnit("walkv.socket");

  const verify_note = SYSTEMD_ANALYZE === null ? " (systemd-analyze absent: verify skipped)" : "";

  test(`walkv.service has the required keys${verify_note}`, () => {
    const expected: Record<string, string> = {
      Type: "exec",
      StateDirectory: "walkv",
      RuntimeDirectory: "walkv",
      RuntimeDirectoryPreserve: "yes",
      Restart: "on-failure",
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      PrivateDevices: "yes",
      ProtectKernelTunables: "yes",
      ProtectKernelModules: "yes",
      ProtectKernelLogs: "yes",
      RestrictAddressFamilies: "AF_UNIX AF_INET AF_INET6",
      LockPersonality: "yes",
      MemoryDenyWriteExecute: "no",
      SystemCallFilter: "@system-service",
      UMask: "0077",
      User: "walkv",
      LimitNOFILE: "65536",
      KillSignal: "SIGTERM",
      // Socket-activated, walkv does not restart itself to set this (src/cli/allocator.ts).
      Environment: `MIMALLOC_PURGE_DELAY=${PURGE_DELAY_MS}`,
    };
    for (const [key, want] of Object.entries(expected))
      expect([key, value(service, "Service", key)]).toEqual([key, want]);
    const exec_start = value(service, "Service", "ExecStart") ?? "";
    expect(exec_start).toStartWith(
      `${INSTALLED_BINARY} serve --data /var/lib/walkv --socket /run/walkv/walkv.sock`,
    );
    const stop_s = Number(/^(\d+)s$/.exec(value(service, "Service", "TimeoutStopSec") ?? "")?.[1]);
    expect(stop_s * 1000).toBeGreaterThan(SERVER_DEFAULTS.shutdown_timeout_ms);
  });

  test(`walkv.socket listens on /run/walkv/walkv.sock for walkv.service${verify_note}`, () => {
    expect(value(socket, "Socket", "ListenStream")).toBe("/run/walkv/walkv.sock");
    expect(value(socket, "Socket", "Service")).toBe("walkv.service");
    expect(value(socket, "Socket", "SocketMode")).toBe("0660");
    expect(value(socket, "Install", "WantedBy")).toBe("sockets.target");
  });

  test.skipIf(SYSTEMD_ANALYZE === null)("systemd-analyze verify: no errors, no warnings", () => {
    const dir = unitsForVerify();
    const units = [path.join(dir, "walkv.service"), path.join(dir, "walkv.socket")];
    const run = Bun.spawnSync([SYSTEMD_ANALYZE!, "verify", "--man=no", ...units], { stderr: "pipe" });
    const stderr = run.stderr.toString();
    expect([run.exitCode, stderr]).toEqual([0, ""]);
  });

  test.skipIf(SYSTEMD_ANALYZE === null)("systemd-analyze security --offline: exposure at most 2.0", () => {
    const service = path.join(unitsForVerify(), "walkv.service");
    const run = Bun.spawnSync([SYSTEMD_ANALYZE!, "security", "--offline=true", "--threshold=20", service], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const exposure = Number(/exposure level for walkv\.service: ([\d.]+)/.exec(run.stdout.toString())?.[1]);
    expect(exposure).toBeLessThanOrEqual(2.0);
    expect(run.exitCode).toBe(0);
  });
});

/** A Unix socket listening at `socket_path`, as systemd's walkv.socket would hold it; resolves with its fd. */
function listenLikeSystemd(dir: string): Promise<{ server: net.Server; fd: number; bound_path: string }> {
  const bound_path = path.join(dir, "bind.sock");
  const server = net.createServer(() => {
    throw new Error("the test process accepted a connection meant for walkv");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(bound_path, () => {
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      resolve({ server, fd, bound_path });
    });
  });
}

describe("socket activation without systemd", () => {
  test("serves on the inherited fd 3 (LISTEN_FDS=1) and keeps the socket file at shutdown", async () => {
    const dir = tempDir("activation");
    const socket_path = path.join(dir, "walkv.sock");
    const { server, fd, bound_path } = await listenLikeSystemd(dir);
    const env: Record<string, string> = { ...(process.env as Record<string, string>), LISTEN_FDS: "1" };
    delete env.LISTEN_PID;
    const argv = [path.join(REPO, "node_modules/.bin/bun"), path.join(REPO, "src/cli/main.ts"), "serve"];
    const daemon = await ServeProcess.start({
      argv: [...argv, "--data", path.join(dir, "data"), "--workers", "2"],
      env,
      extra_fds: [fd],
    });
    // Stop listening here: only walkv may accept. Closing a Unix server unlinks its path, so the
    // file is moved first to where clients (and the assertions) find it; the fd is unaffected.
    fs.renameSync(bound_path, socket_path);
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(daemon.stdout).toContain("listening on inherited fd 3");

    const c = await RawClient.connect(socket_path);
    expect(await c.call("ping")).toEqual([1, 0, "pong"]);
    expect(await c.call("set", "k", "v")).toEqual([2, 0, true]);
    expect(await c.call("get", "k")).toEqual([3, 0, "v"]);
    c.close();
    expect(await daemon.stop("SIGTERM"), daemon.describe()).toBe(0);
    expect(fs.statSync(socket_path).isSocket()).toBe(true);
  }, 60_000);

  test("LISTEN_PID of another process: no inherited socket, so --socket is required (exit 2)", () => {
    const dir = tempDir("activation-pid");
    const env = { ...(process.env as Record<string, string>), LISTEN_FDS: "1", LISTEN_PID: "1" };
    const argv = [path.join(REPO, "node_modules/.bin/bun"), path.join(REPO, "src/cli/main.ts"), "serve"];
    const run = Bun.spawnSync([...argv, "--data", path.join(dir, "data")], { env, stderr: "pipe" });
    expect([run.exitCode, run.stderr.toString()]).toEqual([
      2,
      expect.stringContaining("--socket PATH is required"),
    ]);
  });
});
