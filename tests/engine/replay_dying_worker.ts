/**
 * A replay worker that ends its thread, without a word, after `die_after` versions: what the replay
 * pipe must notice (tests/engine/replay_pipe.test.ts).
 */
import { Arena, type ArenaShared } from "../../src/engine/arena.ts";
import { Loader } from "../../src/engine/replay_loader.ts";
import { drainPipe, type PipeShared } from "../../src/engine/replay_pipe.ts";
import { Table, type TableShared } from "../../src/engine/table.ts";

declare const self: Worker;

class DyingLoader extends Loader {
  private linked = 0;

  constructor(
    table: Table,
    private readonly die_after: number,
  ) {
    super(table);
  }

  /** What the pipe calls for every SET it hands over. */
  override setHashed(
    h: number,
    bytes: Uint8Array,
    ko: number,
    kl: number,
    vo: number,
    vl: number,
    lsn: number,
    expiry: number,
  ): void {
    if (++this.linked > this.die_after) process.exit(1);
    super.setHashed(h, bytes, ko, kl, vo, vl, lsn, expiry);
  }
}

self.onmessage = (event: MessageEvent) => {
  const { pipe, table, arena, die_after } = event.data as {
    pipe: PipeShared;
    table: TableShared;
    arena: ArenaShared;
    die_after: number;
  };
  drainPipe(pipe, new DyingLoader(new Table(table, new Arena(arena)), die_after));
};
