/**
 * A field of `/proc/<pid>/status` in bytes (the kernel reports kB): a process's resident memory
 * (VmRSS) or its peak (VmHWM). Shared by the soak, the load and hostile-protocol tests, the GC tests
 * and the SharedArrayBuffer GC repro. Linux only; throws naming the file if the field is missing.
 *
 * @example
 * procStatusBytes(daemon.pid) / 2 ** 20; // the daemon's RSS in MiB
 * procStatusBytes("self", "VmHWM");      // this process's peak RSS in bytes
 */
import { readFileSync } from "node:fs";

export function procStatusBytes(pid: number | "self", field: "VmRSS" | "VmHWM" = "VmRSS"): number {
  const path = `/proc/${pid}/status`;
  const match = readFileSync(path, "utf8").match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
  if (match === null) throw new Error(`no ${field} in ${path}`);
  return Number(match[1]) * 1024;
}
