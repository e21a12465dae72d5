/**
 * Flag checks shared by the scripts: a bad flag is a usage error, reported on stderr with exit code 2.
 *
 * @example
 * const rounds = positiveFlag("rounds", values.rounds);
 * if (mode !== "a" && mode !== "b") usageError(`--mode: a or b, got ${mode}`);
 */

/** Prints `message` and exits 2 (a usage error). */
export function usageError(message: string): never {
  console.error(message);
  process.exit(2);
}

/** Flag `--name`'s `text` as a positive integer, or a usage error. */
export function positiveFlag(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) usageError(`--${name}: ${text} is not a positive integer`);
  return n;
}
