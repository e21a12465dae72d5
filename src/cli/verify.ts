/**
 * `walkv verify`: checks a data directory offline (data.db and every WAL segment) without changing
 * it; safe while a daemon runs. Exit 0 healthy (warnings allowed), 3 corruption (stderr:
 * `corruption: FILE at byte N: reason`), 2 usage, 1 other errors (e.g. the directory is missing).
 *
 * @example
 * walkv verify --data /var/lib/walkv
 * walkv verify --data /var/lib/walkv --json | jq .totals
 */
import { RealIo } from "../engine/io/real_io.ts";
import { type VerifyReport, verifyDataDir } from "../engine/verify.ts";
import { type FlagSpec, flagsHelp, parseFlags, UsageError } from "./flags.ts";
import { SERVE_FLAGS } from "./serve.ts";

export const VERIFY_FLAGS = {
  data: { type: "string", help: "data directory to check (read only)", value_name: "DIR" },
  json: { type: "boolean", help: "print the report as JSON" },
  max_batch_bytes: SERVE_FLAGS.max_batch_bytes,
} as const satisfies FlagSpec;

export const VERIFY_USAGE = `usage: walkv verify --data DIR [--json]

Checks data.db and every WAL segment of DIR as recovery would (checksums, LSN continuity, the WAL
covering data.db), without changing anything; safe while the daemon runs. Exit status: 0 healthy
(warnings allowed), 3 corruption, 2 usage, 1 other errors.

${flagsHelp(VERIFY_FLAGS)}`;

/**
 * Runs `walkv verify`; resolves with the exit code.
 *
 * @example
 * const code = await verify(["--data", "/var/lib/walkv"], process.env); // 0, 1, 2 or 3
 */
export async function verify(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  const { values, positionals } = parseFlags(VERIFY_FLAGS, argv, env);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.data === undefined) throw new UsageError("--data DIR is required (or WALKV_DATA)");
  const report = verifyDataDir(new RealIo(), values.data, {
    ...(values.max_batch_bytes !== undefined && { max_record_bytes: values.max_batch_bytes }),
  });
  console.log(values.json ? JSON.stringify(reportJson(report), null, 2) : summary(report));
  if (report.error === undefined) return 0;
  console.error(`corruption: ${report.error.message}`);
  return 3;
}

/** The report as plain JSON data (the error as file, offset and message). */
function reportJson(report: VerifyReport): object {
  const error = report.error;
  return {
    ...report,
    healthy: error === undefined,
    error:
      error === undefined
        ? null
        : { file: error.file, offset_bytes: error.offset_bytes, message: error.message },
  };
}

/** The human-readable summary, one line per item. */
function summary(report: VerifyReport): string {
  const lines = [`walkv verify: ${report.data_dir}`];
  const db = report.data_db;
  if (db !== undefined) {
    const created = new Date(db.created_unix_ms).toISOString();
    lines.push(
      `data.db: ${db.keys} keys, redo LSN ${db.redo_lsn}, max LSN ${db.max_lsn}, ${db.bytes} bytes, created ${created}`,
    );
  } else if (report.error === undefined) lines.push("data.db: none");
  for (const s of report.segments) {
    const lsns = s.last_lsn === undefined ? "no records" : `LSN ${s.first_lsn}..${s.last_lsn}`;
    const covered = s.covered ? " (covered by data.db)" : "";
    lines.push(`wal/${s.name}: ${lsns}, ${s.records} records, ${s.bytes} bytes${covered}`);
  }
  const t = report.totals;
  const replay =
    report.error === undefined ? `; ${t.replay_records} records to replay; next LSN ${t.next_lsn}` : "";
  lines.push(`total: ${t.segments} segments, ${t.records} records, ${t.wal_bytes} bytes${replay}`);
  for (const warning of report.warnings) lines.push(`warning: ${warning}`);
  const plural = report.warnings.length === 1 ? "" : "s";
  lines.push(
    report.error === undefined
      ? `healthy (${report.warnings.length} warning${plural})`
      : "CORRUPT: checking stopped at the first error",
  );
  return lines.join("\n");
}
