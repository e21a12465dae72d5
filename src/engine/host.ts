/**
 * Opening and closing the engine. The owner thread recovers the table, creates every shared buffer,
 * and starts the two engine workers — the WAL writer (group commit) and the checkpointer — then hands
 * out {@link EngineShared} so any number of other workers can attach an {@link Engine}.
 *
 * `inline: true` runs the same WAL writer and checkpointer on the calling thread, stepped by the
 * caller: the deterministic mode of simulation tests (one thread, a {@link SimDisk}).
 *
 * @example
 * const host = await openEngine(engineConfig({ data_dir: "./var/data" }));
 * await host.engine.set(key, value);
 * const { redo_lsn } = await host.checkpoint();
 * await host.close(); // final checkpoint, WAL synced, workers stopped
 */
import { Arena, createArenaShared } from "./arena.ts";
import { Checkpointer } from "./checkpoint/checkpointer.ts";
import type { EngineConfig } from "./config.ts";
import { type CheckpointStatus, createControlBuffer, EngineControl } from "./control.ts";
import { crashPoint } from "./crash_points.ts";
import { Engine, type EngineShared } from "./engine.ts";
import { assert, describeFailure, UnavailableError } from "./errors.ts";
import { closeQuietly, type Io } from "./io/io.ts";
import { RealIo } from "./io/real_io.ts";
import { type ClosableSink, type RecoveryResult, recover } from "./recovery.ts";
import { createPipeShared, PipeSink } from "./replay_pipe.ts";
import { createTableShared, Table } from "./table.ts";
import { segmentName } from "./wal/format.ts";
import { createWalBufferShared, WAL_STOPPED, type WalBuffer } from "./wal/wal_buffer.ts";
import { createSyncerBuffer, WalSyncer } from "./wal/wal_syncer.ts";
import { removeCoveredWal, type WalStart, WalWriter, walWriterOptions } from "./wal/wal_writer.ts";

const ARENA_BUFFER_BYTES = 2 ** 32;
const ARENA_INITIAL_BYTES = 16 << 20;

export interface OpenOptions {
  /** The I/O seam (default: the real file system). Threaded mode always uses RealIo in its workers. */
  readonly io?: Io;
  /** Run the WAL writer and checkpointer on this thread, stepped by the caller (simulation). */
  readonly inline?: boolean;
  readonly log?: (line: string) => void;
  /** A worker died: the engine cannot go on safely (a lock may be held). Default: log and exit(70). */
  readonly on_fatal?: (error: Error) => void;
  /**
   * The WAL is written by a {@link LocalWalWriter} on another thread (a lone I/O worker), started
   * with `walStart(host.recovery)`: the host starts no WAL writer worker, only (fsync `everysec` or
   * `no`) the syncer worker (wal_syncer.ts) that LocalWalWriter needs then, and after its final
   * checkpoint only removes the WAL that checkpoint covers.
   */
  readonly local_wal_writer?: boolean;
}

/** Creates the shared memory of an empty table (arena and shards). */
function createStorage(config: EngineConfig): Pick<EngineShared, "arena" | "table"> {
  const buffer_count = Math.min(8, Math.ceil(config.memory_limit_bytes / ARENA_BUFFER_BYTES));
  const arena = createArenaShared({
    buffer_count,
    initial_bytes: ARENA_INITIAL_BYTES,
    limit_bytes: config.memory_limit_bytes,
  });
  return { arena, table: createTableShared(new Arena(arena), config.shard_bits) };
}

/** Below this many bytes to read, recovery takes too little time to be worth a replay worker. */
const OFFLOAD_MIN_BYTES = 8 << 20;

/**
 * Starts the replay worker (replay_pipe.ts): it links what recovery reads while recovery reads on.
 * Undefined (link on this thread) for a recovery under {@link OFFLOAD_MIN_BYTES}.
 */
function offloadReplay(
  storage: Pick<EngineShared, "arena" | "table">,
  table: Table,
  read_bytes: number,
  log: (line: string) => void,
): ClosableSink | undefined {
  if (read_bytes < OFFLOAD_MIN_BYTES) return undefined;
  log(`recovery: ${Math.round(read_bytes / 2 ** 20)} MiB to read; linking on a replay worker`);
  const pipe = createPipeShared();
  const worker = new Worker(new URL("./replay_worker.ts", import.meta.url).href, { type: "module" });
  worker.onerror = (event: ErrorEvent) => log(`recovery: replay worker: ${event.message}`);
  worker.postMessage({ pipe, table: storage.table, arena: storage.arena });
  return new PipeSink(pipe, table, () => worker.terminate(), { log });
}

/**
 * Where the WAL continues after `recovery`: what the WAL writer (the worker, or a LocalWalWriter)
 * starts from.
 *
 * @example
 * new LocalWalWriter(shared, walStart(host.recovery), log);
 */
export function walStart(recovery: RecoveryResult): WalStart {
  return { next_lsn: recovery.next_lsn, replayed_bytes: recovery.wal_bytes };
}

/** The owner's handle: the engine, plus checkpoint and shutdown. */
export interface EngineHost {
  readonly shared: EngineShared;
  readonly engine: Engine;
  readonly recovery: RecoveryResult;
  /** Runs a checkpoint that starts after this call; resolves with its status once it is durable. */
  checkpoint(): Promise<CheckpointStatus>;
  /**
   * No final checkpoint at {@link close}, and a checkpoint running now gives up if it waits for a
   * shard's mutex. Called before writers are cut off inside a write (their threads terminated after
   * a drain timeout): the mutexes they held are never released, so a scan would wait forever. The
   * WAL, flushed and synced at close all the same, holds every write; the next start replays it.
   */
  skipFinalCheckpoint(): void;
  /** Final checkpoint (best effort; none after skipFinalCheckpoint), WAL flushed and synced, workers
   * stopped. */
  close(): Promise<void>;
}

/**
 * Recovers `config.data_dir` and starts the engine. Throws CorruptionError (naming file and offset)
 * if the data on disk fails verification.
 */
export async function openEngine(config: EngineConfig, options: OpenOptions = {}): Promise<EngineHost> {
  const io = options.io ?? new RealIo();
  const log = options.log ?? ((line: string) => console.error(line));
  const storage = createStorage(config);
  const table = new Table(storage.table, new Arena(storage.arena));
  const recovery = recover(io, config, table, log, {
    offload: (read_bytes) => (options.inline ? undefined : offloadReplay(storage, table, read_bytes, log)),
  });
  const wal = createWalBufferShared({ ring_bytes: config.wal_buffer_bytes, next_lsn: recovery.next_lsn });
  const shared: EngineShared = {
    config,
    ...storage,
    wal,
    control: createControlBuffer(),
    wal_sync: createSyncerBuffer(),
    local_wal_writer: !options.inline && (options.local_wal_writer ?? false),
  };
  if (options.inline) return new InlineHost(io, shared, recovery, log);
  const host = new ThreadedHost(shared, recovery, log, options.on_fatal ?? defaultFatal(log));
  await host.start();
  return host;
}

function defaultFatal(log: (line: string) => void) {
  return (error: Error) => {
    log(`fatal: engine worker died: ${error.message}`);
    process.exit(70);
  };
}

/**
 * Makes the WAL durable up to `lsn` from the checkpointer's thread: it fdatasyncs the segment that
 * holds the written LSN itself (older segments were synced when sealed), so the WAL writer — and the
 * writes waiting on it — never stall behind a checkpoint's large fdatasync in `everysec`/`no` mode.
 * Throws UnavailableError if the fdatasync fails (the log is then stopped, as for any failed fsync).
 */
export function makeDurable(io: Io, wal: WalBuffer, wal_dir: string, lsn: number): void {
  if (wal.lsns().durable >= lsn) return;
  const { written, segment_first_lsn } = wal.writtenSegment();
  assert(written >= lsn, "a checkpoint only copies versions that were written");
  const path = `${wal_dir}/${segmentName(segment_first_lsn)}`;
  const file = io.open(path);
  try {
    io.sync(file);
  } catch (error) {
    const message = `fdatasync of ${path} failed during a checkpoint (${describeFailure(error)}); writes stopped until restart`;
    wal.setState(WAL_STOPPED, message);
    throw new UnavailableError(message, { cause: error });
  } finally {
    closeQuietly(io, file);
  }
}

class ThreadedHost implements EngineHost {
  readonly engine: Engine;
  private readonly control: EngineControl;
  private writer_worker: Worker | undefined;
  private syncer_worker: Worker | undefined;
  /** Resolves when the checkpointer has exited: listened for from its start, since a stop without a
   * final checkpoint (skipFinalCheckpoint) may end it before close() begins to wait. */
  private checkpointer_exited: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly shared: EngineShared,
    readonly recovery: RecoveryResult,
    private readonly log: (line: string) => void,
    private readonly on_fatal: (error: Error) => void,
  ) {
    this.engine = new Engine(shared);
    this.control = new EngineControl(shared.control);
  }

  async start(): Promise<void> {
    if (!this.shared.local_wal_writer) {
      this.writer_worker = await this.spawn(new URL("./wal/wal_writer_worker.ts", import.meta.url), {
        ...walStart(this.recovery),
      });
    } else if (this.shared.config.fsync !== "always") {
      this.syncer_worker = await this.spawn(new URL("./wal/wal_syncer_worker.ts", import.meta.url), {});
    }
    const checkpointer = await this.spawn(new URL("./checkpoint/checkpoint_worker.ts", import.meta.url), {});
    this.checkpointer_exited = exited(checkpointer);
  }

  async checkpoint(): Promise<CheckpointStatus> {
    return await requestCheckpoint(this.engine.wal, this.control);
  }

  skipFinalCheckpoint(): void {
    this.log("shutdown: final checkpoint skipped; the next start replays the WAL");
    this.control.requestStop(false);
    this.engine.wal.requestCheckpoint(); // wakes the checkpointer to see the stop
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    crashPoint("host-close-hang");
    this.control.requestStop(true); // without one if skipFinalCheckpoint came first
    this.engine.wal.requestCheckpoint();
    await this.checkpointer_exited;
    if (this.writer_worker === undefined) {
      await this.stopSyncer(); // its last fdatasync finished: none runs beside the one below
      this.closeLocalWal();
      return;
    }
    this.control.requestWriterStop();
    this.engine.wal.ring_doorbell();
    await exited(this.writer_worker);
  }

  /**
   * The WAL's end with a LocalWalWriter, whose thread has ended (it closed the log, or was
   * terminated after a drain timeout): everything written is synced here whatever became of the final
   * checkpoint, then the WAL that checkpoint covers is removed.
   */
  private closeLocalWal(): void {
    const wal = this.engine.wal;
    if (wal.state() === WAL_STOPPED) return;
    const io = new RealIo();
    const dir = `${this.shared.config.data_dir}/wal`;
    const written_lsn = wal.lsns().written;
    try {
      makeDurable(io, wal, dir, written_lsn);
    } catch (error) {
      this.log(`shutdown: ${error instanceof Error ? error.message : String(error)}`);
      return;
    }
    removeCoveredWal(io, dir, this.control.lastCheckpoint().redo_lsn, written_lsn);
  }

  /** The syncer thread ends once its fdatasync in flight, if any, finished (its I/O worker has ended). */
  private async stopSyncer(): Promise<void> {
    if (this.syncer_worker === undefined) return;
    new WalSyncer(this.shared.wal_sync).requestStop();
    await exited(this.syncer_worker);
  }

  private spawn(url: URL, init: Record<string, unknown>): Promise<Worker> {
    const worker = new Worker(url.href, { type: "module" });
    return new Promise((resolve, reject) => {
      worker.onmessage = (event: MessageEvent) => {
        const message = event.data as { ready?: boolean; log?: string; exited?: boolean };
        if (message.log !== undefined) this.log(message.log);
        if (message.ready) resolve(worker);
      };
      worker.onerror = (event: ErrorEvent) => {
        const error = new Error(`${url.pathname.split("/").pop()}: ${event.message}`);
        if (this.closed) this.log(error.message);
        else this.on_fatal(error);
        reject(error);
      };
      worker.postMessage({ shared: this.shared, ...init });
    });
  }
}

/**
 * Resolves when a worker posts `{ exited: true }` (it flushed everything first), or when it failed
 * (an uncaught error: its failure was reported through `onerror`, and it will post nothing more).
 */
function exited(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    worker.addEventListener("error", () => resolve());
    const previous = worker.onmessage;
    worker.onmessage = (event: MessageEvent) => {
      previous?.call(worker, event);
      if ((event.data as { exited?: boolean }).exited) {
        worker.terminate();
        resolve();
      }
    };
  });
}

/**
 * Requests a checkpoint and waits for one that started after the request (its redo LSN covers
 * everything visible now). Rejects if checkpoints fail.
 */
export async function requestCheckpoint(wal: WalBuffer, control: EngineControl): Promise<CheckpointStatus> {
  const target = wal.visibleLsn();
  const failures = control.lastCheckpoint().failures;
  for (;;) {
    const seq = control.checkpointDoneSeq();
    const status = control.lastCheckpoint();
    if (status.failures > failures) throw new UnavailableError("checkpoint failed (see the daemon log)");
    if (status.count > 0 && status.redo_lsn >= target && status.finished_unix_ms > 0) return status;
    wal.requestCheckpoint();
    await control.waitCheckpointDone(seq, 1000);
  }
}

/** Simulation host: everything on the caller's thread; `step()` drives the WAL writer. */
export class InlineHost implements EngineHost {
  readonly engine: Engine;
  readonly writer: WalWriter;
  readonly checkpointer: Checkpointer;
  private readonly control: EngineControl;

  constructor(
    io: Io,
    readonly shared: EngineShared,
    readonly recovery: RecoveryResult,
    log: (line: string) => void,
  ) {
    this.engine = new Engine(shared, { inline: { wait_for_space: () => this.step() } });
    const config = shared.config;
    this.writer = new WalWriter(
      io,
      this.engine.wal,
      this.engine.table,
      walWriterOptions(config, log),
      walStart(recovery),
    );
    this.checkpointer = new Checkpointer(io, config, this.engine.table, this.engine.wal, {
      make_durable: (lsn) => {
        this.writer.step();
        if (this.engine.wal.lsns().durable < lsn && !this.writer.syncNow())
          throw new UnavailableError("WAL stopped");
      },
      log,
    });
    this.control = new EngineControl(shared.control);
  }

  /** One WAL writer step, then settle the writes it made visible. */
  step(): boolean {
    const progressed = this.writer.step();
    this.engine.poll();
    return progressed;
  }

  async checkpoint(): Promise<CheckpointStatus> {
    const result = this.checkpointer.run();
    this.control.publishCheckpoint({
      redo_lsn: result.redo_lsn,
      bytes: result.bytes,
      duration_ms: result.duration_ms,
      finished_unix_ms: Date.now(),
      entries: result.entries,
    });
    return this.control.lastCheckpoint();
  }

  /** Nothing to skip: this host writes no final checkpoint. */
  skipFinalCheckpoint(): void {}

  async close(): Promise<void> {
    while (this.step()) {}
    this.writer.close();
    this.engine.poll();
  }
}
