/**
 * Flame graphs from `perf script` output, for `make profile` (scripts/profile.sh). Two steps:
 *
 * - `fold`: perf script text (fields `-F comm,tid,ip,sym,dso`, with call chains) → one line per
 *   distinct stack, `thread;outermost;…;innermost COUNT`. The thread name (comm) is the root frame.
 *   Frames perf could not name become `[dso]` (e.g. `[bun.exe]`; `[JIT]` for JIT code without a
 *   perf map entry), kernel frames get a `_[k]` suffix,
 *   `+0x…` offsets are dropped and `;` in names becomes `:`. A JavaScript function's frames are one
 *   frame whatever JIT tier ran it: JSC's `JSC-Baseline: f#hash`, `JSC-DFG: f#hash` and
 *   `JSC-FTL: f#hash` all fold to `js: f#hash` (report.txt keeps the tiers); JSC's other code
 *   (`JSC-Thunk: …`, `JSC-InlineCache: …`, `JSC-YarrJIT: /regex/`) keeps its name. A run of unnamed frames of one dso is one
 *   frame (Bun ships without a symbol table, so its native frames would otherwise be long runs of
 *   `[bun.exe]`).
 * - `svg`: folded stacks → an SVG flame graph: one rectangle per frame, width ∝ samples, callers
 *   below callees, a `<title>` tooltip with the sample count and share. Colours by kind: JavaScript
 *   (`js: …`, `JSC-…`) green, kernel orange, unnamed grey, other native code red.
 *
 * @example
 * perf script -F comm,tid,ip,sym,dso -i perf.data | bun scripts/flamegraph.ts fold > stacks.folded
 * bun scripts/flamegraph.ts svg --title "walkv, get/set" < stacks.folded > flame.svg
 */
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { assert } from "../src/engine/errors.ts";

/** Stacks deeper than this are refused (perf's own default maximum is 127 frames). */
export const MAX_STACK_FRAMES = 1024;
/** Input larger than this is refused rather than read into memory. */
const MAX_INPUT_BYTES = 1024 ** 3;

const HEADER = /^(\S.*?)\s+(\d+)\s*$/; // "Bun Pool 0 15372": comm (may hold spaces), tid
const FRAME = /^\s+([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$/; // "  7f12ab JSC-FTL: get#CDpc (/tmp/perf-1.map)"

/**
 * Folds `perf script -F comm,tid,ip,sym,dso` output: stack (root first, `;`-joined) → samples.
 * Throws on a line that is neither a sample header, a frame nor blank.
 *
 * @example
 * foldPerfScript("bun 7\n\t1f f (/x/bun.exe)\n\t2a main (/x/bun.exe)\n"); // Map { "bun;main;f" => 1 }
 */
export function foldPerfScript(text: string): Map<string, number> {
  const folded = new Map<string, number>();
  let thread: string | undefined;
  let frames: string[] = [];
  const flush = () => {
    if (thread === undefined) return;
    assert(frames.length <= MAX_STACK_FRAMES, "stack depth was checked per frame");
    const stack = [thread, ...frames.reverse()].join(";");
    folded.set(stack, (folded.get(stack) ?? 0) + 1);
    thread = undefined;
    frames = [];
  };
  for (const [index, line] of text.split("\n").entries()) {
    if (line.trim() === "") {
      flush();
      continue;
    }
    const frame = FRAME.exec(line);
    if (frame !== null && thread !== undefined) {
      if (frames.length === MAX_STACK_FRAMES)
        throw new Error(`line ${index + 1}: stack over ${MAX_STACK_FRAMES} frames`);
      const name = frameName(frame[2]!, frame[3]!);
      if (!(name.startsWith("[") && frames.at(-1) === name)) frames.push(name);
      continue;
    }
    const header = HEADER.exec(line);
    if (header === null)
      throw new Error(`line ${index + 1}: not perf script -F comm,tid,ip,sym,dso: ${line}`);
    flush();
    thread = clean(header[1]!);
  }
  flush();
  return folded;
}

/** The dso of JIT code: perf's own name for it, or the perf map that named (some of) it. */
const JIT_DSO = /^\[JIT\] tid \d+$|\/perf-\d+\.map$/;

/** JSC's names of compiled JavaScript functions: the tier, then the function. */
const JS_TIER = /^JSC-(?:Baseline|DFG|FTL): /;

function frameName(symbol: string, dso: string): string {
  if (symbol === "[unknown]") return JIT_DSO.test(dso) ? "[JIT]" : `[${clean(basename(dso))}]`;
  const name = clean(symbol.replace(/\+0x[0-9a-f]+$/, "").replace(JS_TIER, "js: "));
  return dso === "[kernel.kallsyms]" ? `${name}_[k]` : name;
}

function clean(name: string): string {
  return name.replaceAll(";", ":");
}

/**
 * Folded stacks as text, one `stack count` line each, sorted by stack.
 *
 * @example
 * formatFolded(new Map([["bun;main", 3]])); // "bun;main 3\n"
 */
export function formatFolded(folded: ReadonlyMap<string, number>): string {
  return [...folded.keys()]
    .sort()
    .map((stack) => `${stack} ${folded.get(stack)}\n`)
    .join("");
}

/**
 * Parses folded text (`stack count` per line; counts of a repeated stack add up).
 *
 * @example
 * parseFolded("bun;main 3\n"); // Map { "bun;main" => 3 }
 */
export function parseFolded(text: string): Map<string, number> {
  const folded = new Map<string, number>();
  text.split("\n").forEach((line, index) => {
    if (line.trim() === "") return;
    const match = /^(.+) (\d+)$/.exec(line);
    if (match === null) throw new Error(`line ${index + 1}: not "stack count": ${line}`);
    const stack = match[1]!;
    folded.set(stack, (folded.get(stack) ?? 0) + Number(match[2]));
  });
  return folded;
}

/** A frame of the merged call tree; `samples` includes the children's. */
interface Node {
  readonly name: string;
  samples: number;
  readonly children: Map<string, Node>;
}

function callTree(folded: ReadonlyMap<string, number>): Node {
  const root: Node = { name: "all", samples: 0, children: new Map() };
  for (const [stack, samples] of folded) {
    assert(Number.isSafeInteger(samples) && samples > 0, `bad sample count for ${stack}`);
    let node = root;
    node.samples += samples;
    for (const name of stack.split(";")) {
      let child = node.children.get(name);
      if (child === undefined) {
        child = { name, samples: 0, children: new Map() };
        node.children.set(name, child);
      }
      child.samples += samples;
      node = child;
    }
  }
  return root;
}

function depthOf(node: Node): number {
  let deepest = 0;
  for (const child of node.children.values()) deepest = Math.max(deepest, depthOf(child));
  return deepest + 1;
}

/** Options of renderFlameGraph. */
interface FlameGraphOptions {
  readonly title: string;
  readonly width_px?: number;
}

const FRAME_HEIGHT_PX = 16;
const FONT_SIZE_PX = 12;
const TITLE_FONT_SIZE_PX = 16;
/** Average glyph width of Verdana-like fonts, per pixel of font size. */
const CHAR_WIDTH_PER_FONT_PX = 0.59;
const MARGIN_PX = 10;
const TITLE_HEIGHT_PX = 36;
/** Frames narrower than this are not drawn (their samples still count in their callers). */
const MIN_FRAME_WIDTH_PX = 0.1;

/**
 * An SVG flame graph of `folded` (root "all" at the bottom, width ∝ samples).
 *
 * @example
 * const svg = renderFlameGraph(parseFolded("bun;main;f 2\nbun;main 1\n"), { title: "demo" });
 */
export function renderFlameGraph(folded: ReadonlyMap<string, number>, options: FlameGraphOptions): string {
  const width_px = options.width_px ?? 1200;
  assert(width_px >= 100 && width_px <= 100_000, `width ${width_px} px out of range`);
  const root = callTree(folded);
  const height_px = TITLE_HEIGHT_PX + depthOf(root) * FRAME_HEIGHT_PX + MARGIN_PX;
  const scale = root.samples === 0 ? 0 : (width_px - 2 * MARGIN_PX) / root.samples;
  const rects: string[] = [];
  const draw = (node: Node, depth: number, x_px: number) => {
    const w_px = node.samples * scale;
    if (w_px < MIN_FRAME_WIDTH_PX) return;
    const y_px = height_px - MARGIN_PX - (depth + 1) * FRAME_HEIGHT_PX;
    rects.push(frameSvg(node, root.samples, x_px, y_px, w_px));
    let child_x_px = x_px;
    for (const name of [...node.children.keys()].sort()) {
      const child = node.children.get(name)!;
      draw(child, depth + 1, child_x_px);
      child_x_px += child.samples * scale;
    }
  };
  draw(root, 0, MARGIN_PX);
  return [
    `<?xml version="1.0" standalone="no"?>`,
    `<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="${width_px}" height="${height_px}" ` +
      `viewBox="0 0 ${width_px} ${height_px}" font-family="Verdana, sans-serif" font-size="${FONT_SIZE_PX}">`,
    `<rect x="0" y="0" width="${width_px}" height="${height_px}" fill="#f8f8f8"/>`,
    `<text x="${MARGIN_PX}" y="22" font-size="${TITLE_FONT_SIZE_PX}">${escapeXml(fitLabel(options.title, width_px - 2 * MARGIN_PX, TITLE_FONT_SIZE_PX))}</text>`,
    ...rects,
    "</svg>",
    "",
  ].join("\n");
}

function frameSvg(node: Node, total: number, x_px: number, y_px: number, w_px: number): string {
  const share = ((100 * node.samples) / total).toFixed(2);
  const tooltip = `${node.name} (${node.samples} samples, ${share}%)`;
  const label = fitLabel(node.name, w_px, FONT_SIZE_PX);
  const text =
    label === ""
      ? ""
      : `<text x="${(x_px + 3).toFixed(1)}" y="${y_px + FRAME_HEIGHT_PX - 4}">${escapeXml(label)}</text>`;
  return (
    `<g><title>${escapeXml(tooltip)}</title><rect x="${x_px.toFixed(1)}" y="${y_px}" width="${w_px.toFixed(1)}" ` +
    `height="${FRAME_HEIGHT_PX - 1}" fill="${colorOf(node.name)}" rx="2"/>${text}</g>`
  );
}

/** The text cut to fit `w_px` at `font_px` ("…" marks a cut); "" when not even 3 characters fit. */
function fitLabel(name: string, w_px: number, font_px: number): string {
  const fits = Math.floor((w_px - 6) / (font_px * CHAR_WIDTH_PER_FONT_PX));
  if (fits < 3) return "";
  return name.length <= fits ? name : `${name.slice(0, fits - 1)}…`;
}

function colorOf(name: string): string {
  const hash = [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
  const vary = hash % 40;
  if (name.startsWith("js: ")) return `rgb(${60 + vary},${170 + vary},${60 + vary})`;
  if (name.startsWith("JSC-")) return `rgb(${40 + vary},${140 + vary},${90 + vary})`;
  if (name.endsWith("_[k]")) return `rgb(230,${130 + vary},${30 + vary})`;
  if (name.startsWith("[")) return `rgb(${170 + vary},${170 + vary},${170 + vary})`;
  return `rgb(220,${60 + vary * 2},${50 + vary})`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const USAGE = `usage: bun scripts/flamegraph.ts fold < perf-script.txt > stacks.folded
       bun scripts/flamegraph.ts svg [--title TEXT] [--width PX] < stacks.folded > flame.svg
fold expects \`perf script -F comm,tid,ip,sym,dso\` output (recorded with -g).`;

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      title: { type: "string", default: "Flame graph" },
      width: { type: "string", default: "1200" },
    },
  });
  const [command, ...rest] = positionals;
  if (rest.length > 0 || (command !== "fold" && command !== "svg")) {
    console.error(USAGE);
    return 2;
  }
  const input = await Bun.stdin.text();
  if (input.length > MAX_INPUT_BYTES) throw new Error(`input over ${MAX_INPUT_BYTES} bytes`);
  if (command === "fold") {
    process.stdout.write(formatFolded(foldPerfScript(input)));
    return 0;
  }
  const width_px = Number(values.width);
  if (!Number.isInteger(width_px) || width_px < 100 || width_px > 100_000) {
    console.error(`--width: an integer from 100 to 100000, got ${values.width}\n\n${USAGE}`);
    return 2;
  }
  process.stdout.write(renderFlameGraph(parseFolded(input), { title: values.title!, width_px }));
  return 0;
}

if (import.meta.main) process.exit(await main(process.argv.slice(2)));
