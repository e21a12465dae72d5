/**
 * `make run` until the daemon lands: opens the engine on a data directory, shows what recovery found,
 * writes a few keys (one atomic mset), checkpoints, prints the stats and closes cleanly.
 * Run it twice: the second run recovers the first run's writes.
 *
 * @example
 * bun src/cli/demo.ts --data ./var/data
 */
import { parseArgs } from "node:util";
import { engineConfig } from "../engine/config.ts";
import { openEngine } from "../engine/host.ts";

const { values } = parseArgs({ options: { data: { type: "string", default: "./var/data" } } });
const text = new TextEncoder();
const host = await openEngine(engineConfig({ data_dir: values.data! }));
const runs = Number(new TextDecoder().decode(host.engine.get(text.encode("demo:runs")) ?? text.encode("0")));
console.log(
  `recovered ${host.recovery.snapshot_entries} keys from data.db and ${host.recovery.wal_records} WAL records`,
);
await host.engine.mset([
  [text.encode("demo:runs"), text.encode(String(runs + 1))],
  [text.encode("demo:last_run"), text.encode(new Date().toISOString())],
]);
console.log(`demo:runs = ${runs + 1} (durable: fsync always)`);
const checkpoint = await host.checkpoint();
console.log(`checkpoint: redo LSN ${checkpoint.redo_lsn}, ${checkpoint.bytes} bytes`);
console.log(JSON.stringify(host.engine.stats(), null, 2));
await host.close();
