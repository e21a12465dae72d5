/**
 * `DATA/walkv.pid`: one daemon per data directory. Two processes appending to one WAL would corrupt
 * it, so a second `walkv serve` on the same directory refuses to start while the first is alive.
 * A pid file left by a dead process (kill -9, power loss) is taken over.
 *
 * @example
 * const pid_file = acquirePidFile("./var/data"); // throws if a live walkv holds it
 * pid_file.release();                            // at shutdown
 */
import * as fs from "node:fs";
import { InvalidError } from "../engine/errors.ts";

export interface PidFile {
  release(): void;
}

export function acquirePidFile(data_dir: string): PidFile {
  fs.mkdirSync(data_dir, { recursive: true, mode: 0o700 });
  const path = `${data_dir}/walkv.pid`;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      fs.writeFileSync(path, `${process.pid}\n`, { mode: 0o600, flag: "wx" });
      return { release: () => release(path) };
    } catch (error) {
      if ((error as { code?: string }).code !== "EEXIST") throw error;
    }
    const holder = readPid(path);
    if (holder !== undefined && holder !== process.pid && alive(holder)) {
      throw new InvalidError(
        `data directory ${data_dir} is in use by pid ${holder} (${path}); if that process is not walkv, remove the file`,
      );
    }
    fs.rmSync(path, { force: true }); // left by a dead process
  }
  throw new InvalidError(`could not take ${path}: another walkv is starting on the same directory`);
}

function release(path: string): void {
  if (readPid(path) === process.pid) fs.rmSync(path, { force: true });
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(fs.readFileSync(path, "utf8").trim(), 10);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === "EPERM";
  }
}
