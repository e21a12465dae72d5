/**
 * The client commands of `walkv`: get, set, del, exists, mget, mset, stats, checkpoint, ping. Each
 * connects to the daemon (`--socket`, `WALKV_SOCKET`, default `./var/walkv.sock`), authenticates
 * with `--token-file` (`WALKV_TOKEN_FILE`) if given, runs one request and prints its result as one
 * line of JSON on stdout.
 *
 * Values given on the command line are stored as msgpack strings; with `--json` they are parsed as
 * JSON first. In the output a missing key is `null`, a msgpack bin is `{"$bin": "<base64>"}` and an
 * integer beyond 2^53 is `{"$bigint": "<decimal>"}`. An argument that starts with `-` goes after `--`.
 *
 * Exit codes: 0 ok, 1 server error (the code name and message on stderr), 2 usage error,
 * 4 connection failure.
 *
 * @example
 * walkv set greeting hello            # → true
 * walkv set --json user:1 '{"n": 1}'  # → true
 * walkv get user:1                    # → {"n":1}
 * walkv mget greeting nope            # → ["hello",null]
 */

import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { type Client, ConnectionError, connect, WalkvClientError } from "../client/index.ts";
import { type FlagSpec, type FlagValues, flagsHelp, parseFlags, UsageError } from "./flags.ts";

/**
 * Flags of every client command.
 *
 * @example
 * parseFlags(CLIENT_FLAGS, ["--socket", "/tmp/w.sock"], process.env).values.socket; // "/tmp/w.sock"
 */
export const CLIENT_FLAGS = {
  socket: { type: "string", help: "the daemon's socket (default ./var/walkv.sock)", value_name: "PATH" },
  token_file: { type: "string", help: "authenticate with the token in this file", value_name: "FILE" },
} as const satisfies FlagSpec;

/**
 * Flags of the commands that take values (set, mset).
 *
 * @example
 * parseFlags(VALUE_FLAGS, ["--json", "k", "[1]"], {}).values.json; // true
 */
export const VALUE_FLAGS = {
  ...CLIENT_FLAGS,
  json: { type: "boolean", help: "parse each VALUE as JSON (default: store it as a string)" },
} as const satisfies FlagSpec;

const DEFAULT_SOCKET = "./var/walkv.sock";
const EXIT_OK = 0;
const EXIT_SERVER_ERROR = 1;
const EXIT_CONNECTION = 4;

/** One client command: its arguments, and the request it makes. */
interface ClientCommandSpec {
  readonly args: string;
  readonly summary: string;
  /** True if `count` positional arguments are acceptable. */
  readonly arity: (count: number) => boolean;
  /** True if the arguments are KEY VALUE pairs (VALUEs at odd positions); else all are keys. */
  readonly takes_values: boolean;
  /** Makes the request; `args` are the keys (strings) and, for pairs, the parsed values. */
  readonly exec: (client: Client, args: unknown[]) => Promise<unknown>;
}

const SPECS: Record<string, ClientCommandSpec> = {
  get: {
    args: "KEY",
    summary: "print the value of KEY (null if absent)",
    arity: (n) => n === 1,
    takes_values: false,
    exec: (c, [key]) => c.get(key as string),
  },
  set: {
    args: "KEY VALUE",
    summary: "store VALUE under KEY",
    arity: (n) => n === 2,
    takes_values: true,
    exec: (c, [key, value]) => c.set(key as string, value).then(() => true),
  },
  del: {
    args: "KEY",
    summary: "delete KEY; prints whether it existed",
    arity: (n) => n === 1,
    takes_values: false,
    exec: (c, [key]) => c.del(key as string),
  },
  exists: {
    args: "KEY",
    summary: "print whether KEY is present",
    arity: (n) => n === 1,
    takes_values: false,
    exec: (c, [key]) => c.exists(key as string),
  },
  mget: {
    args: "KEY...",
    summary: "print the values of the KEYs as an array, read at one moment",
    arity: (n) => n >= 1,
    takes_values: false,
    exec: (c, keys) => c.mget(keys as string[]),
  },
  mset: {
    args: "KEY VALUE [KEY VALUE...]",
    summary: "store all the pairs atomically",
    arity: (n) => n >= 2 && n % 2 === 0,
    takes_values: true,
    exec: (c, args) =>
      c
        .mset(
          Array.from(
            { length: args.length / 2 },
            (_, i) => [args[2 * i] as string, args[2 * i + 1]] as const,
          ),
        )
        .then(() => true),
  },
  stats: {
    args: "",
    summary: "print engine and server statistics",
    arity: (n) => n === 0,
    takes_values: false,
    exec: (c) => c.stats(),
  },
  checkpoint: {
    args: "",
    summary: "run a checkpoint now; prints {lsn, bytes, ms}",
    arity: (n) => n === 0,
    takes_values: false,
    exec: (c) => c.checkpoint(),
  },
  ping: {
    args: "",
    summary: 'check that the daemon answers; prints "pong"',
    arity: (n) => n === 0,
    takes_values: false,
    exec: (c) => c.ping(),
  },
};

const OUTPUT_HELP = `Output: one line of JSON. A missing key is null; a msgpack bin is {"$bin": "<base64>"}; an
integer beyond 2^53 is {"$bigint": "<decimal>"}. An argument starting with "-" goes after "--".
Exit codes: 0 ok, 1 server error, 2 usage error, 4 cannot connect.`;

function usageOf(name: string, spec: ClientCommandSpec): string {
  const flags = spec.takes_values ? VALUE_FLAGS : CLIENT_FLAGS;
  const args = spec.args === "" ? "" : ` ${spec.args}`;
  const values = spec.takes_values
    ? "\nVALUEs are stored as msgpack strings, or with --json as the msgpack of the parsed JSON.\n"
    : "";
  return `usage: walkv ${name}${args} [flags]

${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.
${values}
${flagsHelp(flags)}

${OUTPUT_HELP}`;
}

/**
 * Runs client command `name` with `argv`; resolves with the exit code. Throws UsageError for bad
 * arguments (the caller prints the usage and exits 2).
 *
 * @example
 * const code = await runClientCommand("get", ["greeting", "--socket", "/tmp/w.sock"], process.env);
 */
export async function runClientCommand(
  name: string,
  argv: string[],
  env: Record<string, string | undefined>,
): Promise<number> {
  const spec = SPECS[name];
  if (spec === undefined) throw new UsageError(`unknown client command "${name}"`);
  const parsed = parseFlags(spec.takes_values ? VALUE_FLAGS : CLIENT_FLAGS, argv, env);
  const flags: FlagValues<typeof VALUE_FLAGS> = parsed.values;
  const positionals = parsed.positionals;
  if (!spec.arity(positionals.length)) {
    throw new UsageError(
      `expected ${spec.args === "" ? "no arguments" : spec.args}, got ${positionals.length}`,
    );
  }
  const value = flags.json === true ? parseJson : (text: string) => text;
  const args = positionals.map((text, i) => (spec.takes_values && i % 2 === 1 ? value(text) : text));
  const token = flags.token_file === undefined ? undefined : readTokenFile(flags.token_file);
  let client: Client | undefined;
  try {
    client = await connect({ path: flags.socket ?? DEFAULT_SOCKET, token, reconnect: false });
    const result = await spec.exec(client, args);
    console.log(toJson(result));
    return EXIT_OK;
  } catch (error) {
    if (!(error instanceof WalkvClientError)) throw error;
    console.error(`walkv ${name}: ${error.code_name}: ${error.message}`);
    return error instanceof ConnectionError ? EXIT_CONNECTION : EXIT_SERVER_ERROR;
  } finally {
    await client?.close();
  }
}

/**
 * The client commands, for the COMMANDS table of src/cli/main.ts.
 *
 * @example
 * const code = await CLIENT_COMMANDS.get!.run(["greeting"], process.env);
 */
export const CLIENT_COMMANDS: Record<
  string,
  { usage: string; run: (argv: string[], env: Record<string, string | undefined>) => Promise<number> }
> = Object.fromEntries(
  Object.entries(SPECS).map(([name, spec]) => [
    name,
    { usage: usageOf(name, spec), run: (argv, env) => runClientCommand(name, argv, env) },
  ]),
);

/**
 * One line per client command, for the `walkv help` text.
 *
 * @example
 * console.log(`commands:\n${CLIENT_COMMANDS_HELP}`);
 */
export const CLIENT_COMMANDS_HELP = Object.entries(SPECS)
  .map(([name, spec]) => `  ${name.padEnd(12)} ${spec.summary}`)
  .join("\n");

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new UsageError(
      `--json: cannot parse ${JSON.stringify(text.slice(0, 64))}: ${(error as Error).message}`,
    );
  }
}

/**
 * The token in `path`, without a trailing newline; a UsageError naming --token-file if unreadable or empty.
 *
 * @example
 * const token = readTokenFile("/etc/walkv/token");
 */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (error) {
    throw new UsageError(`--token-file: cannot read ${path}: ${(error as Error).message}`);
  }
  const token = text.replace(/\r?\n$/, "");
  if (token.length === 0) throw new UsageError(`--token-file: ${path} is empty`);
  return token;
}

/**
 * A result as one line of JSON: undefined → null, bytes → {"$bin": base64}, bigint → {"$bigint": decimal}.
 *
 * @example
 * toJson([new Uint8Array([1, 2]), undefined]); // '[{"$bin":"AQI="},null]'
 */
export function toJson(result: unknown): string {
  return (
    JSON.stringify(result, function (this: Record<string, unknown>, key: string, value: unknown) {
      const raw = this[key]; // before toJSON: a Buffer's toJSON would hide that it is bytes
      if (raw instanceof Uint8Array)
        return { $bin: Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString("base64") };
      if (typeof raw === "bigint") return { $bigint: raw.toString() };
      return value;
    }) ?? "null"
  );
}
