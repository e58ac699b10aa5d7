import { ApiError } from '../platform/http/api.ts';
import type { JobService } from '../platform/jobs/service.ts';
import { GC_RUN_JOB, GC_SCHEDULED_JOB, type GcApiParameters, type GcRuns } from './runs.ts';

/**
 * Garbage collection's jobs: GC_RUN_JOB runs one collection (one at a time: its dedupe key), and
 * GC_SCHEDULED_JOB, which the cron schedule fires, starts one unless one is pending or running.
 */
export function registerGcJobs(jobs: JobService, runs: GcRuns): void {
  jobs.workers.register<{ runId: number }>(GC_RUN_JOB, (payload, context) => runs.execute(payload.runId, context));
  jobs.workers.register<{ parameters?: GcApiParameters }>(GC_SCHEDULED_JOB, async (payload, { log }) => {
    try {
      const id = await runs.start(payload?.parameters ?? {}, 'SCHEDULE');
      log(`started garbage collection run ${id}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 'CONFLICT')) throw err;
      log(`skipped: ${err.message}`);
    }
  });
}

/** gc.runAtStart: queues a collection when the server starts, unless one is pending or running already. */
export async function startGcAtBoot(runs: GcRuns): Promise<number | undefined> {
  try {
    return await runs.start({}, 'START');
  } catch (err) {
    if (err instanceof ApiError && err.code === 'CONFLICT') return undefined;
    throw err;
  }
}
