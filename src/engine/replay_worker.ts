/**
 * Worker entry point of the replay worker (replay_pipe.ts): receives `{ pipe, table, arena }`, then
 * links every version the recovering thread sends through the pipe into the shared table, until
 * the pipe is closed. A failure is reported through the pipe (the recovering thread is blocked in
 * `Atomics.wait` and reads no messages).
 */
import { Arena, type ArenaShared } from "./arena.ts";
import { Loader } from "./replay_loader.ts";
import { drainPipe, type PipeShared } from "./replay_pipe.ts";
import { Table, type TableShared } from "./table.ts";

declare const self: Worker;

self.onmessage = (event: MessageEvent) => {
  const { pipe, table, arena } = event.data as { pipe: PipeShared; table: TableShared; arena: ArenaShared };
  drainPipe(pipe, new Loader(new Table(table, new Arena(arena))));
};
