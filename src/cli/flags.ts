/**
 * Command-line flags with environment fallbacks: each flag `--max-key-bytes` may also be given as
 * `WALKV_MAX_KEY_BYTES`; the flag wins. Values are validated here; a bad one is a UsageError that
 * names the flag (or variable) and the value. Built on node:util parseArgs (Bun and Deno).
 *
 * @example
 * const spec = { workers: { type: "integer", min: 1, max: 256, help: "I/O workers" } } satisfies FlagSpec;
 * const values = parseFlags(spec, argv, process.env); // values.workers: number | undefined
 */
import { parseArgs } from "node:util";

export class UsageError extends Error {}

export type Flag =
  | { readonly type: "string"; readonly help: string; readonly value_name?: string }
  | { readonly type: "integer"; readonly help: string; readonly min: number; readonly max: number }
  | { readonly type: "number"; readonly help: string; readonly min: number; readonly max: number }
  | { readonly type: "enum"; readonly help: string; readonly values: readonly string[] }
  | { readonly type: "boolean"; readonly help: string };

export type FlagSpec = Record<string, Flag>;

export type FlagValues<S extends FlagSpec> = {
  [K in keyof S]?: S[K] extends { type: "integer" } | { type: "number" }
    ? number
    : S[K] extends { type: "boolean" }
      ? boolean
      : string;
};

/** `max_key_bytes` → `--max-key-bytes`. */
export function flagName(key: string): string {
  return `--${key.replaceAll("_", "-")}`;
}

/** `max_key_bytes` → `WALKV_MAX_KEY_BYTES`. */
export function envName(key: string): string {
  return `WALKV_${key.toUpperCase()}`;
}

/** Parses `argv` (flags only, plus positionals returned separately) with env fallbacks. */
export function parseFlags<S extends FlagSpec>(
  spec: S,
  argv: string[],
  env: Record<string, string | undefined>,
): { values: FlagValues<S>; positionals: string[] } {
  const options: Record<string, { type: "string" | "boolean" }> = { help: { type: "boolean" } };
  for (const [key, flag] of Object.entries(spec)) {
    options[flagName(key).slice(2)] = { type: flag.type === "boolean" ? "boolean" : "string" };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values: Record<string, unknown> = {};
  for (const [key, flag] of Object.entries(spec)) {
    const given = parsed.values[flagName(key).slice(2)] as string | boolean | undefined;
    const from_env = env[envName(key)];
    const source = given !== undefined ? flagName(key) : envName(key);
    const raw = given ?? from_env;
    if (raw === undefined) continue;
    values[key] = convert(flag, raw, source);
  }
  if (parsed.values.help) values.help = true;
  return { values: values as FlagValues<S>, positionals: parsed.positionals };
}

function convert(flag: Flag, raw: string | boolean, source: string): unknown {
  if (flag.type === "boolean") {
    if (typeof raw === "boolean") return raw;
    if (raw === "1" || raw === "true") return true;
    if (raw === "0" || raw === "false" || raw === "") return false;
    throw new UsageError(`${source}: "${raw}" is not a boolean (1/0/true/false)`);
  }
  const text = String(raw);
  if (flag.type === "integer") {
    if (!/^\d+$/.test(text)) throw new UsageError(`${source}: "${text}" is not a whole number`);
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < flag.min || n > flag.max) {
      throw new UsageError(`${source}: ${text} is out of range [${flag.min}, ${flag.max}]`);
    }
    return n;
  }
  if (flag.type === "number") {
    if (!/^(\d+\.?\d*|\.\d+)$/.test(text)) throw new UsageError(`${source}: "${text}" is not a number`);
    const n = Number(text);
    if (n < flag.min || n > flag.max) {
      throw new UsageError(`${source}: ${text} is out of range [${flag.min}, ${flag.max}]`);
    }
    return n;
  }
  if (flag.type === "enum" && !flag.values.includes(text)) {
    throw new UsageError(`${source}: "${text}" is not one of ${flag.values.join(", ")}`);
  }
  if (text === "") throw new UsageError(`${source}: empty value`);
  return text;
}

/** Help text: one line per flag with its environment variable. */
export function flagsHelp(spec: FlagSpec): string {
  return Object.entries(spec)
    .map(([key, flag]) => {
      const arg =
        flag.type === "boolean"
          ? ""
          : flag.type === "enum"
            ? ` ${flag.values.join("|")}`
            : flag.type === "integer" || flag.type === "number"
              ? " N"
              : ` ${("value_name" in flag && flag.value_name) || "VALUE"}`;
      return `  ${`${flagName(key)}${arg}`.padEnd(36)} ${flag.help} [env ${envName(key)}]`;
    })
    .join("\n");
}
