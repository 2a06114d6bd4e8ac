// The worker process: graphile-worker running every task in jobs/tasks and the crontab beside this file.
import { run, type Runner, type TaskList } from 'graphile-worker';
import { quietLogger } from '../app/db/prepare';
import { taskList } from './tasks';

export interface WorkerOptions {
  connectionString: string;
  concurrency?: number;
  tasks?: TaskList;
  crontab?: string;
  maxPoolSize?: number;
}

export interface Worker {
  /** Stops taking jobs and waits for the running ones (graphile-worker's graceful stop). */
  stop(): Promise<void>;
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
  const start = () =>
    run({
      connectionString: options.connectionString,
      concurrency: options.concurrency ?? 4,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: quietLogger,
      taskList: options.tasks ?? taskList,
      crontab: options.crontab ?? '',
      ...(options.maxPoolSize ? { maxPoolSize: options.maxPoolSize } : {}),
    });
  let current = await start();
  let stopping = false;
  let restarts = 0;
  const watch = (runner: Runner) => {
    runner.promise.then(
      () => void restart(runner, null),
      (error: unknown) => void restart(runner, error),
    );
  };
  const restart = async (stopped: Runner, error: unknown) => {
    if (stopping || stopped !== current) return;
    console.error(`[worker] graphile-worker stopped on its own${error ? ` (${error instanceof Error ? error.message : String(error)})` : ''}; starting it again`);
    for (let attempt = 1; !stopping; attempt++) {
      try {
        const next = await start();
        if (stopping) {
          await next.stop().catch(() => undefined);
          return;
        }
        current = next;
        restarts++;
        watch(next);
        return;
      } catch (e) {
        // The database may still be down: keep trying, as a supervisor would, more slowly each time.
        console.error(`[worker] could not start graphile-worker again (attempt ${attempt}): ${e instanceof Error ? e.message : String(e)}`);
        await new Promise((r) => setTimeout(r, Math.min(30_000, 250 * 2 ** Math.min(attempt, 7))));
      }
    }
  };
  watch(current);
  return {
    async stop() {
      stopping = true;
      await current.stop().catch((error: unknown) => {
        // A runner that already stopped on its own has nothing left to stop.
        if (!/already|not running|stopped/i.test(error instanceof Error ? error.message : String(error))) throw error;
      });
    },
    current: () => current,
    get restarts() {
      return restarts;
    },
  };
}
