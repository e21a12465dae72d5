#!/usr/bin/env bun
/**
 * The `walkv` command. `walkv help` lists the commands; `walkv CMD --help` explains one.
 *
 * @example
 * walkv serve --data ./var/data --socket ./var/walkv.sock
 * walkv set greeting hello --socket ./var/walkv.sock
 */
import { WalkvError } from "../engine/errors.ts";
import { BENCH_USAGE, bench } from "./bench.ts";
import { CLIENT_COMMANDS, CLIENT_COMMANDS_HELP } from "./client_commands.ts";
import { UsageError } from "./flags.ts";
import { SERVE_USAGE, serve } from "./serve.ts";
import { VERIFY_USAGE, verify } from "./verify.ts";
import { VERSION } from "./version.ts";

const USAGE = `walkv ${VERSION} — a durable in-memory key-value daemon

usage: walkv COMMAND [args] [flags]

commands:
  serve        run the daemon (walkv serve --help)
${CLIENT_COMMANDS_HELP}
  bench        load a daemon with GETs and SETs; ops/s and latency (walkv bench --help)
  verify       check data.db and the WAL offline (walkv verify --help)
  help         this text
  --version    print the version

Client commands print JSON; they take --socket PATH (or WALKV_SOCKET, default ./var/walkv.sock)
and --token-file FILE (or WALKV_TOKEN_FILE). Exit codes: 0 ok, 1 error, 2 usage, 3 corruption,
4 cannot connect.

Run \`walkv COMMAND --help\` for the flags of a command.`;

type Command = {
  usage: string;
  run: (argv: string[], env: Record<string, string | undefined>) => Promise<number>;
};

const COMMANDS: Record<string, Command> = {
  serve: { usage: SERVE_USAGE, run: serve },
  ...CLIENT_COMMANDS,
  bench: { usage: BENCH_USAGE, run: bench },
  verify: { usage: VERIFY_USAGE, run: verify },
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(rest[0] !== undefined && COMMANDS[rest[0]] ? COMMANDS[rest[0]]!.usage : USAGE);
    return 0;
  }
  if (name === "--version" || name === "version") {
    console.log(`walkv ${VERSION}`);
    return 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    console.error(`walkv: unknown command "${name}"\n\n${USAGE}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest, process.env);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`walkv ${name}: ${error.message}\n\n${command.usage}`);
      return 2;
    }
    if (error instanceof WalkvError) {
      console.error(`walkv ${name}: ${error.message}`);
      return error.code === "corruption" ? 3 : 1;
    }
    throw error;
  }
}

process.exit(await main(process.argv.slice(2)));
