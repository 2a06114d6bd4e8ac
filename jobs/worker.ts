// The worker process: graphile-worker running every task in jobs/tasks and the crontab beside this file.
import { SpanStatusCode, trace } from '@opentelemetry/api';
import { EventEmitter } from 'node:events';
import { run, type JobHelpers, type Runner, type Task, type TaskList, type WorkerEvents, type WorkerPool } from 'graphile-worker';
import { createPool } from '../app/db/clients';
import { graphileLogger } from '../app/db/prepare';
import { errorFields, logger, withLogContext } from '../app/log';
import { taskList } from './tasks';

const log = logger('worker');
const tracer = trace.getTracer('meterdesk-worker');

export type WorkerState = 'running' | 'restarting' | 'stopping' | 'stopped';

export interface WorkerOptions {
  connectionString: string;
  concurrency?: number;
  tasks?: TaskList;
  crontab?: string;
  maxPoolSize?: number;
}

export interface Worker {
  /**
   * Stops taking jobs and waits for the running ones (graphile-worker's graceful stop). Jobs still running after
   * `graceMs` are released (graphile-worker's forceful stop: unlocked with an error, retried by any worker at once
   * after its backoff), never left locked until the stale-lock expiry.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  state(): WorkerState;
  /** Jobs this process is running now. */
  readonly jobsInFlight: number;
  /** The graphile-worker runner working now (a new one after each restart). */
  current(): Runner;
  /** Times graphile-worker stopped without being asked and was started again. */
  readonly restarts: number;
}

/**
 * Starts graphile-worker, and starts it again whenever it stops without being asked to. graphile-worker shuts its
 * own pool down when it cannot record a job's outcome ("Could not completeJobs; queue is in an inconsistent state",
 * e.g. after a database restart or dropped connections); the process then lived on with its web server, pools and
 * timers, and ran no job again: a worker that looked alive (found by the fault campaign, seed 20). What the stopped
 * pool held is recovered as after a crash (the sweeps and the reporting reconciler).
 */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  let inFlight = 0;
  const tasks = traced(options.tasks ?? taskList, (delta) => (inFlight += delta));
  // graphile-worker 0.18's runner.kill() goes forceful only while its pool is active, and a graceful stop has already
  // made it inactive: the pool itself is kept (from its `pool:create` event) to release jobs when the grace runs out.
  const pools = new WeakMap<Runner, WorkerPool>();
  // One pg pool for every graphile-worker this process starts, ours to end. graphile-worker's own pool drops its error
  // listener when its runner is released, and an idle client the database then terminates (a restart during that
  // release) raised an unhandled 'error' that ended the process (the fault campaign, seed 28 of 2026-12-06).
  const pgPool = createPool(options.connectionString, options.maxPoolSize ?? 10);
  // Runners whose pool reported a fatal error before they became the current one (handled once watched).
  const fatals = new WeakMap<Runner, unknown>();
  // Runners already replaced: their promise ending and their fatal errors (often several) restart once.
  const replaced = new WeakSet<Runner>();
  let current: Runner;
  let state: WorkerState = 'running';
  let stopping = false;
  let stopped: Promise<void> = Promise.resolve();
  let restarts = 0;
  const start = async () => {
    const events = new EventEmitter() as WorkerEvents;
    let pool: WorkerPool | undefined;
    let self: Runner | undefined;
    let fatal: { error: unknown } | undefined;
    events.on('pool:create', ({ workerPool }) => (pool = workerPool));
    // The batcher could not record a job's outcome: graphile-worker 0.18 then starts a graceful stop that never
    // settles (its batch retry gives up at once and leaves its backpressure held), so runner.promise never ends and
    // the process would live on running nothing (the fault campaign, seed 25 of 2026-12-06). Release and restart.
    events.on('pool:fatalError', ({ error }) => {
      if (self && self === current) void abandon(self, error);
      else if (self) fatals.set(self, error);
      else fatal = { error };
    });
    const runner = await run({
      pgPool,
      concurrency: options.concurrency ?? 4,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: graphileLogger,
      events,
      taskList: tasks,
      crontab: options.crontab ?? '',
      // Completions and failures go through graphile-worker's batcher (flushed at once): a graceful stop waits for
      // it, where the unbatched call is not awaited and the last job's completion can be lost as the pool ends,
      // leaving a finished job locked until the stale-lock expiry (ADR 020).
      preset: { worker: { completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    });
    if (pool) pools.set(runner, pool);
    self = runner;
    if (fatal) fatals.set(runner, fatal.error);
    return runner;
  };
  /**
   * A runner that can no longer record outcomes: a new one starts at once, and the old pool's own graceful stop goes on
   * in the background (its jobs still running record their outcomes when they end). Not a forceful stop: graphile-worker
   * 0.18 then releases its batchers while a released job's worker may still report, and that report throws out of the
   * process ("This batcher has been released", campaign seed 28 with a forceful stop).
   */
  const abandon = async (runner: Runner, error: unknown) => {
    if (stopping || runner !== current || replaced.has(runner)) return;
    log.error(errorFields(error), 'graphile-worker cannot record job outcomes: starting a new one beside the stopping one');
    await restart(runner, error);
  };
  current = await start();
  const watch = (runner: Runner) => {
    if (fatals.has(runner)) void abandon(runner, fatals.get(runner));
    runner.promise.then(
      () => void restart(runner, null),
      (error: unknown) => void restart(runner, error),
    );
  };
  const restart = async (stopped: Runner, error: unknown) => {
    if (stopping || stopped !== current || replaced.has(stopped)) return;
    replaced.add(stopped);
    state = 'restarting';
    log.error(error ? errorFields(error) : {}, 'graphile-worker stopped on its own; starting it again');
    for (let attempt = 1; !stopping; attempt++) {
      try {
        const next = await start();
        if (stopping) {
          await next.stop().catch(() => undefined);
          return;
        }
        current = next;
        state = 'running';
        restarts++;
        watch(next);
        return;
      } catch (e) {
        // The database may still be down: keep trying, as a supervisor would, more slowly each time.
        log.error({ ...errorFields(e), attempt }, 'could not start graphile-worker again');
        await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** Math.min(attempt, 7))));
      }
    }
  };
  watch(current);
  return {
    async stop(stopOptions) {
      if (stopping) return stopped;
      stopping = true;
      state = 'stopping';
      const runner = current;
      const graceful = runner.stop().catch((error: unknown) => {
        // A runner that already stopped on its own has nothing left to stop.
        if (!/already|not running|stopped/i.test(error instanceof Error ? error.message : String(error))) throw error;
      });
      const graceMs = stopOptions?.graceMs;
      stopped = (async () => {
        if (inFlight > 0) log.info({ jobs: inFlight }, 'stopping: finishing the jobs in flight');
        if (graceMs === undefined) await graceful;
        else {
          let timer: NodeJS.Timeout | undefined;
          const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
          const outcome = await Promise.race([graceful.then(() => 'done' as const), late]);
          clearTimeout(timer);
          if (outcome === 'late') {
            log.warn({ jobs: inFlight, grace_ms: graceMs }, 'jobs still running after the grace period: releasing them');
            // The graceful stop never settles while a task runs on; the forceful one returns once the jobs are released.
            graceful.catch(() => undefined);
            const pool = pools.get(runner);
            if (pool) await Promise.resolve(pool.forcefulShutdown('the worker process is stopping')).catch((e: unknown) => log.error(errorFields(e), 'releasing the jobs failed'));
            else await runner.kill('the worker process is stopping');
          }
        }
        await pgPool.end().catch((e: unknown) => log.warn(errorFields(e), 'closing the worker database pool failed'));
        state = 'stopped';
      })();
      return stopped;
    },
    state: () => state,
    get jobsInFlight() {
      return inFlight;
    },
    current: () => current,
    get restarts() {
      return restarts;
    },
  };
}

/** Each task in a span of its own, with its job id and task on every line it logs; counts the jobs in flight. */
function traced(tasks: TaskList, count: (delta: number) => void): TaskList {
  return Object.fromEntries(
    Object.entries(tasks as Record<string, Task>).map(([identifier, task]) => [
      identifier,
      (payload: unknown, helpers: JobHelpers) =>
        tracer.startActiveSpan(`job ${identifier}`, { attributes: { 'meterdesk.task': identifier } }, (span) =>
          withLogContext({ job_id: String(helpers.job.id), task: identifier }, async () => {
            count(1);
            try {
              return await task(payload, helpers);
            } catch (error) {
              span.setStatus({ code: SpanStatusCode.ERROR });
              throw error;
            } finally {
              count(-1);
              span.end();
            }
          }),
        ),
    ]),
  );
}
