/**
 * Worker entry point of the WAL syncer (wal_syncer.ts): the `everysec` fdatasync, and the early ones
 * before a rotation (`everysec` and `no`), of a daemon whose lone I/O worker writes the WAL.
 * Receives `{ shared }`, answers `{ ready: true }`, then serves fdatasync requests (blocking on the
 * request word) until the host raises the syncer's stop flag, and answers `{ exited: true }`. Log
 * lines go to the host as `{ log }`.
 */
import type { EngineShared } from "../engine.ts";
import { RealIo } from "../io/real_io.ts";
import { WalBuffer } from "./wal_buffer.ts";
import { WalSyncerService } from "./wal_syncer.ts";

declare const self: Worker;

/** Longest block on the request word, so the stop flag is seen promptly. */
const POLL_MS = 1000;

self.onmessage = (event: MessageEvent) => {
  const { shared } = event.data as { shared: EngineShared };
  const service = new WalSyncerService(shared.wal_sync, {
    io: new RealIo(),
    wal: new WalBuffer(shared.wal),
    wal_dir: `${shared.config.data_dir}/wal`,
    log: (line: string) => self.postMessage({ log: line }),
  });
  service.markRunning();
  self.postMessage({ ready: true });
  while (!service.stopRequested()) service.serve(POLL_MS);
  service.close();
  self.postMessage({ exited: true });
};
